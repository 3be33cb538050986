"""Cache of reference timings, keyed by everything that changes them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from kbtool.evaluation.result import TimingStats
from kbtool.util.files import write_atomic


def baseline_key(task_key: str, kind: str, timer: str, env: dict[str, Any]) -> str:
    """``task_key`` is what the task kind says identifies the reference under one baseline;
    the machine and software around it complete the key."""
    parts = {
        "task": task_key,
        "kind": kind,
        "timer": timer,
        "device_name": env.get("device_name"),
        "torch": env.get("torch_version"),
        "threads": env.get("num_threads"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


class BaselineCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, key: str) -> TimingStats | None:
        path = self.root / f"{key}.json"
        try:
            return TimingStats.model_validate_json(path.read_text())
        except (OSError, ValueError):
            return None  # missing or damaged entries are measured again

    def put(self, key: str, stats: TimingStats) -> None:
        write_atomic(self.root / f"{key}.json", stats.model_dump_json())
