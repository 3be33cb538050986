"""The top line of the task table: the run, its model and strategy, status and clock."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

from kbtool.monitor.state import RunState
from kbtool.monitor.text import fmt_duration
from kbtool.monitor.widgets.readout import Readout


def run_text(run_dir: Path, state: RunState, now: float,
             loading: tuple[int, int] | None = None) -> Text:
    """``loading``: (bytes read, bytes in the log) while the log is still being read."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append(" kbtool monitor ", style="bold reverse")
    text.append(f" {run_dir.name}")
    if loading is not None:
        done, size = loading
        text.append(f"  reading the log {done / 1e6:.1f}/{size / 1e6:.1f} MB…", style="yellow")
    if state.model is None:
        if loading is None:
            text.append("  waiting for events…", style="dim")
        return text
    text.append(f"  {state.model}  {state.strategy}  ")
    text.append(state.status, style="cyan" if state.running else
                "green" if state.status == "finished" else "yellow")
    text.append(f"  {fmt_duration(state.elapsed_s(now))}  {state.events} events")
    if state.running and state.last_t is not None and loading is None:
        text.append(f"  last {fmt_duration(max(0.0, now - state.last_t))} ago", style="dim")
    return text


class RunBar(Readout):
    def show(self, run_dir: Path, state: RunState, now: float,
             loading: tuple[int, int] | None) -> None:
        self.show_text(run_text(run_dir, state, now, loading))
