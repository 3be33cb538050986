"""The main screen: the run's top line, the task table, a filter box and two panels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from kbtool.monitor.screens.detail import DetailScreen
from kbtool.monitor.state import TASK_STATUSES, RunState, TaskState
from kbtool.monitor.widgets.panels import EvalsPanel, LLMPanel
from kbtool.monitor.widgets.run_bar import RunBar
from kbtool.monitor.widgets.task_list import TaskList, columns, fixed_width, task_cells

if TYPE_CHECKING:
    from kbtool.monitor.app import MonitorApp

STATUS_FILTERS = ("all", *TASK_STATUSES)


def common_prefix(task_ids: list[str]) -> str:
    """The task source shared by every task (``builtin/``), dropped from the table."""
    heads = {t.split("/", 1)[0] for t in task_ids if "/" in t}
    if len(heads) == 1 and all("/" in t for t in task_ids):
        return heads.pop() + "/"
    return ""


class TasksScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("f", "cycle_status", "Status"),
        Binding("escape", "clear_filters", "Clear", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.text_filter = ""
        self.status_filter = "all"
        self.prefix = ""
        self.name_width = 24
        self.stale: set[str] = set()  # tasks changed while another screen was on top

    @property
    def monitor(self) -> MonitorApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield RunBar(id="topbar")
        yield TaskList(id="tasks")
        yield Input(id="filter", placeholder="/ filter tasks (Enter: keep, Esc: clear)")
        with Horizontal(id="panels"):
            yield EvalsPanel(id="evals", classes="panel")
            yield LLMPanel(id="llm", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.name_width = self._name_width(self.app.size.width)
        with self.monitor.follower.lock:
            self.refresh_from(self.monitor.state, {"*"})

    def _name_width(self, width: int) -> int:
        return max(10, width - fixed_width(columns(self.monitor.state.baselines)))

    def on_resize(self, event: Any) -> None:
        width = self._name_width(event.size.width)
        if width != self.name_width:
            self.name_width = width
            self._update_table({"*"})

    # -- updates (one batch per poll) ---------------------------------------------------------
    def on_screen_resume(self) -> None:
        """Back on top: catch up with the polls applied meanwhile (and with the clock)."""
        stale, self.stale = self.stale, set()
        with self.monitor.follower.lock:
            self.refresh_from(self.monitor.state, stale)

    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        app = self.monitor
        now = app.clock()
        self.query_one(RunBar).show(app.run_dir, state, now, app.follower.loading)
        self.query_one(EvalsPanel).show(state, now, app.follower.queue)
        self.query_one(LLMPanel).show(state)
        if dirty:
            self._update_table(dirty)

    def _visible(self, task: TaskState) -> bool:
        if self.status_filter != "all" and task.status != self.status_filter:
            return False
        return self.text_filter.lower() in task.id.lower()

    def _update_table(self, dirty: set[str]) -> None:
        state = self.monitor.state
        with self.monitor.follower.lock:
            table = self.query_one(TaskList)
            shown = [t for t in state.tasks if self._visible(state.tasks[t])]
            prefix = common_prefix(list(state.tasks))
            cols = columns(state.baselines)
            if "*" in dirty or shown != table.rows or prefix != self.prefix or \
                    cols != table.columns:
                self.prefix = prefix
                self.name_width = self._name_width(self.app.size.width)
                table.set_rows(shown, {t: task_cells(state, state.tasks[t], prefix)
                                       for t in shown}, self.name_width, cols)
            else:
                for task_id in dirty:
                    if task_id in table.cells:
                        table.update_row(task_id, task_cells(state, state.tasks[task_id],
                                                             prefix))
            counts = state.counts()
        title = f"Tasks ({self.prefix.rstrip('/')})" if self.prefix else "Tasks"
        title += f"  {counts['done']}/{len(state.tasks)} done"
        for status in ("running", "skipped", "failed"):
            if counts[status]:
                title += f", {counts[status]} {status}"
        if self.text_filter or self.status_filter != "all":
            title += f"  [showing {len(shown)}: {self.status_filter}"
            title += f", '{self.text_filter}']" if self.text_filter else "]"
        if str(table.border_title) != title:
            table.border_title = Text(title)

    # -- actions ----------------------------------------------------------------------------
    @on(TaskList.Opened)
    def _opened(self, event: TaskList.Opened) -> None:
        self.app.push_screen(DetailScreen(event.task_id))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_cycle_status(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._update_table({"*"})

    def action_clear_filters(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = False
        box.value = ""
        self.text_filter, self.status_filter = "", "all"
        self._update_table({"*"})
        self.query_one("#tasks").focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self._update_table({"*"})

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(box.value)
        self.query_one("#tasks").focus()
