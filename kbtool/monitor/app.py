"""``kbtool monitor RUN_DIR``: a terminal UI (Textual) that follows a run from its event log.

The first frame comes from what the run directory lists (its tasks, all pending); then a
thread reads ``events.jsonl`` in chunks, folding each into a ``RunState``
(``kbtool.monitor.state``), and the screens show each chunk as it lands: a large log fills
in within the first second instead of holding the screen until it is read whole.  After
that the thread polls for what was appended (no inotify: it works over NFS, from another
node).  The screen on top updates from the state in one batch per poll, only the rows of
the tasks that changed; a screen under it catches up when it is back on top.  Layout:
``screens/`` (one module per screen), ``widgets/`` (one module per widget), ``monitor.tcss``
(the stylesheet).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from kbtool.monitor.screens.detail import DetailScreen
from kbtool.monitor.screens.tasks import TasksScreen
from kbtool.monitor.state import RunFollower, RunState

CHUNK_BYTES = 4 << 20  # a log is read and shown this much at a time (~10,000 events)


class Polled(Message):
    """The polling thread folded (part of) the log into the state (maybe nothing new)."""


class MonitorApp(App[None]):
    TITLE = "kbtool monitor"
    CSS_PATH = Path(__file__).with_name("monitor.tcss")  # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(self, run_dir: Path, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.follower = RunFollower(self.run_dir)
        self.interval = interval
        self.clock = clock
        self.polls = 0             # polls applied to the screens
        self.last_apply_s = 0.0    # how long applying the last poll to the screens took
        self.shown_events = 0      # events in the state the screens show
        self.loaded = False        # the screens show the whole log (as of the last poll)
        self._polling = False
        self._applied: tuple[int, int, bool] | None = None  # the state last applied
        self._shown = threading.Event()  # the last Polled was handled

    @property
    def state(self) -> RunState:
        return self.follower.state

    def get_default_screen(self) -> Screen[None]:
        return TasksScreen()

    def on_mount(self) -> None:
        self.sub_title = str(self.run_dir)
        self.call_after_refresh(self.poll_now)  # the first frame before the log is read
        self.set_interval(self.interval, self.poll_now)

    def poll_now(self) -> None:
        """Read what was appended, in a thread (a shared filesystem may be slow)."""
        if self._polling:
            return
        self._polling = True
        self.run_worker(self._poll, thread=True, group="poll", exit_on_error=False)

    def _poll(self) -> None:
        try:
            while True:  # a chunk at a time, each shown before the next is read
                self._shown.clear()
                self.follower.poll(CHUNK_BYTES)
                self.post_message(Polled())
                if self.follower.loading is None:
                    return
                self._shown.wait(1.0)
        finally:
            self._polling = False

    def on_polled(self, message: Polled) -> None:
        try:
            self._apply()
        finally:
            self._shown.set()

    def _apply(self) -> None:
        start = time.perf_counter()
        with self.follower.lock:
            applied = (id(self.state), self.state.version, self.follower.loading is None)
            if applied == self._applied and not self.state.running:
                return  # nothing new, and nothing that changes with the clock
            self._applied = applied
            dirty = self.state.take_dirty()
            stack = self.screen_stack
            for index, screen in enumerate(stack):
                if isinstance(screen, (TasksScreen, DetailScreen)) and screen.is_mounted:
                    if index == len(stack) - 1:  # on top
                        screen.refresh_from(self.state, dirty | screen.stale)
                        screen.stale = set()
                    else:  # drawn when back on top: Textual would repaint the top whole
                        screen.stale |= dirty
            self.shown_events, self.loaded = self.state.events, applied[2]
        self.last_apply_s = time.perf_counter() - start
        self.polls += 1


def run_monitor(run_dir: Path, interval: float = 1.0) -> None:
    MonitorApp(run_dir, interval=interval).run()
