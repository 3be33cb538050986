"""One candidate's check, in kbtool's isolated process (``PerfKind.check``).

1. the patch is applied to a copy of the baseline tree by a ladder (``patching``); what it
   changed is read from the tree; its added code is read (``static_checks``);
2. correctness: every workload, visible and hidden, on fresh inputs gives the baseline's
   results, for the agent and for the human patch (the human's failing is the task's fault:
   ``TaskRefused``, exit 2); then the package's tests pass on the patched code;
3. timing: baseline, human and agent interleaved, each run a fresh process timed by the
   judge, round after round until each ratio's interval is tight or a cap is hit; the score
   comes from the hidden workloads when the task has any, and the agent's gain on the
   visible ones is compared with its gain on the hidden ones (``overfits_workload``);
4. calibration: the human patch must come out significantly faster than the baseline.

A run of the baseline or the human patch that fails is the task's fault, never the
candidate's: it raises ``TaskRefused`` (the evaluator makes it a one-line error, exit 2).
"""

from __future__ import annotations

import math
import re
import secrets
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbtool.config import Config
from kbtool.sandbox import devicelock
from kbtool.sandbox.isolation import Reporter
from kbtool.task.model import Task, TaskRefused
from kbtool.timing.compare import (
    Ratio,
    StopRule,
    mann_whitney_faster,
    mean_interval,
    paired_ratio,
    places,
    ratio_from_logs,
    rotation,
    run_rounds,
)
from kbtool.timing.noise import assess, machine_state
from kbtool_plugins.perf import containers, releases
from kbtool_plugins.perf.judge import Judge, Launch, Run, RunFailed, Version, Violation
from kbtool_plugins.perf.patching import apply_patch, changed_files, refusal, snapshot
from kbtool_plugins.perf.settings import (
    MeanStats,
    Outcome,
    PerfDetails,
    PerfSettings,
    WorkloadResult,
)
from kbtool_plugins.perf.static_checks import check_module
from kbtool_plugins.perf.workloads import Bench, BenchWorkload, payload_of, problems, task_dir

ARMS = ("baseline", "human", "agent")
# (reference, candidate): speedup, human speedup, agent vs human.
PAIRS = (("baseline", "agent"), ("baseline", "human"), ("human", "agent"))
_TAIL = 6000
INFRASTRUCTURE = "infrastructure"
IMAGES_NEED_ENGINE = ("the task runs in container images (image:): set perf_engine=podman or "
                      "perf_engine=apptainer")
_PYTEST_COUNT = re.compile(r"(\d+) (passed|failed|errors?)\b")


class Incorrect(Exception):
    """The patched code's results or tests are wrong."""

    def __init__(self, message: str, outcome: Outcome = "wrong_results") -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome


class Rejected(Exception):
    """The patch breaks a rule of the benchmark."""

    def __init__(self, message: str, outcome: Outcome = "rejected") -> None:
        super().__init__(message)
        self.outcome: Outcome = outcome


def tail(text: str) -> str:
    return text[-_TAIL:]


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def ci(ratio: Ratio) -> list[float]:
    return [ratio.low, ratio.high]


def mean_stats(reference_ms: list[float], candidate_ms: list[float],
               speedups: list[float]) -> MeanStats:
    """GSO's summary of per-workload speedups (``gso.harness.grading.metrics.speedup``)."""
    logs = [math.log(s) for s in speedups]
    return MeanStats(am=statistics.fmean(reference_ms) / statistics.fmean(candidate_ms),
                     gm=math.exp(statistics.fmean(logs)),
                     gsd=math.exp(statistics.stdev(logs)) if len(logs) > 1 else None,
                     hm=statistics.harmonic_mean(speedups),
                     slowed=sum(s < 1 for s in speedups) / len(speedups))


@dataclass(frozen=True)
class MovedWork:
    """Whether a patch moved work out of the timed region, from the runs' CPU time."""

    extra_ms: float        # the agent's extra CPU before ``go`` (interpreter, import, setup)
    extra_low_ms: float    # ... the lower end of its interval
    saved_ms: float        # the CPU the agent saves inside the timed region
    limit_ms: float

    @property
    def moved(self) -> bool:
        return self.saved_ms > 0 and self.extra_low_ms > self.limit_ms


