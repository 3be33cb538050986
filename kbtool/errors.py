"""kbtool's errors: what the CLI prints as one line, and the exit code it leaves with.

- ``UsageError`` (exit 2): bad usage or input: an unknown name, a bad setting, a missing file.
- ``RunError`` (exit 1): a failure while running: a process died, a service did not answer.

Both are ``KbtoolError``, which callers catch when either kind should be reported rather
than shown as a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class KbtoolError(Exception):
    """A user-facing error, never shown as a traceback."""

    exit_code = 1


class UsageError(KbtoolError):
    """Bad usage or input."""

    exit_code = 2


class RunError(KbtoolError):
    """A failure while running."""

    exit_code = 1


def unknown(what: str, name: str, known: Iterable[str], hint: str | None = None,
            match: str | None = None) -> UsageError:
    """The one "unknown X" error: ``unknown task source 'bultin' (did you mean 'builtin'?)``,
    or the known names when none is close.  ``match``: the part of ``name`` to compare with
    ``known`` (the last part of a dotted key)."""
    import difflib

    choices = sorted(str(k) for k in known)
    close = difflib.get_close_matches(str(match or name), choices, n=1)
    if close:
        tail = f" (did you mean {close[0]!r}?)"
    elif choices:
        shown = ", ".join(choices[:12]) + (", ..." if len(choices) > 12 else "")
        tail = f" (known: {shown})"
    else:
        tail = f" (none is registered{'; ' + hint if hint else ''})"
        hint = None
    return UsageError(f"unknown {what} {name!r}{tail}" + (f"; {hint}" if hint else ""))


def invalid(exc: ValidationError, root: str) -> str:
    """A pydantic ``ValidationError`` as one line: where (``root`` for the whole) and why."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or root
    return f"{where}: {first['msg']}"
