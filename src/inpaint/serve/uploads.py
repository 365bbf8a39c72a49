"""How a completion request arrives at ``inpaint serve``: its body, read and limited.

A request is ``multipart/form-data`` (files ``image`` and ``mask`` and option fields) or JSON (the
files in base64); :func:`read_body` returns either as the same parts. :class:`BodyLimit` refuses a
body past the server's limit by its declared length at once, and by what arrives otherwise.
:data:`REQUEST_BODY` describes both forms for the OpenAPI schema (the routes read the body
themselves, to take either form and to count its bytes as they arrive). Every refusal is an
:class:`ApiError`, answered as ``{"error": "one line"}`` (:func:`error_response`).
"""

from __future__ import annotations

import base64
import binascii
import json

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from inpaint.serve.settings import CALL_FIELDS, FLAG_FIELDS, REQUEST_FIELDS


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def read_body(request: Request) -> tuple[dict[str, object], bytes, bytes, str | None, bool]:
    """``(fields, image bytes, mask bytes, the image's file name, came as JSON)`` of a request."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=len(REQUEST_FIELDS))
        except HTTPException as e:  # too many parts, a malformed body
            raise ApiError(400, f"multipart body: {e.detail}") from None
        fields: dict[str, object] = {}
        files: dict[str, UploadFile] = {}
        for key, value in form.multi_items():
            target = files if isinstance(value, UploadFile) else fields
            if key in target or key in (files if target is fields else fields):
                raise ApiError(400, f"field {key!r} is given twice")
            target[key] = value
        for key in files:
            if key not in ("image", "mask"):
                raise ApiError(400, f"file field {key!r}: send the files as 'image' and 'mask'")
        for key in ("image", "mask"):
            if key not in files:
                if key in fields:
                    raise ApiError(400, f"{key!r} must be a file (multipart file field), not text")
                raise ApiError(400, f"missing the file field {key!r}")
        image, mask = await files["image"].read(), await files["mask"].read()
        return fields, image, mask, files["image"].filename, False
    if kind == "application/json":
        try:
            body = json.loads(await request.body())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ApiError(400, f"JSON body: {str(e).splitlines()[0]}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "JSON body: expected an object with 'image', 'mask' and option fields")
        images = [_base64(key, body.pop(key, None)) for key in ("image", "mask")]
        return body, images[0], images[1], None, True
    raise ApiError(
        415, f"content type {kind or 'missing'}: send multipart/form-data (files image, mask) or application/json"
    )


def _base64(key: str, value: object) -> bytes:
    if value is None:
        raise ApiError(400, f"missing {key!r} (the image file's bytes in base64)")
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r}: expected base64 text")
    if value.startswith("data:") and "," in value:  # a data: URL, as browsers make them
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{key!r}: not valid base64") from None


class BodyTooLarge(Exception):
    """A request body past the server's limit."""


class BodyLimit:
    """ASGI middleware: refuse request bodies past ``limit`` bytes, by their declared length at
    once, and by what actually arrives otherwise (a body sent in chunks without a length)."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body over the limit of {self.limit:,} bytes (inpaint serve --max-upload-mb)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(413, message, {"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(message)
            return event

        await self.app(scope, limited_receive, send)


#: The request body of /api/v1/complete and /api/v1/jobs, for the OpenAPI schema (the handlers
#: read the body themselves, to take either form and to check its size as it arrives).
_FIELD_SCHEMAS = {
    "model": {"type": "string", "description": "a method from /api/v1/models (default: the server's)"},
    "seed": {"type": "integer", "default": 0},
    "name": {
        "type": "string",
        "description": "seeds the image with seed, as complete does with a file's stem "
        "(default: the uploaded image's stem; 'image' for JSON)",
    },
    "lora": {"type": "string", "description": "sd: one of the server's LoRA labels, or 'none'"},
    **{key: {"type": {int: "integer", float: "number", str: "string"}[kind]} for key, kind in CALL_FIELDS.items()},
    **{key: {"type": "boolean"} for key in FLAG_FIELDS},
}
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "mask"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        "mask": {"type": "string", "format": "binary", "description": "white = fill"},
                        **_FIELD_SCHEMAS,
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["image", "mask"],
                    "properties": {
                        "image": {"type": "string", "format": "byte", "description": "the image file, base64"},
                        "mask": {"type": "string", "format": "byte", "description": "the mask file, base64"},
                        **_FIELD_SCHEMAS,
                    },
                }
            },
        },
    }
}
