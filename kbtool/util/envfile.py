"""API keys from a ``.env`` file (the seeds' habit), read into the environment at start.

Only the environment gets them: kbtool never writes a value it read from the file into a
run (its config, events, tracker runs), and the sandbox takes every variable that looks
secret away from candidates (``kbtool.sandbox.isolation.looks_secret``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

ENV_FILE = "KBTOOL_ENV_FILE"


def load_env_file(path: Path | None = None) -> list[str]:
    """Set the variables of ``path`` (default: ``$KBTOOL_ENV_FILE``, else ``./.env``) that
    the environment does not already have; returns their names.  No file: nothing."""
    path = path or Path(os.environ.get(ENV_FILE) or ".env")
    if not path.is_file():
        return []
    from dotenv import dotenv_values  # only when there is a file to read

    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:  # never stops a command: keys may be set
        log.warning("%s could not be read (%s); its variables are not set", path, exc)
        return []
    added = []
    for name, value in values.items():
        if value is not None and name not in os.environ:
            os.environ[name] = value
            added.append(name)
    log.debug("read %s from %s", ", ".join(added) or "nothing new", path)
    return added
