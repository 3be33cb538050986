"""The ``kbtool`` entry point: load plugins, add their commands, run, and turn errors into
one line and an exit code (2: bad usage or input, 1: a failure while running)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

# The command modules register themselves on the app when imported.
from kbtool.cli import containers, eval, init, misc, report, run, serve, submit, tasks, worker  # noqa: F401
from kbtool.cli.app import app
from kbtool.errors import KbtoolError
from kbtool.plugin import manager
from kbtool.util.envfile import load_env_file

log = logging.getLogger("kbtool")


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Also print debug lines (tracebacks behind one-line errors).")]
        = False,
) -> None:
    """Search for faster code with LLM agents, and measure it honestly."""
    from kbtool import log as logs

    logs.setup(verbose)


def main() -> None:
    from kbtool import log as logs

    logs.setup("-v" in sys.argv[1:2] or "--verbose" in sys.argv[1:2])
    load_env_file()  # API keys from ./.env, before any plugin reads the environment
    manager.load_plugins()
    manager.call_each("register_commands", cli=app)
    try:
        app(prog_name="kbtool")  # Typer exits 2 on usage errors, 0 on success
    except KbtoolError as exc:
        print(f"kbtool: error: {exc}", file=sys.stderr)
        log.debug("where the error came from", exc_info=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("kbtool: interrupted", file=sys.stderr)
        sys.exit(130)