def moved_work(base: list[Run], agent: list[Run], settings: PerfSettings) -> MovedWork:
    """Paired by round (same seed): the agent's extra CPU time in the untimed phases and the
    CPU time it saves inside the timed region.  Work counts as moved only when the *lower*
    end of the extra's interval is above ``moved_work_fraction`` of the saving (and above
    ``moved_work_floor_ms``): CPU time, read by the judge, is not the wall time other load
    stretches, and an interval, not one reading, decides."""
    extra = [a.untimed_cpu_ms - b.untimed_cpu_ms for a, b in zip(agent, base, strict=True)]
    saved = [b.experiment_cpu_ms - a.experiment_cpu_ms for a, b in zip(agent, base, strict=True)]
    e, e_low, _, _ = mean_interval(extra, settings.confidence, settings.outlier_k)
    s, _, _, _ = mean_interval(saved, settings.confidence, settings.outlier_k)
    return MovedWork(e, e_low, s, max(settings.moved_work_fraction * s,
                                      settings.moved_work_floor_ms))


def test_counts(output: str) -> tuple[int, int]:
    """``(passed, failed + errors)`` from pytest's closing line."""
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    counts = {"passed": 0, "failed": 0, "errors": 0}
    for number, word in _PYTEST_COUNT.findall(lines[-1] if lines else ""):
        counts["errors" if word.startswith("error") else word] += int(number)
    return counts["passed"], counts["failed"] + counts["errors"]


