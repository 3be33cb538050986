"""``kbtool monitor RUN_DIR``: a terminal UI (Textual) that follows a run from its event log.

A thread polls ``events.jsonl`` (no inotify: it works over NFS, from another node) and folds
what was appended into a ``RunState`` (``kbtool.monitor.state``); the screens then update
their tables from the state in one batch per poll, only the rows of the tasks that changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane, Tree

from kbtool.monitor.state import (
    LEGACY_BASELINES,
    TASK_STATUSES,
    RunFollower,
    RunState,
    Step,
    StepKey,
    TaskState,
)

STATUS_STYLE = {
    "ok": "green", "incorrect": "yellow", "compile_error": "red", "runtime_error": "red",
    "timeout": "red", "rejected": "magenta", "format_error": "red", "llm_failed": "red",
    "evaluating": "cyan", "waiting": "dim",
    "pending": "dim", "running": "cyan", "done": "green", "skipped": "yellow", "failed": "red",
}
STATUS_SHORT = {"compile_error": "compile err", "runtime_error": "runtime err",
                "format_error": "no code", "llm_failed": "llm failed",
                "evaluating": "evaluating…"}
STATUS_FILTERS = ("all", *TASK_STATUSES)
MAX_FILE_CHARS = 200_000  # a step's files are shown up to this size

Column = tuple[str, int, bool]  # header, width (0: the task column takes what is left), right
SPEEDUP_COLUMNS = 2  # speedups against the run's first two baselines


def columns(baselines: list[str]) -> tuple[Column, ...]:
    """The task table's columns: speedups against the run's baselines (KernelBench: eager,
    compile), the labels kept short."""
    shown = [*baselines[:SPEEDUP_COLUMNS], *[""] * (SPEEDUP_COLUMNS - len(baselines))]
    labels = [f"vs {b}" if len(b) <= 5 else f"vs {b[:4]}" if b else "" for b in shown]
    return (("Task", 0, False), ("Ph", 2, True), ("Cand", 4, True), ("OK", 3, True),
            ("Best ms", 7, True), *[(label, max(7, len(label)), True) for label in labels],
            ("Status", 7, False))


def fixed_width(cols: tuple[Column, ...]) -> int:
    return sum(w for _, w, _ in cols) + 2 * len(cols) + 2  # padding, scrollbar
Cell = tuple[str, str]  # text, style


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def speed_style(value: float) -> str:
    return "green" if value > 1 else "yellow" if value >= 0.95 else "red"


def fmt_x(value: float | None) -> Cell:
    return ("-", "dim") if value is None else (f"{value:.2f}x", speed_style(value))


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def styled(status: str, short: bool = True) -> Text:
    label = STATUS_SHORT.get(status, status) if short else status
    return Text(label, style=STATUS_STYLE.get(status, ""))


def common_prefix(task_ids: list[str]) -> str:
    """The task source shared by every task (``builtin/``), dropped from the table."""
    heads = {t.split("/", 1)[0] for t in task_ids if "/" in t}
    if len(heads) == 1 and all("/" in t for t in task_ids):
        return heads.pop() + "/"
    return ""


def read_text(path: Path) -> str | None:
    try:
        with open(path, errors="replace") as handle:
            text = handle.read(MAX_FILE_CHARS + 1)
    except OSError:
        return None
    return text if len(text) <= MAX_FILE_CHARS else text[:MAX_FILE_CHARS] + "\n… (cut)"


class Polled(Message):
    """The polling thread folded the log into the state (maybe with nothing new)."""


# -- the task table -------------------------------------------------------------------------
class TaskList(ScrollView, can_focus=True):
    """A table of tasks drawn line by line from cached strips: a poll that changes a few
    rows re-renders those rows only (a DataTable re-renders every visible cell on any
    change, which costs tens of ms a frame with hundreds of tasks)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"tasklist--header", "tasklist--cursor",
                                             "tasklist--even"}
    DEFAULT_CSS = """
    TaskList { background: $surface; color: $foreground; }
    TaskList > .tasklist--header { text-style: bold; background: $panel; }
    TaskList > .tasklist--even { background: $surface-lighten-1 50%; }
    TaskList > .tasklist--cursor { background: $block-cursor-blurred-background;
        color: $block-cursor-blurred-foreground; text-style: $block-cursor-blurred-text-style; }
    TaskList:focus > .tasklist--cursor { background: $block-cursor-background;
        color: $block-cursor-foreground; text-style: $block-cursor-text-style; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("up", "move(-1)", show=False), Binding("down", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False),
        Binding("home", "move(-1_000_000)", show=False),
        Binding("end", "move(1_000_000)", show=False),
    ]

    class Opened(Message):
        def __init__(self, task_id: str) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[str] = []
        self.cells: dict[str, tuple[Cell, ...]] = {}
        self.columns = columns(list(LEGACY_BASELINES))
        self.widths = [w for _, w, _ in self.columns]
        self.cursor = 0
        self._strips: dict[tuple, Strip] = {}

    @property
    def cursor_key(self) -> str | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def set_rows(self, rows: list[str], cells: dict[str, tuple[Cell, ...]],
                 name_width: int, cols: tuple[Column, ...]) -> None:
        key = self.cursor_key
        self.rows, self.cells = rows, cells
        self.columns = cols
        self.widths = [name_width, *[w for _, w, _ in cols[1:]]]
        self._strips.clear()
        self.cursor = rows.index(key) if key in rows else min(self.cursor, max(0, len(rows) - 1))
        self.virtual_size = Size(self.size.width, len(rows) + 1)
        self._scroll_to_cursor()
        self.refresh()

    def update_row(self, key: str, cells: tuple[Cell, ...]) -> None:
        if self.cells.get(key) != cells:
            self.cells[key] = cells
            self.refresh_line(self.rows.index(key) + 1)

    # -- drawing ------------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._strip(("header", self.columns), width,
                               [(label, "") for label, _, _ in self.columns],
                               self.get_component_rich_style("tasklist--header"))
        index = self.scroll_offset.y + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, self.rich_style)
        key = self.rows[index]
        cursor = index == self.cursor
        style = self.rich_style
        if cursor:
            style += self.get_component_rich_style("tasklist--cursor")
        elif index % 2:
            style += self.get_component_rich_style("tasklist--even")
        return self._strip((key, self.cells[key], cursor, index % 2, self.has_focus), width,
                           self.cells[key], style)

    def _strip(self, cache_key: tuple, width: int, cells: Any, style: Style) -> Strip:
        cache_key = (*cache_key, width, tuple(self.widths))
        strip = self._strips.get(cache_key)
        if strip is None:
            segments = []
            for (text, cell_style), w, (_, _, right) in zip(cells, self.widths, self.columns,
                                                            strict=True):
                if cell_len(text) > w:
                    text = set_cell_size(text, w - 1) + "…"
                text = " " * (w - cell_len(text)) + text if right else set_cell_size(text, w)
                segments.append(Segment(f" {text} ", style + Style.parse(cell_style)
                                        if cell_style else style))
            strip = Strip(segments).adjust_cell_length(width, style)
            if len(self._strips) > 4096:
                self._strips.clear()
            self._strips[cache_key] = strip
        return strip

    def on_resize(self, event: Any) -> None:
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- moving -------------------------------------------------------------------------------
    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + visible:
            self.scroll_to(y=self.cursor - visible + 1, animate=False)

    def move_cursor(self, index: int) -> None:
        if not self.rows:
            return
        old, self.cursor = self.cursor, max(0, min(len(self.rows) - 1, index))
        if old != self.cursor:
            self.refresh_line(old + 1)
            self.refresh_line(self.cursor + 1)
            self._scroll_to_cursor()

    def action_move(self, delta: int) -> None:
        self.move_cursor(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor + direction * max(1, self.size.height - 2))

    def action_open(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Opened(self.cursor_key))

    def on_click(self, event: Any) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        index = self.scroll_offset.y + offset.y - 1
        if index < len(self.rows):
            if index == self.cursor:
                self.action_open()
            self.move_cursor(index)


class TasksScreen(Screen):
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

    def compose(self) -> ComposeResult:
        yield Static(id="topbar")
        yield TaskList(id="tasks")
        yield Input(id="filter", placeholder="/ filter tasks (Enter: keep, Esc: clear)")
        with Horizontal(id="panels"):
            yield Static(id="evals", classes="panel")
            yield Static(id="llm", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#evals").border_title = "Evaluations"
        self.query_one("#llm").border_title = "LLM"
        self.query_one("#filter").display = False
        self.name_width = self._name_width(self.app.size.width)
        with self.app.follower.lock:
            self.refresh_from(self.app.state, {"*"})

    def _name_width(self, width: int) -> int:
        return max(10, width - fixed_width(columns(self.app.state.baselines)))

    def on_resize(self, event: Any) -> None:
        width = self._name_width(event.size.width)
        if width != self.name_width:
            self.name_width = width
            self._update_table({"*"})

    # -- updates (one batch per poll) ---------------------------------------------------------
    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        now = app.clock()
        self.query_one("#topbar", Static).update(topbar(app.run_dir, state, now))
        self.query_one("#evals", Static).update(evals_panel(state, now, app.follower.queue))
        self.query_one("#llm", Static).update(llm_panel(state))
        if dirty:
            self._update_table(dirty)

    def _visible(self, task: TaskState) -> bool:
        if self.status_filter != "all" and task.status != self.status_filter:
            return False
        return self.text_filter.lower() in task.id.lower()

    def _update_table(self, dirty: set[str]) -> None:
        state = self.app.state
        with self.app.follower.lock:
            table = self.query_one(TaskList)
            shown = [t for t in state.tasks if self._visible(state.tasks[t])]
            prefix = common_prefix(list(state.tasks))
            cols = columns(state.baselines)
            if "*" in dirty or shown != table.rows or prefix != self.prefix or \
                    cols != table.columns:
                self.prefix = prefix
                self.name_width = self._name_width(self.app.size.width)
                table.set_rows(shown, {t: self._row(state, state.tasks[t]) for t in shown},
                               self.name_width, cols)
            else:
                for task_id in dirty:
                    if task_id in table.cells:
                        table.update_row(task_id, self._row(state, state.tasks[task_id]))
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

    def _row(self, state: RunState, task: TaskState) -> tuple[Cell, ...]:
        name = task.id[len(self.prefix):] if task.id.startswith(self.prefix) else task.id
        return ((name, ""), ("-" if task.phase is None else str(task.phase), ""),
                (str(task.candidates), ""), (str(task.correct), "green" if task.correct else ""),
                (fmt_ms(task.best_runtime_ms), ""),
                *[fmt_x(task.speedup(b, state.eval_mode)) if b else ("", "")
                  for b in [*state.baselines[:SPEEDUP_COLUMNS],
                            *[""] * (SPEEDUP_COLUMNS - len(state.baselines))]],
                (STATUS_SHORT.get(task.status, task.status), STATUS_STYLE.get(task.status, "")))

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


def topbar(run_dir: Path, state: RunState, now: float) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" kbtool monitor ", style="bold reverse")
    text.append(f" {run_dir.name}")
    if state.model is None:
        text.append("  waiting for events…", style="dim")
        return text
    text.append(f"  {state.model}  {state.strategy}  ")
    text.append(state.status, style="cyan" if state.running else
                "green" if state.status == "finished" else "yellow")
    text.append(f"  {fmt_duration(state.elapsed_s(now))}  {state.events} events")
    if state.running and state.last_t is not None:
        text.append(f"  last {fmt_duration(max(0.0, now - state.last_t))} ago", style="dim")
    return text


def queue_line(queue: dict | None) -> Text | None:
    """Workers and depth of the run's shared-directory queue, when it uses one."""
    if queue is None:
        return None
    q = queue["queue"]
    return Text(f"queue: {q['pending']} pending, {q['claimed']} running, {q['bad']} bad; "
                f"workers {queue['workers_alive']} alive, {queue['throughput_per_min']}/min, "
                f"{queue['jobs_failed']} not ok")


