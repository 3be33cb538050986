"""The run directory: resolved config, append-only event log, every prompt, reply,
candidate and evaluation, and ``summary.json``.

The event log is one JSON object per line, flushed and fsynced as it is written, so it is
crash-safe and can be followed while the run goes on, from another node over a shared
filesystem too (readers skip a half-written last line).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from kbtool.config.settings import Config
from kbtool.errors import KbtoolError

EVENTS = "events.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event of a run (a torn last line is skipped)."""
    events = []
    try:
        with open(run_dir / EVENTS) as handle:
            for line in handle:
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return events


def safe_name(task_id: str) -> str:
    return re.sub(r"[^\w.-]+", "_", task_id)


class RunStore:
    def __init__(self, run_dir: Path, resume: bool = False) -> None:
        self.dir = run_dir
        self._lock = threading.Lock()
        if resume:
            if not (run_dir / CONFIG).is_file():
                raise KbtoolError(f"{run_dir} is not a kbtool run directory (no {CONFIG})")
            previous = read_events(run_dir)
            self._logged = {self._ident(e) for e in previous} - {None}
            self._seq = max((e.get("seq", 0) for e in previous), default=0)
            self._repair_tail()
        else:
            if run_dir.exists() and any(run_dir.iterdir()):
                raise KbtoolError(f"run_dir {run_dir} exists and is not empty; "
                                  f"use --resume {run_dir} to continue it")
            run_dir.mkdir(parents=True, exist_ok=True)
            self._logged = set()
            self._seq = 0
        self._events = open(run_dir / EVENTS, "a")  # noqa: SIM115 - open for the run's life

    @staticmethod
    def _ident(event: dict[str, Any]) -> tuple[str, str] | None:
        """Events that describe a unit of work are logged once, even across resumes."""
        key = event.get("sample") or event.get("step")
        return (event["type"], key) if key and event.get("type") else None

    def _repair_tail(self) -> None:
        path = self.dir / EVENTS
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                last = handle.read(1)
            if last != b"\n":  # killed mid-line: keep the next event on a line of its own
                with open(path, "a") as handle:
                    handle.write("\n")

    @property
    def calls_dir(self) -> Path:
        return self.dir / "calls"

    def save_config(self, config: Config) -> None:
        write_atomic(self.dir / CONFIG, yaml.safe_dump(config.model_dump(mode="json"),
                                                       sort_keys=False))

    def load_config(self) -> dict[str, Any]:
        return yaml.safe_load((self.dir / CONFIG).read_text()) or {}

    def emit(self, event: dict[str, Any]) -> None:
        ident = self._ident(event)
        with self._lock:
            if ident is not None:
                if ident in self._logged:
                    return
                self._logged.add(ident)
            self._seq += 1
            line = json.dumps({"seq": self._seq, "t": round(time.time(), 3), **event},
                              default=str)
            self._events.write(line + "\n")
            self._events.flush()
            os.fsync(self._events.fileno())

    def step_dir(self, task_id: str, phase: int, agent: int, step: int) -> Path:
        return self.dir / "tasks" / safe_name(task_id) / f"phase{phase}" / f"agent{agent}" / \
            f"step{step}"

    def write(self, relative: Path | str, text: str) -> Path:
        path = self.dir / relative
        write_atomic(path, text)
        return path

    def close(self) -> None:
        self._events.close()