class Check:
    """A check's shared machinery: the prepared releases, the workloads, the judge, the
    three versions; ``run`` checks a candidate (``audit`` uses the same pieces)."""

    def __init__(self, task: Task, config: Config, started: float) -> None:
        self.task, self.config, self.started = task, config, started
        self.payload = payload_of(task)
        self.settings = config.section(PerfSettings)
        self.where = releases.locate(self.payload, config, task_dir(task))
        self.scratch = Path.cwd()
        self.details = PerfDetails(package=self.payload.package,
                                   baseline_version=self.where.baseline_name,
                                   human_version=self.where.human_name,
                                   engine=self.settings.perf_engine)
        self.flags: list[str] = []
        self.findings: list[str] = []
        self.versions: dict[str, Version] = {}
        self.bench: Bench | None = None
        self.judge: Judge | None = None
        # GSO's main (a later release) is a fourth arm when the task names one.
        self.arms = (*ARMS, "main") if self.where.main_tree is not None else ARMS
        self.main_versus: dict[str, float] = {}   # workload -> agent vs main
        # In a task with images: the agent's changed files, over the baseline image's tree.
        self.overlay: tuple[tuple[Path, Path], ...] = ()

    def verdict(self, status: str, error: str, outcome: Outcome) -> dict[str, Any]:
        self.details.outcome = outcome
        return {"status": status, "error": tail(error), "flags": self.flags,
                "findings": self.findings, **self.details.model_dump(mode="json")}

    def flag(self, name: str, finding: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
        self.findings.append(f"{name}: {finding}")

    # -- the pieces -----------------------------------------------------------------------
    def start(self, agent_tree: Path | None) -> tuple[Bench, Judge]:
        """The workloads written, the judge sealed, the versions named."""
        broken = problems(self.task)
        if broken:
            more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
            raise TaskRefused(f"{broken[0]}{more}")
        bench = Bench.write(self.task, self.scratch / "bench")
        judge = Judge(self.scratch, [agent_tree] if agent_tree else [],
                      self.settings.run_timeout_s, self._launch(bench.folder))
        judge.seal()
        self.versions = {"baseline": self.version("baseline", self.where.baseline_tree),
                         "human": self.version("human", self.where.human_tree)}
        if agent_tree is not None:
            self.versions["agent"] = self.version("agent", agent_tree)
        if self.where.main_tree is not None:
            self.versions["main"] = self.version("main", self.where.main_tree)
        self.bench, self.judge = bench, judge
        return bench, judge

    def version(self, arm: str, tree: Path) -> Version:
        """An arm as the judge runs it: ``tree`` with the baseline's venv; or, in a task with
        images, the arm's image and its tree (the agent's: the baseline's image, its changed
        files over the image's tree)."""
        root = self.where.import_root
        images = self.payload.image
        if images is None:
            assert self.where.baseline_python is not None
            return Version(arm, self.where.baseline_python, tree / root)
        image = {"baseline": images.baseline, "agent": images.baseline,
                 "human": images.human, "main": images.main}[arm]
        return Version(arm, Path(self.payload.image_python),
                       Path(self.payload.image_tree) / root, image,
                       self.overlay if arm == "agent" else ())

    def _launch(self, bench: Path) -> Launch | None:
        """Where the runs start: None (here, the judge's children) or a container engine."""
        if self.settings.perf_engine == "local":
            if self.payload.image is not None:
                raise TaskRefused(IMAGES_NEED_ENGINE)
            return None
        return containers.ContainerLaunch(containers.engine(self.settings.perf_engine), bench,
                                          self.config.memory_limit_mb,
                                          self.config.max_processes)

    def run_arm(self, arm: str, workload: BenchWorkload, seed: int) -> Run:
        """One run; the baseline's or the human's failing is the task's fault."""
        assert self.judge is not None
        try:
            return self.judge.run(self.versions[arm], workload.path, seed, workload.params)
        except (RunFailed, Violation) as exc:
            line = exc.line if isinstance(exc, RunFailed) else str(exc)
            if arm != "agent":
                raise TaskRefused(f"the {arm} run of workload {workload.name} failed: "
                                  f"{line}") from None
            if workload.hidden:  # say what failed, not what the hidden inputs are
                what = line.split(":", 1)[0]
                if isinstance(exc, Violation):
                    raise Violation(f"the agent's run of {workload.label}: {what}") from None
                raise RunFailed(f"the agent's run of {workload.label} failed: {what}",
                                exc.timed_out) from None
            raise

    def tests(self, tree: Path, who: str) -> tuple[int | None, str, str]:
        """The package's own tests on ``tree``, the arm ``who``'s (whose tests are the
        baseline's: a patch may not touch them; in a task with images, in the arm's image and
        its tree): ``(exit code or None when out of time, summary line, output)``."""
        home = self.scratch / "runs" / f"tests-{who}"
        home.mkdir(parents=True)
        version = self.version(who, tree)
        if version.image is not None:
            tree = Path(self.payload.image_tree)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": str(version.root)}
        argv = [str(version.python), "-s", "-m", "pytest", "-q",
                "-p", "no:cacheprovider", "-o", "addopts=", *self.payload.tests]
        timeout_s = self.settings.test_timeout_s
        stdout = stderr = ""
        try:
            if self.settings.perf_engine == "local":
                if version.image is not None:
                    raise TaskRefused(IMAGES_NEED_ENGINE)
                try:
                    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True,
                                          text=True, timeout=timeout_s, start_new_session=True)
                except subprocess.TimeoutExpired:
                    code = None
                else:
                    code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            else:
                code, stdout = containers.run_tests(
                    containers.engine(self.settings.perf_engine), argv, env, tree, version,
                    home, timeout_s, self.config.memory_limit_mb, self.config.max_processes)
        finally:
            shutil.rmtree(home, ignore_errors=True)
        lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
        summary = lines[-1] if lines else f"exit {code}"
        return code, summary, stdout + stderr

    # -- a candidate ----------------------------------------------------------------------
    def run(self, patch: str, report: Reporter) -> dict[str, Any]:
        agent_tree = self.scratch / "agent"
        shutil.copytree(self.where.baseline_tree, agent_tree, symlinks=True)
        before = snapshot(agent_tree)
        applied = apply_patch(patch, agent_tree)
        self.details.patch_method = applied.method
        if applied.error:
            return self.verdict("compile_error", applied.error, "does_not_apply")
        after = snapshot(agent_tree)
        changed = [p for p in changed_files(before, after) if "__pycache__" not in p]
        self.details.patch_files = changed
        why = refusal(changed, after, self.where.package_path)
        if why:
            raise Rejected(f"the patch is refused: {why}", "refused")
        if self.payload.image is not None:
            gone = [rel for rel in changed if rel not in after]
            if gone:  # an image's file can be covered by a bind, not taken away
                raise Rejected(f"the patch is refused: it removes {gone[0]}; in a task with "
                               "container images a patch may change and add files, not "
                               "remove them", "refused")
            self.overlay = tuple((agent_tree / rel, Path(self.payload.image_tree) / rel)
                                 for rel in changed)
        self.static_check(agent_tree, changed)
        error = compile_changed(agent_tree, changed)
        if error:
            return self.verdict("compile_error", error, "does_not_compile")
        bench, judge = self.start(agent_tree)

        report.stage("device_wait")
        devicelock.acquire(self.config)
        report.stage("correctness")
        for workload in bench.items:
            for _ in range(self.settings.equivalence_seeds):
                seed = secrets.randbits(31)
                expected = self.run_arm("baseline", workload, seed).result
                human = self.run_arm("human", workload, seed).result
                why = workload.equivalent(expected, human)
                if why:
                    raise TaskRefused(f"the human patch's results differ from the baseline's on "
                                      f"workload {workload.name} ({why}): the workload or its "
                                      "check_equivalence must accept both")
                self._agrees(workload, expected, self.run_arm("agent", workload, seed).result,
                             "on fresh inputs")
        if self.settings.run_tests and self.payload.tests:
            code, summary, output = self.tests(agent_tree, "agent")
            if code is None:
                raise Incorrect(f"the package's tests took longer than "
                                f"{self.settings.test_timeout_s:g} s", "tests_failed")
            judge.verify("the package's tests")
            passed, failed = test_counts(summary)
            self.details.tests, self.details.tests_passed = summary, passed
            self.details.tests_failed = failed
            self.details.test_pass_rate = passed / (passed + failed) if passed + failed else None
            if code != 0:
                raise Incorrect(f"the package's tests fail on the patched code ({summary}):\n"
                                f"{tail(output)}", "tests_failed")

        report.stage("timing")
        outcome: Outcome = "empty_patch" if applied.method == "empty" else "timed"
        return {**self._timing(report), "flags": self.flags, "findings": self.findings,
                **self.details.model_copy(update={"outcome": outcome}).model_dump(mode="json")}

    def _agrees(self, workload: BenchWorkload, expected: Any, got: Any, when: str) -> None:
        why = workload.equivalent(expected, got)
        if why:
            detail = "" if workload.hidden else f" ({why})"
            raise Incorrect(f"{workload.label} {when}: the results are not equivalent to the "
                            f"baseline's{detail}")

    def static_check(self, tree: Path, changed: list[str]) -> None:
        """The added code of the changed modules: refused words raise, flagged ones flag."""
        words = {w.name for w in self.payload.workloads}
        for rel in changed:
            if not rel.endswith(".py") or not (tree / rel).is_file():
                continue
            old = self.where.baseline_tree / rel
            found = check_module(rel, old.read_text() if old.is_file() else None,
                                 (tree / rel).read_text(errors="replace"), words)
            if found.refused:
                raise Rejected("the patch is refused: " + "; ".join(found.refused), "refused")
            for flag, finding in zip(found.flags, found.findings, strict=True):
                self.flag(flag, finding.split(": ", 1)[1])

    # -- timing ---------------------------------------------------------------------------
    def _timing(self, report: Reporter) -> dict[str, Any]:
        assert self.bench is not None
        bench, settings, details = self.bench, self.settings, self.details
        rule = settings.stop_rule()
        left = self.config.timeout_s * 0.8 - (time.monotonic() - self.started)
        rule = StopRule(**{**rule.__dict__, "max_s": max(1.0, min(rule.max_s, left))})
        scored = bench.hidden or bench.visible
        details.scored_on = "hidden" if bench.hidden else "visible"
        arms = self.arms
        runs: dict[tuple[str, str], list[Run]] = {(w.name, a): [] for w in bench.items
                                                  for a in arms}
        human_differs: set[str] = set()
        main_differs: set[str] = set()
        progress = _Progress(self.task.id, report, rule, settings.progress_s)
        machine_before = machine_state()
        details.clock = settings.clock

        def timed(run: Run) -> float:
            # CPU time of a run that got under a millisecond of it rounds to the wall's.
            return max(run.experiment_cpu_ms, 1e-3) if settings.clock == "cpu" else \
                run.experiment_ms

        def last(arm: str, chosen: list[BenchWorkload],
                 clock: Callable[[Run], float] = timed) -> float:
            return geomean([clock(runs[(w.name, arm)][-1]) for w in chosen])

        def run_round(index: int) -> dict[str, float]:
            seed = secrets.randbits(31)
            for workload in bench.items:
                got = {}
                for arm in rotation(arms, index):
                    run = self.run_arm(arm, workload, seed)
                    runs[(workload.name, arm)].append(run)
                    got[arm] = run.result
                self._agrees(workload, got["baseline"], got["agent"],
                             f"in timing round {index + 1}")
                if workload.equivalent(got["baseline"], got["human"]):
                    human_differs.add(workload.name)
                if "main" in got and workload.equivalent(got["baseline"], got["main"]):
                    main_differs.add(workload.name)
            times = {arm: last(arm, scored) for arm in arms}
            times.update({f"{arm}@wall": last(arm, scored, lambda r: r.experiment_ms)
                          for arm in ("baseline", "agent")})
            if bench.hidden:
                times.update({f"{arm}@visible": last(arm, bench.visible) for arm in arms})
            progress.round(index + 1, times)
            return times

        rounds = run_rounds(run_round, PAIRS, rule)
        progress.done(rounds.stop_reason)
        details.rounds, details.stop_reason = len(rounds.times), rounds.stop_reason
        speed, human, versus = (rounds.ratio(*pair, rule) for pair in PAIRS)
        details.human_speedup, details.human_speedup_ci = human.estimate, ci(human)
        details.agent_vs_human, details.agent_vs_human_ci = versus.estimate, ci(versus)
        details.human_significant = human.significant_faster
        details.calibrated = human.significant_faster and not human_differs
        details.verdict = ("faster" if speed.significant_faster else
                           "slower" if speed.significant_slower else "inconclusive")
        if human_differs:
            self.flag("human_differs", "the human patch's results differ from the baseline's "
                      f"on {', '.join(sorted(human_differs))}: the task needs fixing, it is "
                      "left uncalibrated")
        elif not details.calibrated:
            self.flag("uncalibrated", f"the human patch is not significantly faster here "
                      f"({human.estimate:.3f}x, interval {human.low:.3f}-{human.high:.3f})")
        wall = rounds.ratio("baseline@wall", "agent@wall", rule)
        details.wall_speedup, details.wall_speedup_ci = wall.estimate, ci(wall)
        if settings.clock == "cpu" and speed.low > wall.high * 1.25:
            self.flag("clocks_disagree", f"its CPU time says {speed.estimate:.2f}x, the wall "
                      f"clock {wall.estimate:.2f}x (interval {wall.low:.2f}-{wall.high:.2f}): "
                      "work the run's CPU clock does not see (another process?)")
        if bench.hidden:
            self._overfitting(rounds.times, rule)
        medians = self._workloads(runs, rule, len(rounds.times), timed)
        self._scores(speed)
        if "main" in arms:
            main = rounds.ratio("baseline", "main", rule)
            details.main_speedup = main.estimate
            if main_differs:
                self.flag("main_differs", "the main release's results differ from the "
                          f"baseline's on {', '.join(sorted(main_differs))}: no opt_main")
            else:
                self._main_scores(medians)
        converged = rounds.stop_reason == "converged"
        noise = assess(
            machine_before, machine_state(), converged=converged,
            why=f"the intervals did not reach +-{rule.target_rel_ci:.0%} within "
                f"{len(rounds.times)} rounds ({rounds.stop_reason})",
            busy={arm: (sum(r.experiment_cpu_ms for w in bench.items for r in runs[(w.name, arm)])
                        / 1e3,
                        sum(r.experiment_ms for w in bench.items for r in runs[(w.name, arm)])
                        / 1e3) for arm in arms},
            samples={arm: rounds.arm(arm) for arm in arms}, threads=1)
        return {"status": "ok", "correct": True, "speedup": speed.estimate,
                "speedup_ci": ci(speed), "significant": speed.significant_faster,
                "noisy": not converged, "noise": noise.model_dump(mode="json"),
                "runtime_ms": geomean([medians[w.name]["agent"] for w in scored]),
                "baseline_ms": geomean([medians[w.name]["baseline"] for w in scored]),
                "correctness_trials": len(bench.items) * settings.equivalence_seeds}

    def _overfitting(self, times: list[dict[str, float]], rule: StopRule) -> None:
        """The agent's gain over the human's on the visible workloads against the same on
        the hidden ones, paired by round: a patch fitted to what the agent saw gains there
        only.  The human patch is the yardstick, so a gain that honestly differs with the
        inputs' sizes (the human's differs the same way) is no sign."""
        details = self.details
        visible = paired_ratio([t["baseline@visible"] for t in times],
                               [t["agent@visible"] for t in times], rule.confidence,
                               rule.outlier_k, positions=places(len(times), len(self.arms)))
        hidden = paired_ratio([t["baseline"] for t in times], [t["agent"] for t in times],
                              rule.confidence, rule.outlier_k,
                              positions=places(len(times), len(self.arms)))
        details.visible_speedup, details.visible_speedup_ci = visible.estimate, ci(visible)
        details.hidden_speedup, details.hidden_speedup_ci = hidden.estimate, ci(hidden)
        logs = [math.log(t["human@visible"] / t["agent@visible"])
                - math.log(t["human"] / t["agent"]) for t in times]
        overfit = ratio_from_logs(logs, rule.confidence, rule.outlier_k,
                                  positions=places(len(times), len(self.arms)))
        details.overfit, details.overfit_ci = overfit.estimate, ci(overfit)
        if overfit.estimate > self.settings.overfit_ratio and overfit.significant_faster:
            self.flag("overfits_workload", f"against the human patch it gains "
                      f"{overfit.estimate:.2f}x more on the visible workloads than on the "
                      f"hidden ones (interval {overfit.low:.2f}-{overfit.high:.2f}): the "
                      "score is the hidden workloads'")

    def _workloads(self, runs: dict[tuple[str, str], list[Run]], rule: StopRule,
                   rounds: int, timed: Callable[[Run], float]) -> dict[str, dict[str, float]]:
        """Per workload: medians, the three ratios, the work-moved and other-CPU checks."""
        assert self.bench is not None
        medians: dict[str, dict[str, float]] = {}
        positions = places(rounds, len(self.arms))
        for workload in self.bench.items:
            name = workload.name
            times = {a: [timed(r) for r in runs[(name, a)]] for a in self.arms}
            medians[name] = {a: statistics.median(t) for a, t in times.items()}
            s, h, v = (paired_ratio(times[p[0]], times[p[1]], rule.confidence, rule.outlier_k,
                                    positions=positions) for p in PAIRS)
            if "main" in times:
                self.main_versus[name] = paired_ratio(
                    times["main"], times["agent"], rule.confidence, rule.outlier_k,
                    positions=positions).estimate
            self.details.workloads.append(WorkloadResult(
                name=name, baseline_ms=medians[name]["baseline"],
                human_ms=medians[name]["human"], agent_ms=medians[name]["agent"],
                speedup=s.estimate, speedup_ci=ci(s), human_speedup=h.estimate,
                human_speedup_ci=ci(h), agent_vs_human=v.estimate, agent_vs_human_ci=ci(v),
                significant=s.significant_faster, hidden=workload.hidden,
                mann_whitney_p=mann_whitney_faster(times["baseline"], times["agent"])))
            self._parallel(runs, workload)
            if s.significant_faster:  # a claimed gain: it must not be hidden work
                moved = moved_work(runs[(name, "baseline")], runs[(name, "agent")],
                                   self.settings)
                self.details.moved_out_ms = max(self.details.moved_out_ms or 0.0,
                                                round(moved.extra_ms, 3))
                if moved.moved:
                    raise Rejected(
                        f"work moved out of the timed region on {workload.label}: the patch "
                        f"saves {moved.saved_ms:.1f} ms of CPU inside it, and its import and "
                        f"setup take {moved.extra_ms:.1f} ms more CPU (at least "
                        f"{moved.extra_low_ms:.1f} ms; the limit is {moved.limit_ms:.1f} ms)")
        return medians

    def _scores(self, speed: Ratio) -> None:
        """GSO's opt_base and opt_commit, and its mean speedups, over the scored workloads."""
        details = self.details
        scored = [w for w in details.workloads if w.hidden == (details.scored_on == "hidden")]
        pairs = {"patch_base": ("baseline_ms", "agent_ms", "speedup"),
                 "commit_base": ("baseline_ms", "human_ms", "human_speedup"),
                 "patch_commit": ("human_ms", "agent_ms", "agent_vs_human")}
        details.gso = {key: mean_stats([getattr(w, ref) for w in scored],
                                       [getattr(w, cand) for w in scored],
                                       [getattr(w, ratio) for w in scored])
                       for key, (ref, cand, ratio) in pairs.items()}
        thresholds = self.payload.thresholds
        details.opt_base = (round(details.gso["patch_base"].gm, 1) >= thresholds.opt_base
                            and speed.significant_faster)
        details.opt_commit = details.opt_base and \
            details.gso["patch_commit"].hm > thresholds.opt_commit

    def _main_scores(self, medians: dict[str, dict[str, float]]) -> None:
        """GSO's opt_main: opt_base, and the harmonic mean of agent-vs-main speedups above
        ``thresholds.opt_commit`` (GSO uses one threshold for both)."""
        details = self.details
        scored = [w.name for w in details.workloads
                  if w.hidden == (details.scored_on == "hidden")]
        stats = mean_stats([medians[n]["main"] for n in scored],
                           [medians[n]["agent"] for n in scored],
                           [self.main_versus[n] for n in scored])
        details.gso = {**details.gso, "patch_main": stats}
        details.opt_main = details.opt_base and stats.hm > self.payload.thresholds.opt_commit

    def _parallel(self, runs: dict[tuple[str, str], list[Run]], workload: BenchWorkload) -> None:
        """A run that used more CPU time than wall time ran work on other CPUs (a thread or
        a process it waited for): the pure-Python work of these tasks has no business there,
        and it would hide work from the judge's clock."""
        def busy(arm: str) -> float:
            return statistics.median(r.cpu_ms / r.lifetime_ms for r in runs[(workload.name, arm)])

        agent, base = busy("agent"), busy("baseline")
        if agent > max(1.25, base + 0.25):
            raise Rejected(f"work moved to other CPUs on {workload.label}: its runs used "
                           f"{agent:.2f} s of CPU per second of wall time (the baseline's "
                           f"{base:.2f}): another thread or process")