def evals_panel(state: RunState, now: float, queue: dict | None = None) -> Text:
    overall, recent = state.eval_rate(now)
    done = state.evaluations
    ok = state.eval_statuses.get("ok", 0)
    failures = sorted(((n, s) for s, n in state.eval_statuses.items() if s != "ok"),
                      reverse=True)
    env = state.env
    lines = [
        Text.assemble(f"done {done}  ", ("correct ", ""), (str(ok), "green"),
                      f"  awaiting {state.awaiting_eval()}"),
        Text(f"{overall:.1f}/min overall, {recent:.1f}/min last 5 min"),
        Text.assemble(*(part for n, s in failures
                        for part in ((STATUS_SHORT.get(s, s), STATUS_STYLE.get(s, "")),
                                     f" {n}  "))) if failures else Text("no failures", "dim"),
        Text(f"{env.get('device', '?')}: {env.get('device_name', '?')}"),
        Text(f"timer {env.get('timer', '?')}  sandbox: "
             f"{', '.join(env.get('sandbox') or []) or 'none'}"),
    ]
    line = queue_line(queue)
    return _lines([line, *lines] if line is not None else lines)


def llm_panel(state: RunState) -> Text:
    llm = state.llm
    mean = llm.latency_s / (llm.calls - llm.cached) if llm.calls > llm.cached else 0.0
    budget = Text("budget ok", "green") if llm.budget_exhausted is None else \
        Text(f"budget exhausted: {llm.budget_exhausted}", "bold red")
    lines = [
        Text(f"calls {llm.calls}  cached {llm.cached}  mean {mean:.1f}s"),
        Text(f"tokens {llm.prompt_tokens:,} in, {llm.completion_tokens:,} out"),
        Text(f"cost ${llm.cost_usd:.4f}"),
        Text.assemble("errors ", (str(llm.errors), "red" if llm.errors else ""),
                      "  failed ", (str(llm.failed), "red" if llm.failed else ""),
                      "  no code ", (str(llm.format_errors), "yellow" if llm.format_errors
                                     else "")),
        budget,
    ]
    return _lines(lines)


