"""The run store: a run directory being written (see ``kbtool.runs.layout``).

The event log is one JSON object per line, flushed and fsynced as it is written, so it is
crash-safe and can be followed while the run goes on, from another node over a shared
filesystem too (readers skip a half-written last line).  Every event goes through
:meth:`RunStore.emit`, which also hands it to the subscribers (the progress display).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kbtool.config import Config, config_as_yaml
from kbtool.errors import UsageError
from kbtool.runs.events import RunEvent, dump
from kbtool.runs.layout import CONFIG, RunLayout
from kbtool.util.files import write_atomic


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete event of a run, as logged (a torn last line is skipped)."""
    events = []
    try:
        with open(RunLayout(run_dir).events) as handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    events.append(event)
    except FileNotFoundError:
        pass
    return events


def _ident(event: dict[str, Any]) -> tuple[str, str] | None:
    """Events that describe a unit of work are logged once, even across resumes."""
    key = event.get("sample") or event.get("step")
    return (event["type"], key) if key and event.get("type") else None


class RunStore:
    def __init__(self, run_dir: Path, resume: bool = False) -> None:
        # Absolute: the layout's paths are handed back to ``write``, which would put a
        # relative one under the run directory a second time (runs/X/runs/X/...).
        run_dir = run_dir.absolute()
        self.dir = run_dir
        self.layout = RunLayout(run_dir)
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        if resume:
            if not self.layout.config.is_file():
                raise UsageError(f"{run_dir} is not a kbtool run directory (no {CONFIG})")
            previous = read_events(run_dir)
            self._logged = {_ident(e) for e in previous} - {None}
            self._seq = max((e.get("seq", 0) for e in previous), default=0)
            self._repair_tail()
        else:
            if run_dir.exists() and any(run_dir.iterdir()):
                raise UsageError(f"run_dir {run_dir} exists and is not empty; "
                                 f"use --resume {run_dir} to continue it")
            run_dir.mkdir(parents=True, exist_ok=True)
            self._logged = set()
            self._seq = 0
        self._events = open(self.layout.events, "a")  # noqa: SIM115 - open for the run's life

    def _repair_tail(self) -> None:
        path = self.layout.events
        if path.exists() and path.stat().st_size:
            with open(path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                last = handle.read(1)
            if last != b"\n":  # killed mid-line: keep the next event on a line of its own
                with open(path, "a") as handle:
                    handle.write("\n")

    @property
    def calls_dir(self) -> Path:
        return self.layout.calls

    def save_config(self, config: Config) -> None:
        write_atomic(self.layout.config, config_as_yaml(config))

    def load_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.layout.config.read_text()) or {}

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(event)`` with every event emitted from now on, in the order they
        are logged, one at a time (a callback must not emit)."""
        self._subscribers.append(callback)

    def emit(self, event: RunEvent) -> None:
        data = dump(event)
        ident = _ident(data)
        with self._lock:
            if ident is not None:
                if ident in self._logged:
                    return
                self._logged.add(ident)
            self._seq += 1
            data = {"seq": self._seq, "t": round(time.time(), 3), **data}
            self._events.write(json.dumps(data, default=str) + "\n")
            self._events.flush()
            os.fsync(self._events.fileno())
            # Under the lock: subscribers (a tracker's step) see events in the logged order.
            for callback in self._subscribers:
                callback(data)

    def write(self, path: Path, text: str) -> Path:
        """Write a file of the run (``path`` inside the run directory, or relative to it)."""
        target = path if path.is_absolute() else self.dir / path
        write_atomic(target, text)
        return target

    def close(self) -> None:
        self._events.close()
