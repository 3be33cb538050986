"""Errors that the CLI turns into a one-line message and exit code 2 (bad usage or input)."""


class KbtoolError(Exception):
    """A user-facing error: bad input, unknown name, missing file. Never shown as a traceback."""

    exit_code = 2
