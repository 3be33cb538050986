"""``kbtool monitor RUN_DIR``: a terminal UI (Textual) that follows a run from its event log.

A thread polls ``events.jsonl`` (no inotify: it works over NFS, from another node) and folds
what was appended into a ``RunState`` (``kbtool.monitor_state``); the screens then update
their tables from the state in one batch per poll, only the rows of the tasks that changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static, TabbedContent, TabPane, Tree

from kbtool.monitor_state import TASK_STATUSES, RunFollower, RunState, Step, StepKey, TaskState

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

# name, header, width (None: the task column takes what is left)
COLUMNS = (("task", "Task", None), ("phase", "Ph", 2), ("cand", "Cand", 4), ("ok", "OK", 3),
           ("best", "Best ms", 7), ("eager", "vs eager", 8), ("compile", "vs comp", 7),
           ("status", "Status", 7))
_FIXED_WIDTH = sum(w or 0 for _, _, w in COLUMNS) + 2 * len(COLUMNS) + 2  # padding, scrollbar


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def fmt_x(value: float | None) -> Text:
    if value is None:
        return Text("-", style="dim", justify="right")
    return Text(f"{value:.2f}x", style="green" if value > 1 else "yellow" if value >= 0.95
                else "red", justify="right")


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
class TaskTable(DataTable):
    BINDINGS = [Binding("enter", "select_cursor", "Open")]


class TasksScreen(Screen):
    BINDINGS = [
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
        self._shown: list[str] = []              # task ids in the table, in order
        self._cells: dict[str, tuple] = {}       # the cells last written per task

    def compose(self) -> ComposeResult:
        yield Static(id="topbar")
        yield TaskTable(id="tasks", cursor_type="row", zebra_stripes=True)
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
        self.refresh_from(self.app.state, {"*"})

    def _name_width(self, width: int) -> int:
        return max(10, width - _FIXED_WIDTH)

    def on_resize(self, event: Any) -> None:
        width = self._name_width(event.size.width)
        if width != self.name_width:
            self.name_width = width
            self.refresh_from(self.app.state, {"*"})

    # -- updates (one batch per poll) ---------------------------------------------------------
    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        now = app.clock()
        self.query_one("#topbar", Static).update(topbar(app.run_dir, state, now))
        self.query_one("#evals", Static).update(evals_panel(state, now))
        self.query_one("#llm", Static).update(llm_panel(state))
        if dirty:
            self._update_table(state, dirty)

    def _visible(self, task: TaskState) -> bool:
        if self.status_filter != "all" and task.status != self.status_filter:
            return False
        return self.text_filter.lower() in task.id.lower()

    def _update_table(self, state: RunState, dirty: set[str]) -> None:
        table = self.query_one("#tasks", DataTable)
        shown = [t for t in state.tasks if self._visible(state.tasks[t])]
        prefix = common_prefix(list(state.tasks))
        if "*" in dirty or shown != self._shown or prefix != self.prefix:
            self.prefix = prefix
            self._rebuild(table, state, shown)
        else:
            for task_id in dirty:
                if task_id in self._cells:
                    cells = self._row(state, state.tasks[task_id])
                    old = self._cells[task_id]
                    for (key, _, _), new, before in zip(COLUMNS, cells, old, strict=True):
                        if new != before:
                            table.update_cell(task_id, key, new)
                    self._cells[task_id] = cells
        counts = state.counts()
        title = f"Tasks ({self.prefix.rstrip('/')})" if self.prefix else "Tasks"
        title += f"  {counts['done']}/{len(state.tasks)} done"
        for status in ("running", "skipped", "failed"):
            if counts[status]:
                title += f", {counts[status]} {status}"
        if self.text_filter or self.status_filter != "all":
            title += f"  [showing {len(shown)}: {self.status_filter}"
            title += f", '{self.text_filter}']" if self.text_filter else "]"
        table.border_title = Text(title)

    def _rebuild(self, table: DataTable, state: RunState, shown: list[str]) -> None:
        cursor = self._shown[table.cursor_row] if 0 <= table.cursor_row < len(self._shown) \
            else None
        table.clear(columns=True)
        for key, label, width in COLUMNS:
            justify = "left" if key in ("task", "status") else "right"
            table.add_column(Text(label, justify=justify), key=key,
                             width=width or self.name_width)
        self._cells = {}
        for task_id in shown:
            cells = self._row(state, state.tasks[task_id])
            table.add_row(*cells, key=task_id)
            self._cells[task_id] = cells
        self._shown = shown
        if cursor in shown:
            table.move_cursor(row=shown.index(cursor), animate=False)

    def _row(self, state: RunState, task: TaskState) -> tuple:
        name = task.id[len(self.prefix):] if task.id.startswith(self.prefix) else task.id
        if len(name) > self.name_width:
            name = name[:self.name_width - 1] + "…"
        right = {"justify": "right"}
        return (Text(name), Text("-" if task.phase is None else str(task.phase), **right),
                Text(str(task.candidates), **right),
                Text(str(task.correct), style="green" if task.correct else "", **right),
                Text(fmt_ms(task.best_runtime_ms), **right),
                fmt_x(task.speedup("eager", state.eval_mode)),
                fmt_x(task.speedup("compile", state.eval_mode)), styled(task.status))

    # -- actions ----------------------------------------------------------------------------
    def action_open(self) -> None:
        table = self.query_one("#tasks", DataTable)
        if 0 <= table.cursor_row < len(self._shown):
            self.app.push_screen(DetailScreen(self._shown[table.cursor_row]))

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_cycle_status(self) -> None:
        index = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(index + 1) % len(STATUS_FILTERS)]
        self._update_table(self.app.state, {"*"})

    def action_clear_filters(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = False
        box.value = ""
        self.text_filter, self.status_filter = "", "all"
        self._update_table(self.app.state, {"*"})
        self.query_one("#tasks").focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value.strip()
        self._update_table(self.app.state, {"*"})

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


def evals_panel(state: RunState, now: float) -> Text:
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
    return _lines(lines)


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
class DetailScreen(Screen):
    BINDINGS = [
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
        self._shape: tuple = ()
        self._labels: dict[Any, Text] = {}
        self._shown: Any = None   # the node data whose files are shown

    def compose(self) -> ComposeResult:
        yield Static(id="taskbar")
        with Horizontal(id="body"):
            tree: Tree = Tree(self.task_id, id="steps")
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
        self.refresh_from(self.app.state, {self.task_id})
        tree = self.query_one(Tree)
        task = self.app.state.tasks.get(self.task_id)
        target = task.best.key if task and task.best else None
        self._move_to(tree, ("step", target) if target else None)
        tree.focus()

    def refresh_from(self, state: RunState, dirty: set[str]) -> None:
        if self.task_id not in dirty and "*" not in dirty:
            return
        task = state.tasks.get(self.task_id)
        if task is None:
            return
        self.query_one("#taskbar", Static).update(taskbar(task, state.eval_mode))
        tree = self.query_one(Tree)
        shape = (task.ideas, tuple(sorted(task.steps)))
        if shape != self._shape:
            self._build(tree, task)
            self._shape = shape
        else:
            for node in _walk(tree.root):
                label = self._label(task, node.data)
                if label != self._labels.get(node.data):
                    node.set_label(label)
                    self._labels[node.data] = label
                    if node.data == self._shown:
                        self.show(node.data)

    def _build(self, tree: Tree, task: TaskState) -> None:
        cursor = tree.cursor_node.data if tree.cursor_node else None
        collapsed = {n.data for n in _walk(tree.root) if n.allow_expand and not n.is_expanded}
        tree.clear()
        self._labels = {}
        expand_all = len(task.steps) <= 300
        if task.ideas:
            self._add(tree.root, task, ("ideas",), leaf=True)
        phases: dict[int, dict[int, list[Step]]] = {}
        for key in sorted(task.steps):
            phases.setdefault(key[0], {}).setdefault(key[1], []).append(task.steps[key])
        for phase, agents in phases.items():
            pnode = self._add(tree.root, task, ("phase", phase))
            for agent, steps in agents.items():
                anode = self._add(pnode, task, ("agent", phase, agent))
                for step in steps:
                    self._add(anode, task, ("step", step.key), leaf=True)
                if expand_all and ("agent", phase, agent) not in collapsed:
                    anode.expand()
            if ("phase", phase) not in collapsed:
                pnode.expand()
        if cursor is not None:
            self._move_to(tree, cursor)

    def _add(self, parent: Any, task: TaskState, data: tuple, leaf: bool = False) -> Any:
        label = self._label(task, data)
        self._labels[data] = label
        return parent.add_leaf(label, data=data) if leaf else parent.add(label, data=data)

    def _move_to(self, tree: Tree, data: Any) -> None:
        for node in _walk(tree.root):
            if node.data == data:
                parent = node.parent
                while parent is not None:
                    parent.expand()
                    parent = parent.parent
                self.call_after_refresh(tree.move_cursor, node, animate=False)
                return
        self.call_after_refresh(lambda: tree.move_cursor_to_line(0) if tree.last_line >= 0
                                else None)

    def _label(self, task: TaskState, data: Any) -> Text:
        if data is None:
            return Text(task.id)
        kind = data[0]
        if kind == "ideas":
            return Text("ideas", style="italic")
        if kind == "step":
            step = task.steps[data[1]]
            label = Text(f"step {step.step} ")
            label.append_text(styled(step.status))
            if step.speedup is not None:
                label.append(f" {step.speedup:.2f}x")
            return label
        steps = [s for k, s in task.steps.items() if k[0] == data[1] and
                 (kind == "phase" or k[1] == data[2])]
        ok = [s for s in steps if s.status == "ok" and s.runtime_ms is not None]
        best = min(ok, key=lambda s: s.runtime_ms) if ok else None
        if kind == "phase":
            label = Text(f"phase {data[1]} ")
            label.append(f"{len(ok)}/{len(steps)} ok", style="green" if ok else "yellow")
            if best is not None:
                label.append(f" {fmt_ms(best.runtime_ms)} ms")
            return label
        label = Text(f"agent {data[2]} ")
        last = max(steps, key=lambda s: s.step)
        if best is not None and best.speedup is not None:
            label.append(f"ok {best.speedup:.2f}x", style="green")
        else:
            label.append_text(styled(last.status))
        return label

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
            step = app.state.tasks[self.task_id].steps.get(key)
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


def _walk(node: Any) -> list[Any]:
    out, stack = [], list(reversed(node.children))
    while stack:
        item = stack.pop()
        out.append(item)
        stack.extend(reversed(item.children))
    return out


def taskbar(task: TaskState, eval_mode: str) -> Text:
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
        for mode in ("eager", "compile"):
            x = task.speedup(mode, eval_mode)
            if x is not None:
                text.append(f"  {x:.2f}x {mode}",
                            style="green" if x > 1 else "yellow" if x >= 0.95 else "red")
    else:
        text.append("-", style="dim")
    if task.baselines:
        text.append("   baselines " + ", ".join(f"{m} {fmt_ms(ms)} ms"
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
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self, run_dir: Path, interval: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.follower = RunFollower(self.run_dir)
        self.interval = interval
        self.clock = clock
        self.polls = 0             # polls applied to the screens
        self._polling = False

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
        with self.follower.lock:
            dirty = self.state.take_dirty()
            for screen in self.screen_stack:
                if isinstance(screen, (TasksScreen, DetailScreen)) and screen.is_mounted:
                    screen.refresh_from(self.state, dirty)
        self.polls += 1


def run_monitor(run_dir: Path, interval: float = 1.0) -> None:
    MonitorApp(run_dir, interval=interval).run()