def _lines(lines: list[Text]) -> Text:
    text = Text("\n").join(lines)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


# -- one task: its tree and the selected step ------------------------------------------------
class StepTree(Tree):
    """A Tree where left folds (or goes to the parent) and right unfolds (or goes down)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "fold", "Fold", show=False),
        Binding("right", "unfold", "Unfold", show=False),
    ]

    def action_fold(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and node.is_expanded:
            node.collapse()
        else:
            self.action_cursor_parent()

    def action_unfold(self) -> None:
        node = self.cursor_node
        if node is not None and node.allow_expand and not node.is_expanded:
            node.expand()
        else:
            self.action_cursor_down()


class DetailScreen(Screen):
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
        self._tree_nodes: dict[tuple, Any] = {}   # node data -> tree node
        self._sigs: dict[tuple, tuple] = {}       # node data -> the figures of its label
        self._shown: Any = None   # the node data whose files are shown

    def compose(self) -> ComposeResult:
        yield Static(id="taskbar")
        with Horizontal(id="body"):
            tree = StepTree(self.task_id, id="steps")
            tree.show_root = False
            tree.guide_depth = 2
            yield tree
            with TabbedContent(id="view"):
                with TabPane("Code", id="code"), VerticalScroll():
                    yield Static(id="code-text", classes="content")
                with TabPane("Eval", id="eval"), VerticalScroll():
                    yield Static(id="eval-text", classes="content")
                with TabPane("Prompt", id="prompt"), VerticalScroll():
                    yield Static(id="prompt-text", classes="content")
                with TabPane("Reply", id="response"), VerticalScroll():
                    yield Static(id="response-text", classes="content")
        yield Footer()

    def on_mount(self) -> None:
        tree = self.query_one(Tree)
        with self.app.follower.lock:
            self.refresh_from(self.app.state, {self.task_id})
            task = self.app.state.tasks.get(self.task_id)
            target = task.best.key if task and task.best else None
        self._move_to(tree, ("step", target) if target else None)
        self._set("#code-text", Text("(no step selected: pick one in the tree)", "dim"))
        tree.focus()

    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        if self.task_id not in dirty and "*" not in dirty:
            return
        task = state.tasks.get(self.task_id)
        tree = self.query_one(Tree)
        if "*" in dirty:  # the log was replaced: start the tree over
            tree.clear()
            self._tree_nodes, self._sigs = {}, {}
        if task is None:
            return
        self.query_one("#taskbar", Static).update(taskbar(task, state.eval_mode, state.baselines))
        self._sync_tree(tree, task)

    def _sync_tree(self, tree: Tree, task: TaskState) -> None:
        """Add the nodes of new steps in place (phases, agents and steps in order) and
        relabel the nodes whose figures changed: no rebuild, so the cursor and what is
        expanded stay, and a poll costs little more than the steps it brought."""
        groups: dict[int, dict[int, list[Step]]] = {}
        for key in sorted(task.steps):
            groups.setdefault(key[0], {}).setdefault(key[1], []).append(task.steps[key])
        if task.ideas and ("ideas",) not in self._tree_nodes:
            self._node(tree.root, ("ideas",), (), lambda: Text("ideas", style="italic"),
                       leaf=True)
        expand = len(task.steps) <= 300
        for phase, agents in groups.items():
            steps = [s for chain in agents.values() for s in chain]
            pnode = self._node(tree.root, ("phase", phase), _group_sig(steps),
                               lambda n=phase, s=steps: group_label(f"phase {n}", s, True),
                               expand=True)
            for agent, chain in agents.items():
                anode = self._node(pnode, ("agent", phase, agent), _group_sig(chain),
                                   lambda n=agent, s=chain: group_label(f"agent {n}", s, False),
                                   expand=expand)
                for step in chain:
                    self._node(anode, ("step", step.key), (step.status, step.speedup),
                               lambda s=step: step_label(s), leaf=True)

    def _node(self, parent: Any, data: tuple, sig: tuple, label: Callable[[], Text],
              leaf: bool = False, expand: bool = False) -> Any:
        """The node for ``data``: added among ``parent``'s children in order, or relabelled
        when its figures (``sig``) changed."""
        node = self._tree_nodes.get(data)
        if node is None:
            index = sum(1 for child in parent.children if child.data < data)
            before = index if index < len(parent.children) else None
            node = parent.add_leaf(label(), data=data, before=before) if leaf else \
                parent.add(label(), data=data, before=before, expand=expand)
            self._tree_nodes[data] = node
        elif self._sigs.get(data) != sig:
            node.set_label(label())
            if data == self._shown:
                self.show(data)
        self._sigs[data] = sig
        return node

    def _move_to(self, tree: Tree, data: Any) -> None:
        node = self._tree_nodes.get(data)
        if node is not None:
            parent = node.parent
            while parent is not None:
                parent.expand()
                parent = parent.parent
            self.call_after_refresh(tree.move_cursor, node, animate=False)
        elif tree.root.children:
            self.call_after_refresh(tree.move_cursor_to_line, 0)

    @on(Tree.NodeHighlighted)
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None and event.node.data[0] in ("step", "ideas"):
            self.show(event.node.data)

    def show(self, data: tuple) -> None:
        """The selected step's candidate, evaluation, prompt and reply."""
        app: MonitorApp = self.app  # type: ignore[assignment]
        self._shown = data
        if data[0] == "ideas":
            reply = read_text(app.follower.ideas_file(self.task_id))
            self._set("#code-text", Text("(the ideas step writes no code)", "dim"))
            self._set("#eval-text", Text("(not evaluated)", "dim"))
            self._set("#prompt-text", Text("(the ideas prompt is not stored)", "dim"))
            self._set("#response-text", Text(reply or "(no reply)"))
            return
        key: StepKey = data[1]
        folder = app.follower.step_dir(self.task_id, key)
        code = read_text(folder / "candidate.py")
        self._set("#code-text", Syntax(code, "python", line_numbers=True, word_wrap=True,
                                       theme="ansi_dark")
                  if code else Text("(no candidate: the reply had no code block, or it "
                                    "has not arrived yet)", "dim"))
        with app.follower.lock:
            task = app.state.tasks.get(self.task_id)
            step = task.steps.get(key) if task else None
        self._set("#eval-text", eval_view(folder / "eval.json", step))
        prompt = read_text(folder / "prompt.md")
        reply = read_text(folder / "response.md")
        self._set("#prompt-text", Text(prompt) if prompt else Text("(no prompt)", "dim"))
        self._set("#response-text", Text(reply) if reply else Text("(no reply yet)", "dim"))

    def _set(self, selector: str, content: Any) -> None:
        self.query_one(selector, Static).update(content)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab


