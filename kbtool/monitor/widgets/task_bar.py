"""The drill-down's header: one task's status, counts, best candidate and baselines."""

from __future__ import annotations

from rich.text import Text

from kbtool.monitor.state import TaskState
from kbtool.monitor.text import STATUS_STYLE, fmt_ms, speed_style, styled
from kbtool.monitor.widgets.readout import Readout


def task_text(task: TaskState, eval_mode: str | None, baselines: list[str]) -> Text:
    text = Text()
    text.append(task.id, style="bold")
    text.append("  ")
    text.append_text(styled(task.status, short=False))
    text.append(f"  {task.candidates} candidates, {task.correct} correct")
    if task.reason:
        text.append(f"\n{task.reason.splitlines()[0] if task.reason.strip() else ''}",
                    style="yellow")
    text.append("\nbest ")
    if task.best is None:
        text.append("-", style="dim")
    elif task.best.runtime_ms is None:  # a kind that does not time its candidates
        text.append("pass", style=STATUS_STYLE["pass"])
    else:
        text.append(f"{fmt_ms(task.best_runtime_ms)} ms")
        for mode in baselines:
            found = task.against(mode, eval_mode)
            if found is not None:
                text.append(f"  {found.speedup:.2f}x {mode}", style=speed_style(found.speedup))
                if found.source == "cached":  # timed apart, not in the candidate's rounds
                    text.append(" (cached)", style="dim")
    if task.baselines:
        text.append("\nbaselines " + ", ".join(f"{m} {fmt_ms(ms)} ms"
                                               for m, ms in task.baselines.items()),
                    style="dim")
    return text


class TaskBar(Readout):
    FIXED_HEIGHT = False  # height: auto (a reason adds a line)

    def show(self, task: TaskState, eval_mode: str | None, baselines: list[str]) -> None:
        self.show_text(task_text(task, eval_mode, baselines))
