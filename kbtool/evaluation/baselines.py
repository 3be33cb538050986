"""Cache of reference timings, keyed by everything that changes them."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kbtool.evaluation.result import TimingStats


def baseline_key(problem_source: str, mode: str, compile_mode: str, timer: str,
                 env: dict[str, Any]) -> str:
    parts = {
        "problem": hashlib.sha256(problem_source.encode()).hexdigest(),
        "mode": mode,
        "compile_mode": compile_mode if mode == "compile" else None,
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
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            handle.write(stats.model_dump_json())
        os.replace(tmp, self.root / f"{key}.json")
