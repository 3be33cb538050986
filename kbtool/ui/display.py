"""Human-readable output: rich tables on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from kbtool.evaluation.result import EvalResult, Status
from kbtool.runs.summary import RunSummary

if TYPE_CHECKING:
    from kbtool.predictions.judge import Outcome

_STYLE = {Status.ok: "green", Status.incorrect: "yellow", Status.rejected: "magenta"}


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def speedup_text(speedup: float | None, ci: list[float] | None = None) -> str:
    """``1.93x [1.88-1.99]``: a speedup with its 95% interval, where it has one."""
    if speedup is None:
        return "-"
    if not ci or len(ci) != 2:
        return f"{speedup:.2f}x"
    return f"{speedup:.2f}x [{ci[0]:.2f}-{ci[1]:.2f}]"


def _speedup(result: EvalResult) -> str:
    text = speedup_text(result.speedup, result.speedup_ci)
    return f"{text} noisy" if result.noisy and result.speedup is not None else text


def verdict_line(result: EvalResult) -> str | None:
    """What the speedup means: faster beyond the noise, or not."""
    if result.speedup is None:
        return None
    how = {"paired": "timed in alternation with the reference",
           "cached": "against the cached baseline"}.get(result.speedup_from or "", "")
    if result.significant:
        meaning = "faster (its 95% interval lies above 1)"
    elif result.speedup_ci and result.speedup_ci[1] < 1:
        meaning = "slower (its 95% interval lies below 1)"
    else:
        meaning = "not shown faster (its 95% interval contains 1)"
    return f"{meaning}{'; ' + how if how else ''}"


def print_result(result: EvalResult) -> None:
    console = Console(soft_wrap=True)
    style = _STYLE.get(result.status, "red")
    console.print(f"[bold]{result.task}[/bold]  {result.solution}")
    console.print(f"status: [{style}]{result.status.value}[/{style}]  device: {result.device} "
                  f"({result.env.get('device_name', '?')})  timer: {result.timer}  "
                  f"mode: {result.mode}")
    if result.timing is not None:
        t = result.timing
        console.print(f"runtime: {_ms(t.median_ms)} ms median (95% CI {_ms(t.ci95_low_ms)}-"
                      f"{_ms(t.ci95_high_ms)}), mean {_ms(t.mean_ms)}, std {_ms(t.std_ms)}, "
                      f"min {_ms(t.min_ms)}, {t.trials} trials ({t.stop_reason})")
    if result.baseline is not None:
        console.print(f"baseline ({result.mode}): {_ms(result.baseline_ms)} ms median, "
                      f"{result.baseline.trials} trials")
    if result.speedup is not None:
        console.print(f"speedup: [bold]{speedup_text(result.speedup, result.speedup_ci)}"
                      f"[/bold] {verdict_line(result)}", highlight=False)
    for name, other in result.speedups.items():
        if name != result.mode:
            console.print(f"speedup vs {name}: {speedup_text(other.speedup, other.speedup_ci)} "
                          f"({other.speedup_from}; the reference {_ms(other.baseline_ms)} ms)",
                          highlight=False)
    if result.noisy:
        reasons = (result.noise or {}).get("reasons") or []
        console.print(f"[yellow]noisy:[/yellow] {'; '.join(reasons) or 'the interval did not narrow'}"
                      " (nothing cached; rerun on a quieter machine for tighter figures)",
                      highlight=False)
    for key, value in (result.model_extra or {}).items():  # the task kind's own fields
        if value not in (None, [], {}, ""):
            console.print(f"{key.replace('_', ' ')}: {value}", markup=False, highlight=False)
    if result.flags:
        console.print(f"flags: {', '.join(result.flags)}")
    if result.error:
        console.print(result.error, markup=False, highlight=False)


def progress_line(task_id: str, outcome: EvalResult | str) -> None:
    if isinstance(outcome, str):
        line = f"{task_id}: skipped: {outcome.splitlines()[0]}"
    else:
        line = (f"{task_id}: {outcome.status.value} runtime {_ms(outcome.runtime_ms)} ms "
                f"baseline {_ms(outcome.baseline_ms)} ms speedup {_speedup(outcome)}")
    print(line, file=sys.stderr, flush=True)


def print_batch_table(results: list[EvalResult], skipped: dict[str, str]) -> None:
    """A rich table on a terminal; plain whitespace-separated columns when piped."""
    columns = ("task", "status", "runtime_ms", "baseline_ms", "speedup", "trials")
    rows = [(r.task, r.status.value, _ms(r.runtime_ms), _ms(r.baseline_ms), _speedup(r),
             str(r.timing.trials) if r.timing else "-") for r in results]
    rows += [(task_id, "skipped", "-", "-", "-", "-") for task_id in skipped]
    if not sys.stdout.isatty():
        widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return
    table = Table(title="kbtool eval")
    for column in columns:
        table.add_column(column, justify="left" if column in ("task", "status") else "right")
    for row in rows:
        style = "dim" if row[1] == "skipped" else _STYLE.get(Status(row[1]), "red")
        table.add_row(row[0], f"[{style}]{row[1]}[/{style}]", *row[2:])
    Console().print(table)


class RunDisplay:
    """Progress of ``kbtool run``, fed every event the run logs.

    On a terminal: a live rich bar that moves with each LLM call (or, with ``evals``, with
    each evaluation against that many: a run that judges given candidates, ``kbtool eval
    --predictions``), and a line per event worth a line.  Otherwise (a batch job's log, a
    Slurm output file): plain lines on stderr, as things happen: where the run writes, the
    run and each task starting, each baseline timed, each phase ended, each evaluation, each
    task done; and, at least every ``interval_s`` seconds, a progress line with the counts
    and an estimate of the time left.
    """

    def __init__(self, tasks: int, max_calls: int, enabled: bool = True,
                 run_dir: Path | None = None, interval_s: float = 30.0,
                 evals: int | None = None, title: str = "kbtool run") -> None:
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.tasks = tasks
        self.max_calls = max(1, max_calls)
        self.evals = evals
        self.interval_s = interval_s
        self.counts = {"tasks": 0, "started": 0, "baselines": 0, "calls": 0, "evals": 0,
                       "ok": 0}
        self._lock = threading.Lock()  # events arrive from every task's threads
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._progress: Any = None
        if self.tty:
            from rich.markup import escape
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn(f"[bold]{escape(title)}"), BarColumn(),
                                      TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False)
            # The bar measures LLM calls against the most the run can make; it jumps to
            # the end when the last task is done (chains that succeed early make fewer).
            total = max_calls if evals is None else evals
            self._bar = self._progress.add_task("run", total=max(1, total), detail="")
            self._progress.start()
        if enabled and run_dir is not None:
            self._print(f"run directory: {run_dir} ({tasks} task{'s' * (tasks != 1)}, at most "
                        f"{max_calls} LLM calls)")
        if enabled and not self.tty:
            threading.Thread(target=self._heartbeat, name="kbtool-progress",
                             daemon=True).start()

    def event(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        kind = event.get("type")
        with self._lock:
            c = self.counts
            if kind == "llm_call":
                c["calls"] += 1
            elif kind == "eval":
                c["evals"] += 1
                c["ok"] += event.get("status") == "ok"
            elif kind == "task_started":
                c["started"] += 1
            elif kind == "baseline":
                c["baselines"] += 1
            elif kind in ("task_done", "task_skipped", "task_failed"):
                c["tasks"] += 1
            counts = dict(c)
        line = self._line(event)
        if self._progress is not None:
            done = counts["tasks"] >= self.tasks
            if self.evals is not None:
                self._progress.update(
                    self._bar, completed=counts["evals"],
                    detail=f"{counts['evals']}/{self.evals} judged, {counts['ok']} correct, "
                           f"{counts['tasks']}/{self.tasks} tasks")
            else:
                self._progress.update(
                    self._bar, completed=self.max_calls if done else counts["calls"],
                    detail=f"{counts['tasks']}/{self.tasks} tasks, {counts['calls']} calls, "
                           f"{counts['evals']} evals, {counts['ok']} correct")
            if line and kind != "eval":
                self._progress.console.print(line, markup=False, highlight=False)
        elif line:
            self._print(line)

    def note(self, line: str) -> None:
        """A line about the run that is no event (what it is starting)."""
        if self.enabled:
            self._print(line)

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress.console.print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print(self.progress_text())

    def progress_text(self) -> str:
        """``progress 2:30: 3/16 tasks done ...; about 7:30 left``: the share done is the
        larger of the tasks done and the LLM calls made of the most the run can make."""
        with self._lock:
            c = dict(self.counts)
        elapsed = time.monotonic() - self._start
        work = c["calls"] / self.max_calls if self.evals is None else \
            c["evals"] / max(1, self.evals)
        share = max(c["tasks"] / max(1, self.tasks), work)
        if share == 0:
            left = "time left unknown until the first LLM call"
        elif share < 1:
            left = f"about {_clock(elapsed * (1 - share) / share)} left"
        else:
            left = "finishing"
        calls = f"{c['calls']} of at most {self.max_calls} LLM calls, " \
            if self.evals is None else ""
        evals = f"{c['evals']}" if self.evals is None else f"{c['evals']} of {self.evals}"
        return (f"progress {_clock(elapsed)}: {c['tasks']}/{self.tasks} tasks done "
                f"({c['started']} started), {c['baselines']} baselines, {calls}{evals} "
                f"evaluations ({c['ok']} correct); {left}")

    @staticmethod
    def _line(event: dict[str, Any]) -> str | None:
        kind = event.get("type")
        if kind == "eval":
            speed = f" speedup {event['speedup']:.2f}x" if event.get("speedup") else ""
            model = f" ({event['model']})" if event.get("model") else ""
            return (f"eval {event.get('sample') or event.get('step')}{model}: "
                    f"{event['status']}{speed}")
        if kind == "run_started":
            env = event.get("env") or {}
            tasks = len(event.get("tasks") or [])
            return (f"run {'resumed' if event.get('resumed') else 'started'}: "
                    f"{tasks} task{'s' * (tasks != 1)}, model {event.get('model')}, "
                    f"strategy {event.get('strategy')}, evaluating on "
                    f"{env.get('device_name') or env.get('device') or 'the workers'}")
        if kind == "task_started":
            return f"task {event['task']}: started"
        if kind == "baseline":
            ms = event.get("ms")
            return f"task {event['task']}: baseline {event['mode']} {_ms(ms)} ms"
        if kind == "phase_done":
            best = event.get("best_runtime_ms")
            return (f"task {event.get('task')}: phase {event.get('phase')} done, "
                    f"{event.get('correct', 0)} correct"
                    + (f", best {_ms(best)} ms" if best is not None else ""))
        if kind == "task_done":
            best = event.get("speedup") or {}
            shown = ", ".join(f"{k} {v:.2f}x" for k, v in best.items() if v)
            verdict = f"best {shown}" if shown else ("correct" if event.get("correct")
                                                     else "no correct")
            return f"task {event['task']}: done, {verdict}"
        if kind in ("task_skipped", "task_failed"):
            return f"task {event['task']}: {kind[5:]}: {event.get('reason') or event.get('error')}"
        if kind in ("budget_exhausted", "llm_failed"):
            return f"{kind}: {event.get('reason') or event.get('error')}"
        if kind == "run_finished":
            return f"run {event['status']}"
        return None

    def close(self) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress.stop()


def _clock(seconds: float) -> str:
    """``2:05`` or ``1:02:05``."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def print_run_summary(summary: RunSummary) -> None:
    """One line per task and the totals, on stdout."""
    for task_id, info in summary.tasks.items():
        speed = ", ".join(f"{mode} {x:.2f}x"
                          f"{' cached' if info.speedup_from.get(mode) == 'cached' else ''}"
                          for mode, x in info.speedup.items() if x)
        if not info.correct:
            best = "no correct solution"
        elif info.best_runtime_ms is not None:
            best = f"best {info.best_runtime_ms:.4g} ms" + (f" ({speed})" if speed else "")
        else:
            best = "correct"
        print(f"{task_id}: {best}; {info.correct_candidates}/{info.candidates} candidates "
              f"correct")
    t = summary.totals
    failed = t.get("internal_errors")
    print(f"run {summary.status}: {t['calls']} LLM calls ({t['paid_calls']} to the "
          f"provider, {t['cached_calls']} reused), {t['prompt_tokens'] + t['completion_tokens']} tokens, "
          f"${t['cost_usd']:.4f}, {t['evaluations']} evaluations"
          f"{f'; kbtool failed while judging {failed} candidates' if failed else ''}")


def print_predictions(outcome: Outcome) -> None:
    """Per model, its predictions by status; then where the run is."""
    counts = outcome.statuses()
    shown = [s.value for s in Status] + ["not_judged"]
    columns = ["model", "predictions", *[s for s in shown
                                         if any(s in c for c in counts.values())]]
    rows = [[model, str(sum(c.values())), *[str(c.get(s, 0)) for s in columns[2:]]]
            for model, c in counts.items()]
    widths = [max(len(row[i]) for row in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    print(f"{outcome.judged} evaluations run now; run: {outcome.run_dir} "
          f"(kbtool report {outcome.run_dir})")
