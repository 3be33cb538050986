"""The run store hands events to its subscribers in the order it logged them, even when
several evaluation threads emit at once (a tracker's step follows the event log)."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from kbtool.runs.events import TaskStarted
from kbtool.runs.store import RunStore, read_events


def test_subscribers_see_events_in_the_logged_order(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    seen: list[int] = []
    rng = random.Random(0)

    def slow_subscriber(event: dict[str, Any]) -> None:
        time.sleep(rng.random() * 2e-3)  # a tracker writing to its own store
        seen.append(event["seq"])

    store.subscribe(slow_subscriber)

    def emit_many(worker: int) -> None:
        for i in range(25):
            store.emit(TaskStarted(task=f"w{worker}/{i}"))

    threads = [threading.Thread(target=emit_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    logged = [e["seq"] for e in read_events(store.dir)]
    assert logged == list(range(1, 101))
    assert seen == logged
