"""``python -m inpaint`` — the same command line as the ``inpaint`` executable."""

from inpaint.cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())
