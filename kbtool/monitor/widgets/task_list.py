"""The task table: one row per task, drawn line by line from cached strips."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from kbtool.monitor.state import LEGACY_BASELINES, RunState, TaskState
from kbtool.monitor.text import STATUS_SHORT, STATUS_STYLE, Cell, fmt_ms, fmt_x

Column = tuple[str, int, bool]  # header, width (0: the task column takes what is left), right
SPEEDUP_COLUMNS = 2  # speedups against the run's first two baselines


def shown_baselines(baselines: list[str]) -> list[str]:
    """The baselines of the speedup columns ("" for a column left empty)."""
    return [*baselines[:SPEEDUP_COLUMNS], *[""] * (SPEEDUP_COLUMNS - len(baselines))]


def columns(baselines: list[str]) -> tuple[Column, ...]:
    """The table's columns: speedups against the run's baselines (KernelBench: eager,
    compile; a kind's own names otherwise), the labels kept short."""
    labels = ["" if not b else f"vs {b}" if len(b) <= 5 else f"vs {b[:4]}"
              for b in shown_baselines(baselines)]
    return (("Task", 0, False), ("Ph", 2, True), ("Cand", 4, True), ("OK", 3, True),
            ("Best ms", 7, True), *[(label, max(7, len(label)), True) for label in labels],
            ("Status", 7, False))


def fixed_width(cols: tuple[Column, ...]) -> int:
    return sum(w for _, w, _ in cols) + 2 * len(cols) + 2  # padding, scrollbar


def best_cell(task: TaskState) -> Cell:
    """The best candidate's runtime; ``pass`` when its kind does not time candidates."""
    best = task.best
    if best is not None and best.runtime_ms is None:
        return ("pass", STATUS_STYLE["pass"])
    return (fmt_ms(task.best_runtime_ms), "")


def task_cells(state: RunState, task: TaskState, prefix: str) -> tuple[Cell, ...]:
    name = task.id[len(prefix):] if task.id.startswith(prefix) else task.id
    return ((name, ""), ("-" if task.phase is None else str(task.phase), ""),
            (str(task.candidates), ""), (str(task.correct), "green" if task.correct else ""),
            best_cell(task),
            *[fmt_x(task.speedup(b, state.eval_mode)) if b else ("", "")
              for b in shown_baselines(state.baselines)],
            (STATUS_SHORT.get(task.status, task.status), STATUS_STYLE.get(task.status, "")))


class TaskList(ScrollView, can_focus=True):
    """A table of tasks drawn line by line from cached strips: a poll that changes a few
    rows re-renders those rows only (a DataTable re-renders every visible cell on any
    change, which costs tens of ms a frame with hundreds of tasks)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"tasklist--header", "tasklist--cursor",
                                             "tasklist--even"}
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
