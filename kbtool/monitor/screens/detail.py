"""One task's drill-down: its header, its search tree, and the selected step's files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Tree

from kbtool.monitor.state import RunState, StepKey
from kbtool.monitor.text import read_text
from kbtool.monitor.widgets.step_tree import NodeData, StepTree
from kbtool.monitor.widgets.step_view import StepView
from kbtool.monitor.widgets.task_bar import TaskBar

if TYPE_CHECKING:
    from kbtool.monitor.app import MonitorApp


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("backspace", "back", "Back", show=False),
        Binding("1", "tab('code')", "Code"),
        Binding("2", "tab('eval')", "Eval"),
        Binding("3", "tab('prompt')", "Prompt"),
        Binding("4", "tab('response')", "Reply"),
    ]

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.shown: NodeData | None = None  # the node whose files are shown
        self.stale: set[str] = set()  # tasks changed while another screen was on top

    @property
    def monitor(self) -> MonitorApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield TaskBar(id="taskbar")
        with Horizontal(id="body"):
            yield StepTree(self.task_id, id="steps")
            yield StepView(id="view")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one(StepTree)
        state = self.monitor.state
        with self.monitor.follower.lock:
            self.refresh_from(state, {self.task_id})
            task = state.tasks.get(self.task_id)
            target = task.best.key if task and task.best else None
        tree.move_to(("step", target) if target else None)
        self.query_one(StepView).show_nothing()
        tree.focus()

    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        if self.task_id not in dirty and "*" not in dirty:
            return
        tree = self.query_one(StepTree)
        if "*" in dirty:  # the log was replaced: start the tree over
            tree.start_over()
        task = state.tasks.get(self.task_id)
        if task is None:
            return
        self.query_one(TaskBar).show(task, state.eval_mode, state.baselines)
        if self.shown in tree.sync(task):
            self.show(self.shown)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted[Any]) -> None:
        if event.node.data is not None and event.node.data[0] in ("step", "ideas"):
            self.show(event.node.data)

    def show(self, data: NodeData) -> None:
        """The selected step's candidate, evaluation, prompt and reply."""
        follower = self.monitor.follower
        view = self.query_one(StepView)
        self.shown = data
        if data[0] == "ideas":
            view.show_ideas(read_text(follower.ideas_file(self.task_id)))
            return
        key: StepKey = data[1]
        with follower.lock:
            task = follower.state.tasks.get(self.task_id)
            step = task.steps.get(key) if task else None
        view.show_step(follower.step_dir(self.task_id, key), follower.run_dir, step)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(StepView).active = tab