def _group_sig(steps: list[Step]) -> tuple:
    return tuple((s.status, s.runtime_ms, s.speedup) for s in steps)


def group_label(name: str, steps: list[Step], phase: bool) -> Text:
    ok = [s for s in steps if s.status == "ok" and s.runtime_ms is not None]
    best = min(ok, key=lambda s: s.runtime_ms) if ok else None
    label = Text(f"{name} ")
    if phase:
        label.append(f"{len(ok)}/{len(steps)} ok", style="green" if ok else "yellow")
        if best is not None:
            label.append(f" {fmt_ms(best.runtime_ms)} ms")
    elif best is not None and best.speedup is not None:
        label.append(f"ok {best.speedup:.2f}x", style="green")
    else:
        label.append_text(styled(steps[-1].status))
    return label


def step_label(step: Step) -> Text:
    label = Text(f"step {step.step} ")
    label.append_text(styled(step.status))
    if step.speedup is not None:
        label.append(f" {step.speedup:.2f}x")
    return label


def taskbar(task: TaskState, eval_mode: str | None, baselines: list[str]) -> Text:
    text = Text()
    text.append(task.id, style="bold")
    text.append("  ")
    text.append_text(styled(task.status, short=False))
    text.append(f"  {task.candidates} candidates, {task.correct} correct")
    if task.reason:
        text.append(f"\n{task.reason.splitlines()[0] if task.reason.strip() else ''}",
                    style="yellow")
    text.append("\nbest ")
    if task.best is not None:
        text.append(f"{fmt_ms(task.best_runtime_ms)} ms")
        for mode in baselines:
            x = task.speedup(mode, eval_mode)
            if x is not None:
                text.append(f"  {x:.2f}x {mode}",
                            style=speed_style(x))
    else:
        text.append("-", style="dim")
    if task.baselines:
        text.append("\nbaselines " + ", ".join(f"{m} {fmt_ms(ms)} ms"
                                               for m, ms in task.baselines.items()),
                    style="dim")
    return text