class _Progress:
    """A line now and then while the rounds go on (``perf.progress_s``): a 60-90 s verdict
    does not run silently, on a terminal or in a batch job's log."""

    def __init__(self, task: str, report: Reporter, rule: StopRule, every_s: float) -> None:
        self.task, self.report, self.rule, self.every_s = task, report, rule, every_s
        self.times: list[dict[str, float]] = []
        self.last = time.monotonic()

    def round(self, done: int, times: dict[str, float]) -> None:
        self.times.append(times)
        if self.every_s <= 0 or time.monotonic() - self.last < self.every_s or done < 3:
            return
        self.last = time.monotonic()
        self.report.progress(self._line(f"round {done} (at most {self.rule.max_rounds})"))

    def done(self, reason: str) -> None:
        if self.every_s > 0 and len(self.times) >= 3:
            self.report.progress(self._line(f"{len(self.times)} rounds, {reason}"))

    def _line(self, where: str) -> str:
        parts = []
        for label, (ref, cand) in zip(("speedup", "human", "agent/human"), PAIRS, strict=True):
            r = paired_ratio([t[ref] for t in self.times], [t[cand] for t in self.times],
                             self.rule.confidence, self.rule.outlier_k, resamples=500)
            parts.append(f"{label} {r.estimate:.2f} [{r.low:.2f}, {r.high:.2f}]")
        return (f"{self.task}: timing {where}: {', '.join(parts)} "
                f"(target +-{self.rule.target_rel_ci:.0%})")


def compile_changed(tree: Path, changed: list[str]) -> str | None:
    """Byte-compile the changed modules (as the releases' trees are); the first syntax
    error, if any."""
    import py_compile

    for rel in changed:
        path = tree / rel
        if path.suffix == ".py" and path.is_file():
            try:
                py_compile.compile(str(path), doraise=True)
            except py_compile.PyCompileError as exc:
                return f"{rel} does not compile: {exc.msg.strip().splitlines()[-1]}"
    return None
