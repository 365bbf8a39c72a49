"""File names that are not valid UTF-8, carried through text and JSON without loss or crash.

A POSIX file name is bytes. Python decodes it with ``surrogateescape``: each byte that is not
part of valid UTF-8 becomes a lone surrogate (``b"bad\\xff"`` -> ``"bad\\udcff"``), and
``os.fsencode`` gives the bytes back. Such a str cannot be encoded as plain UTF-8, so whatever
writes a name must say what it does with those characters:

- JSON (:func:`json_text`): written as ``\\udcff`` escapes, which :func:`json.loads` reads back
  to the same str, so a name read from a manifest or a captions file matches the file again;
- text for people (reports, CSV, console lines; :func:`printable`): each such byte shown as
  ``\\xff``, as ``ls -b`` does, so the output stays valid UTF-8 and still names the file;
- hashes and seeds: the name's own bytes (``str.encode("utf-8", "surrogateescape")``), which for
  a valid name are its UTF-8 bytes, as before.
"""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_for_json(match: re.Match[str]) -> str:
    """A lone surrogate as the JSON escape ``json.loads`` turns back into it."""
    return f"\\u{ord(match.group()):04x}"


def _escape_for_people(match: re.Match[str]) -> str:
    """A lone surrogate as the byte it stands for (``\\xff``), as ``ls -b`` shows it."""
    code = ord(match.group())
    # U+DC80..U+DCFF are the bytes 0x80..0xFF that surrogateescape stood in for; any other lone
    # surrogate did not come from a file name and is shown by its code point.
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def json_text(obj: Any, **kwargs: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kwargs)`` with lone surrogates written as escapes.

    Everything else is left as it was (non-ASCII letters stay readable, files written before
    stay byte for byte the same); only the characters UTF-8 cannot hold become ``\\uXXXX``, and
    ``json.loads`` turns them back into the same str. Surrogates can only occur inside JSON
    strings, so replacing them in the text is an exact escape.
    """
    return _SURROGATE.sub(_escape_for_json, json.dumps(obj, ensure_ascii=False, **kwargs))


def printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 name shown as ``\\xNN``: always encodable as UTF-8.

    For what people read (reports, CSV cells, console lines): ``"bad\\udcff.png"`` becomes
    ``"bad\\\\xff.png"``; text without such characters is returned unchanged.
    """
    return _SURROGATE.sub(_escape_for_people, text)


def name_bytes(text: str) -> bytes:
    """The bytes of a name as the file system holds them (``os.fsencode`` for a str).

    Valid names give their UTF-8 bytes; a name decoded with ``surrogateescape`` gives back its
    original bytes. Used where a name is hashed, so that every name the file system allows can be.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name decodes to: hashed, not refused
        return text.encode("utf-8", "surrogatepass")