def eval_view(path: Path, step: Step | None) -> Text:
    """Status, numbers, flags and the error tail of one evaluation."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if data is None:
        if step is None:
            return Text("(no evaluation)", "dim")
        data = {"status": step.status, "runtime_ms": step.runtime_ms,
                "baseline_ms": step.baseline_ms, "speedup": step.speedup, "flags": step.flags}
    text = Text()
    status = data.get("status", "?")
    text.append("status   ")
    text.append(status, style=f"bold {STATUS_STYLE.get(status, '')}")
    speed = data.get("speedup")
    text.append(f"\nruntime  {fmt_ms(data.get('runtime_ms'))} ms   baseline "
                f"{fmt_ms(data.get('baseline_ms'))} ms ({data.get('mode', '?')})   speedup "
                f"{'-' if speed is None else f'{speed:.3f}x'}")
    timing = data.get("timing")
    if timing:
        text.append(f"\ntiming   {timing.get('trials')} trials, 95% CI "
                    f"{fmt_ms(timing.get('ci95_low_ms'))}-{fmt_ms(timing.get('ci95_high_ms'))} "
                    f"ms ({timing.get('stop_reason')})")
    if data.get("flags"):
        text.append(f"\nflags    {', '.join(data['flags'])}", style="magenta")
    for finding in data.get("findings") or []:
        text.append(f"\n  {finding}", style="dim")
    if data.get("max_abs_diff"):
        text.append(f"\nmax abs diff {data['max_abs_diff']}")
    if data.get("stage_s"):
        text.append("\nstages   " + ", ".join(f"{k} {v:.2f}s"
                                              for k, v in data["stage_s"].items()))
    if data.get("error"):
        tail = "\n".join(data["error"].rstrip().splitlines()[-40:])
        text.append("\n\nerror (tail)\n", style="bold")
        text.append(tail, style="red")
    return text


# -- the app ---------------------------------------------------------------------------------
class MonitorApp(App):
    TITLE = "kbtool monitor"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #topbar { height: 1; background: $panel; }
    #tasks { height: 1fr; border-top: solid $primary; }
    #panels { height: 7; }
    .panel { width: 1fr; height: 7; border: round $primary; padding: 0 1;
             text-wrap: nowrap; text-overflow: ellipsis; }
    #filter { height: 1; border: none; padding: 0 1; }
    #taskbar { height: auto; max-height: 4; padding: 0 1; background: $panel; }
    #steps { width: 36%; min-width: 26; max-width: 60; border-right: solid $primary; }
    #view { width: 1fr; }
    TabPane { padding: 0; }
    .content { width: 1fr; padding: 0 1; }
    """
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
        self._polling = False
        self._applied: tuple[int, int] | None = None  # the state (and version) last applied

    @property
    def state(self) -> RunState:
        return self.follower.state

    def get_default_screen(self) -> Screen:
        return TasksScreen()

    def on_mount(self) -> None:
        self.sub_title = str(self.run_dir)
        self.poll_now()
        self.set_interval(self.interval, self.poll_now)

    def poll_now(self) -> None:
        """Read what was appended, in a thread (a shared filesystem may be slow)."""
        if self._polling:
            return
        self._polling = True
        self.run_worker(self._poll, thread=True, group="poll", exit_on_error=False)

    def _poll(self) -> None:
        try:
            self.follower.poll()
        finally:
            self._polling = False
            self.post_message(Polled())

    def on_polled(self, message: Polled) -> None:
        start = time.perf_counter()
        with self.follower.lock:
            applied = (id(self.state), self.state.version)
            if applied == self._applied and not self.state.running:
                return  # nothing new, and nothing that changes with the clock
            self._applied = applied
            dirty = self.state.take_dirty()
            for screen in self.screen_stack:
                if isinstance(screen, (TasksScreen, DetailScreen)) and screen.is_mounted:
                    screen.refresh_from(self.state, dirty)
        self.last_apply_s = time.perf_counter() - start
        self.polls += 1


def run_monitor(run_dir: Path, interval: float = 1.0) -> None:
    MonitorApp(run_dir, interval=interval).run()
