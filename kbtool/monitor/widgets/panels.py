"""The two panels under the task table: evaluations (and the run's worker queue) and LLM
usage."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from kbtool.monitor.state import RunState
from kbtool.monitor.text import STATUS_SHORT, STATUS_STYLE, lines
from kbtool.monitor.widgets.readout import Readout


def queue_line(queue: dict[str, Any] | None) -> Text | None:
    """Workers and depth of the run's shared-directory queue, when it uses one."""
    if queue is None:
        return None
    q = queue["queue"]
    return Text(f"queue: {q['pending']} pending, {q['claimed']} running, {q['bad']} bad; "
                f"workers {queue['workers_alive']} alive, {queue['throughput_per_min']}/min, "
                f"{queue['jobs_failed']} not ok")


def evals_text(state: RunState, now: float, queue: dict[str, Any] | None = None) -> Text:
    overall, recent = state.eval_rate(now)
    ok = state.eval_statuses.get("ok", 0)
    failures = sorted(((n, s) for s, n in state.eval_statuses.items() if s != "ok"),
                      reverse=True)
    env = state.env
    parts = [
        Text.assemble(f"done {state.evaluations}  ", ("correct ", ""), (str(ok), "green"),
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
    return lines([line, *parts] if line is not None else parts)


def llm_text(state: RunState) -> Text:
    llm = state.llm
    mean = llm.latency_s / (llm.calls - llm.cached) if llm.calls > llm.cached else 0.0
    budget = Text("budget ok", "green") if llm.budget_exhausted is None else \
        Text(f"budget exhausted: {llm.budget_exhausted}", "bold red")
    return lines([
        Text(f"calls {llm.calls}  cached {llm.cached}  mean {mean:.1f}s"),
        Text(f"tokens {llm.prompt_tokens:,} in, {llm.completion_tokens:,} out"),
        Text(f"cost ${llm.cost_usd:.4f}"),
        Text.assemble("errors ", (str(llm.errors), "red" if llm.errors else ""),
                      "  failed ", (str(llm.failed), "red" if llm.failed else ""),
                      "  no code ", (str(llm.format_errors), "yellow" if llm.format_errors
                                     else "")),
        budget,
    ])


class EvalsPanel(Readout):
    """Evaluations done, rates, failures by status, the evaluator's environment."""

    def on_mount(self) -> None:
        self.border_title = "Evaluations"

    def show(self, state: RunState, now: float, queue: dict[str, Any] | None) -> None:
        self.show_text(evals_text(state, now, queue))


class LLMPanel(Readout):
    """Calls, tokens, cost, errors and the budget."""

    def on_mount(self) -> None:
        self.border_title = "LLM"

    def show(self, state: RunState) -> None:
        self.show_text(llm_text(state))
