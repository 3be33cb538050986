"""Records of the batch jobs kbtool submitted, so that ``kbtool jobs`` knows them.

One JSON file (``KBTOOL_JOBS_FILE``, else ``jobs.json`` in kbtool's cache directory) with
the newest 500 jobs.  Several ``kbtool submit`` at once (a script submitting a pool) update
it under a file lock, so no record is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from filelock import FileLock

from kbtool.util.dirs import cache_dir
from kbtool.util.files import write_atomic

KEEP = 500


def jobs_file() -> Path:
    if os.environ.get("KBTOOL_JOBS_FILE"):
        return Path(os.environ["KBTOOL_JOBS_FILE"])
    return cache_dir() / "jobs.json"


def load_records() -> list[dict[str, Any]]:
    try:
        data = json.loads(jobs_file().read_text())
    except (OSError, ValueError):
        return []
    return [r for r in data if isinstance(r, dict) and "id" in r] if isinstance(data, list) else []


def save_record(record: dict[str, Any]) -> None:
    path = jobs_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=60):
        records = [r for r in load_records() if r.get("id") != record["id"]] + [record]
        write_atomic(path, json.dumps(records[-KEEP:], indent=1))
