"""The ``perf`` task kind: a real performance improvement of a real library.

A task names a package, the release before an improvement (baseline), the release with it
(human, or a patch), GSO-shaped workloads and the package's own tests.  A candidate is a
unified diff against the baseline's source.  The check (in kbtool's isolated process):

1. the patch is applied to a copy of the baseline tree by a ladder (``patching``); what it
   changed is read from the tree: only the package's source, never tests, workloads or
   build files; its added code is read for clocks, frames, processes, files and the
   benchmark's names (``static_checks``);
2. correctness: the workloads on fresh inputs (seeds drawn from the OS, never shown) give
   the baseline's results (checked in the judge, on JSON, by the workload's own
   ``check_equivalence``), and the package's tests pass on the patched code;
3. timing: baseline, human and agent interleaved, each run a fresh process timed by the
   judge (``judge``), round after round until each ratio's interval is tight or a cap is
   hit (``kbtool.timing.compare``); every timed agent and human result is checked too;
4. calibration: the human release must come out significantly faster than the baseline in
   this same measurement, else the result says ``calibrated: false`` and reports leave it
   out of the scores.

The speedup is measured here, paired with its baseline, so the kind names no core baselines:
its check reports ``speedup``, ``runtime_ms`` and ``baseline_ms`` itself.
"""

from __future__ import annotations

import importlib.resources
import math
import secrets
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from kbtool.config import Config
from kbtool.errors import UsageError
from kbtool.evaluation.result import EvalResult
from kbtool.report.sections import KindReport, RunView
from kbtool.sandbox import devicelock
from kbtool.sandbox.isolation import Reporter
from kbtool.task.kind import TaskKind
from kbtool.task.model import Task
from kbtool.timing.base import Timer
from kbtool.timing.compare import (
    Ratio,
    StopRule,
    mann_whitney_faster,
    paired_ratio,
    places,
    rotation,
    run_rounds,
)
from kbtool_plugins.perf import containers, releases
from kbtool_plugins.perf.containers import EngineFailed
from kbtool_plugins.perf.judge import (
    Judge,
    Launch,
    RunFailed,
    Version,
    Violation,
    load_workload,
)
from kbtool_plugins.perf.patching import apply_patch, changed_files, refusal, snapshot
from kbtool_plugins.perf.settings import (
    PerfDetails,
    PerfPayload,
    PerfSettings,
    WorkloadResult,
)
from kbtool_plugins.perf.static_checks import check_module

TEMPLATES = Path(str(importlib.resources.files("kbtool_templates"))) / "perf"
ARMS = ("baseline", "human", "agent")
# (reference, candidate): speedup, human speedup, agent vs human.
PAIRS = (("baseline", "agent"), ("baseline", "human"), ("human", "agent"))
_TAIL = 6000
INFRASTRUCTURE = "infrastructure"


class Incorrect(Exception):
    """The patched code's results or tests are wrong."""


class Rejected(Exception):
    """The patch breaks a rule of the benchmark."""


def payload_of(task: Task) -> PerfPayload:
    return PerfPayload.model_validate(task.payload)


def task_dir(task: Task) -> Path | None:
    return task.path.parent if task.path is not None else None


def workload_sources(task: Task) -> dict[str, str]:
    """Each workload's code, by name (inline in a packed task, else from its file)."""
    folder = task_dir(task)
    found = {}
    for workload in payload_of(task).workloads:
        if workload.source is not None:
            found[workload.name] = workload.source
        else:
            assert folder is not None and workload.file is not None
            found[workload.name] = (folder / workload.file).read_text()
    return found


def _ci(ratio: Ratio) -> list[float]:
    return [ratio.low, ratio.high]


def _geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def _tail(text: str) -> str:
    return text[-_TAIL:]


class PerfKind(TaskKind):
    name = "perf"
    description = "a real library made faster by a patch, timed against its release and " \
                  "the human improvement"
    payload_model = PerfPayload
    settings_model = PerfSettings
    details_model = PerfDetails
    baselines = ()  # timed inside the check, interleaved with the candidate
    candidate_suffix = ".diff"
    candidate_language = "diff"
    templates = TEMPLATES
    # The ratios' statistics, imported by kbtool.timing.compare where they are used.
    preload = ("scipy.stats",)

    # -- parent side ----------------------------------------------------------------------
    def prepare(self, task: Task, config: Config) -> None:
        engine = config.section(PerfSettings).perf_engine
        why = None if engine == "local" else containers.unavailable(engine)
        if why:  # refused now, in one line, not as a failed check
            raise UsageError(why)
        releases.prepare(payload_of(task), config, task_dir(task))

    def pack(self, task: Task) -> Task:
        payload = payload_of(task)
        sources = workload_sources(task)
        workloads = [{"name": w.name, "source": sources[w.name]} for w in payload.workloads]
        patch = releases.human_patch_text(payload, task_dir(task))
        update: dict[str, Any] = {"workloads": workloads, "human_patch_file": None}
        if patch is not None:
            update["human_patch"] = patch
        packed = PerfPayload.model_validate({**payload.model_dump(), **update})
        return task.model_copy(update={
            "path": None, "payload": packed.model_dump(mode="json", exclude_defaults=True)})

    def describe(self, task: Task) -> str:
        payload = payload_of(task)
        human = payload.human or "a patch"
        parts = [f"{payload.package} {payload.baseline} -> {human}: {payload.description}".rstrip()]
        for name, code in workload_sources(task).items():
            parts.append(f"--- workload {name} ---\n{code.rstrip()}")
        return "\n\n".join(parts) + "\n"

    def fields(self, task: Task) -> dict[str, Any]:
        data = payload_of(task).model_dump(mode="json")
        data["workloads"] = [w["name"] for w in data["workloads"]]
        data.pop("human_patch", None)  # the patch's text: `inspect` reports it
        return data

    def labels(self, task: Task) -> dict[str, str]:
        payload = payload_of(task)
        return {"package": payload.package,
                "pair": f"{payload.baseline} -> {payload.human or 'patch'}",
                "negative_control": str(payload.negative_control).lower()}

    def prompt_context(self, task: Task, config: Config) -> dict[str, str]:
        payload = payload_of(task)
        _, tree, _ = releases.fetch_tree(config, payload, payload.baseline)
        files = []
        for rel in payload.prompt_files:
            path = tree / rel
            text = path.read_text() if path.is_file() else "(not in this release)"
            files.append(f"--- {rel} ---\n```python\n{text.rstrip()}\n```")
        _, package = releases.package_dir(tree, payload.module)
        workloads = "\n\n".join(f"```python\n{code.rstrip()}\n```"
                                for code in workload_sources(task).values())
        return {"reference": self.describe(task), "package": payload.package,
                "module": payload.module, "baseline": payload.baseline,
                "package_path": package, "source": "\n\n".join(files) or "(none shown)",
                "workloads": workloads}

    def null_candidate(self, task: Task) -> str | None:
        return ""  # the empty patch: the baseline itself

    def feedback(self, result: EvalResult, config: Config) -> str:
        tail = (result.error or "")[-8000:]
        status = result.status.value
        if status == "ok":
            return (f"It is correct; speedup {result.speedup or 0:.3f}x over the baseline "
                    f"(interval {result.speedup_ci}), significant: {result.significant}.")
        if status == "compile_error":
            return f"The patch could not be applied or does not compile:\n{tail}"
        if status == "incorrect":
            return f"The patched code gives wrong results or fails the package's tests:\n{tail}"
        return super().feedback(result, config)

    def report(self, view: RunView) -> KindReport | None:
        from kbtool_plugins.perf.report import perf_report

        return perf_report(view)

    # -- child side -----------------------------------------------------------------------
    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        payload = payload_of(task)
        where = releases.locate(payload, config, task_dir(task))
        patch = where.human_patch.read_text()
        return {"human_patch": patch,
                "human_patch_files": sorted(releases_patch_files(patch)),
                "package_path": where.package_path, "package": payload.package,
                "baseline_version": payload.baseline,
                "human_version": payload.human or "patch"}

    def check(self, task: Task, candidate: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        started = time.monotonic()
        report.stage("load")
        check = _Check(task, config, started)
        try:
            return check.run(candidate.read_text(), report)
        except Rejected as exc:
            return check.verdict("rejected", str(exc))
        except Violation as exc:
            return check.verdict("rejected", str(exc))
        except Incorrect as exc:
            return check.verdict("incorrect", str(exc))
        except RunFailed as exc:
            return check.verdict("timeout" if exc.timed_out else "runtime_error", str(exc))
        except EngineFailed as exc:  # the container engine's failure, not the candidate's
            check.flag(INFRASTRUCTURE, str(exc).splitlines()[0])
            return check.verdict("runtime_error", str(exc))


def releases_patch_files(patch: str) -> set[str]:
    from kbtool_plugins.perf.patching import patch_paths

    return {p[2:] if p.startswith(("a/", "b/")) else p for p in patch_paths(patch)}


class _Check:
    """One candidate's check, in the isolated process."""

    def __init__(self, task: Task, config: Config, started: float) -> None:
        self.task, self.config, self.started = task, config, started
        self.payload = payload_of(task)
        self.settings = config.section(PerfSettings)
        self.where = releases.locate(self.payload, config, task_dir(task))
        self.scratch = Path.cwd()
        self.details = PerfDetails(package=self.payload.package,
                                   baseline_version=self.payload.baseline,
                                   human_version=self.payload.human or "patch",
                                   engine=self.settings.perf_engine)
        self.flags: list[str] = []
        self.findings: list[str] = []

    def verdict(self, status: str, error: str) -> dict[str, Any]:
        return {"status": status, "error": _tail(error), "flags": self.flags,
                "findings": self.findings, **self.details.model_dump(mode="json")}

    def flag(self, name: str, finding: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
        self.findings.append(f"{name}: {finding}")

    # -- the steps -------------------------------------------------------------------------
    def run(self, patch: str, report: Reporter) -> dict[str, Any]:
        agent_tree = self.scratch / "agent"
        shutil.copytree(self.where.baseline_tree, agent_tree, symlinks=True)
        before = snapshot(agent_tree)
        applied = apply_patch(patch, agent_tree)
        self.details.patch_method = applied.method
        if applied.error:
            return self.verdict("compile_error", applied.error)
        after = snapshot(agent_tree)
        changed = [p for p in changed_files(before, after) if "__pycache__" not in p]
        self.details.patch_files = changed
        why = refusal(changed, after, self.where.package_path)
        if why:
            raise Rejected(f"the patch is refused: {why}")
        self._static(agent_tree, changed)
        error = _compile(agent_tree, changed)
        if error:
            return self.verdict("compile_error", error)
        bench = self.scratch / "bench"
        bench.mkdir()
        workloads = {}
        for name, code in workload_sources(self.task).items():
            (bench / f"{name}.py").write_text(code)
            workloads[name] = bench / f"{name}.py"
        checks = {name: load_workload(path) for name, path in workloads.items()}
        judge = Judge(self.scratch, [agent_tree], self.settings.run_timeout_s, self._launch(bench))
        judge.seal()
        root = self.where.import_root
        versions = {
            "baseline": Version("baseline", self.where.baseline_python,
                                self.where.baseline_tree / root),
            "human": Version("human", self.where.human_python, self.where.human_tree / root),
            "agent": Version("agent", self.where.baseline_python, agent_tree / root)}

        report.stage("device_wait")
        devicelock.acquire(self.config)
        report.stage("correctness")
        for name, path in workloads.items():
            for _ in range(self.settings.equivalence_seeds):
                seed = secrets.randbits(31)
                expected = judge.run(versions["baseline"], path, seed).result
                got = judge.run(versions["agent"], path, seed).result
                _equivalent(checks[name], expected, got, f"workload {name} on fresh inputs")
        if self.settings.run_tests and self.payload.tests:
            self.details.tests = self._tests(agent_tree, judge)

        report.stage("timing")
        return self._timing(judge, versions, workloads, checks)

    def _launch(self, bench: Path) -> Launch | None:
        """Where the runs start: None (here, the judge's children) or a container engine."""
        if self.settings.perf_engine == "local":
            return None
        return containers.ContainerLaunch(containers.engine(self.settings.perf_engine), bench,
                                          self.config.memory_limit_mb,
                                          self.config.max_processes)

    def _static(self, tree: Path, changed: list[str]) -> None:
        words = {w.name for w in self.payload.workloads}
        for rel in changed:
            if not rel.endswith(".py") or not (tree / rel).is_file():
                continue
            old = self.where.baseline_tree / rel
            found = check_module(rel, old.read_text() if old.is_file() else None,
                                 (tree / rel).read_text(errors="replace"), words)
            if found.refused:
                raise Rejected("the patch is refused: " + "; ".join(found.refused))
            for flag, finding in zip(found.flags, found.findings, strict=True):
                self.flag(flag, finding.split(": ", 1)[1])

    def _tests(self, tree: Path, judge: Judge) -> str:
        """The package's own tests on the patched code (in the patched tree, whose tests are
        the baseline's: a patch may not touch them)."""
        home = self.scratch / "runs" / "tests"
        home.mkdir(parents=True)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
               "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": str(tree / self.where.import_root)}
        argv = [str(self.where.baseline_python), "-s", "-m", "pytest", "-q", "-x",
                "-p", "no:cacheprovider", "-o", "addopts=", *self.payload.tests]
        timeout_s = self.settings.test_timeout_s
        try:
            if self.settings.perf_engine == "local":
                try:
                    proc = subprocess.run(argv, cwd=tree, env=env, capture_output=True,
                                          text=True, timeout=timeout_s, start_new_session=True)
                except subprocess.TimeoutExpired:
                    code = None
                else:
                    code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
            else:
                code, stdout = containers.run_tests(
                    containers.engine(self.settings.perf_engine), argv, env, tree,
                    self.where.baseline_python, home, timeout_s, self.config.memory_limit_mb,
                    self.config.max_processes)
                stderr = ""
        finally:
            shutil.rmtree(home, ignore_errors=True)
        if code is None:
            raise Incorrect(f"the package's tests took longer than {timeout_s:g} s")
        judge.verify("the package's tests")
        lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
        summary = lines[-1] if lines else f"exit {code}"
        if code != 0:
            raise Incorrect(f"the package's tests fail on the patched code ({summary}):\n"
                            f"{_tail(stdout + stderr)}")
        return summary

    def _timing(self, judge: Judge, versions: dict[str, Version], workloads: dict[str, Path],
                checks: dict[str, Any]) -> dict[str, Any]:
        rule = self.settings.stop_rule()
        left = self.config.timeout_s * 0.8 - (time.monotonic() - self.started)
        rule = StopRule(**{**rule.__dict__, "max_s": max(1.0, min(rule.max_s, left))})
        runs: dict[tuple[str, str], list[Any]] = {(w, a): [] for w in workloads for a in ARMS}
        human_differs: set[str] = set()

        def run_round(index: int) -> dict[str, float]:
            seed = secrets.randbits(31)
            per_arm: dict[str, list[float]] = {a: [] for a in ARMS}
            for name, path in workloads.items():
                got = {}
                for arm in rotation(ARMS, index):
                    run = judge.run(versions[arm], path, seed)
                    runs[(name, arm)].append(run)
                    per_arm[arm].append(run.experiment_ms)
                    got[arm] = run.result
                _equivalent(checks[name], got["baseline"], got["agent"],
                            f"workload {name} in timing round {index + 1}")
                try:
                    _equivalent(checks[name], got["baseline"], got["human"], "")
                except Incorrect:
                    human_differs.add(name)
            return {arm: _geomean(times) for arm, times in per_arm.items()}

        rounds = run_rounds(run_round, PAIRS, rule)
        details = self.details
        details.rounds, details.stop_reason = len(rounds.times), rounds.stop_reason
        overall = {pair: rounds.ratio(*pair, rule) for pair in PAIRS}
        speed, human, versus = (overall[p] for p in PAIRS)
        details.human_speedup = human.estimate
        details.human_speedup_ci = _ci(human)
        details.agent_vs_human, details.agent_vs_human_ci = versus.estimate, _ci(versus)
        details.human_significant = human.significant_faster
        details.calibrated = human.significant_faster and not human_differs
        if human_differs:
            self.flag("human_differs", "the human release's results differ from the "
                      f"baseline's on {', '.join(sorted(human_differs))}: the task needs "
                      "fixing, it is left uncalibrated")
        elif not details.calibrated:
            self.flag("uncalibrated", f"the human release is not significantly faster here "
                      f"({human.estimate:.3f}x, interval {human.low:.3f}-{human.high:.3f})")
        if rounds.stop_reason != "converged":
            self.flag("noisy", f"the intervals did not reach +-{rule.target_rel_ci:.0%} within "
                      f"{len(rounds.times)} rounds ({rounds.stop_reason})")
        medians: dict[str, dict[str, float]] = {}
        positions = places(len(rounds.times), len(ARMS))
        for name in workloads:
            times = {a: [r.experiment_ms for r in runs[(name, a)]] for a in ARMS}
            medians[name] = {a: statistics.median(t) for a, t in times.items()}
            ratios = {p: paired_ratio(times[p[0]], times[p[1]], rule.confidence,
                                      rule.outlier_k, positions=positions)
                      for p in PAIRS}
            s, h, v = (ratios[p] for p in PAIRS)
            details.workloads.append(WorkloadResult(
                name=name, baseline_ms=medians[name]["baseline"],
                human_ms=medians[name]["human"], agent_ms=medians[name]["agent"],
                speedup=s.estimate, speedup_ci=_ci(s), human_speedup=h.estimate,
                human_speedup_ci=_ci(h), agent_vs_human=v.estimate,
                agent_vs_human_ci=_ci(v), significant=s.significant_faster,
                mann_whitney_p=mann_whitney_faster(times["baseline"], times["agent"])))
            self._parallel(runs, name)
            if s.significant_faster:  # a claimed gain: it must not be hidden work
                moved = self._moved_work(runs, name)
                details.moved_out_ms = max(details.moved_out_ms or 0.0, round(moved, 3))
        thresholds = self.payload.thresholds
        per_workload = [w.speedup for w in details.workloads]
        details.opt_base = (round(_geomean(per_workload), 1) >= thresholds.opt_base
                            and speed.significant_faster)
        details.opt_commit = details.opt_base and statistics.harmonic_mean(
            [w.agent_vs_human for w in details.workloads]) > thresholds.opt_commit
        return {"status": "ok", "correct": True, "speedup": speed.estimate,
                "speedup_ci": _ci(speed), "significant": speed.significant_faster,
                "runtime_ms": _geomean([m["agent"] for m in medians.values()]),
                "baseline_ms": _geomean([m["baseline"] for m in medians.values()]),
                "correctness_trials": len(workloads) * self.settings.equivalence_seeds,
                "flags": self.flags, "findings": self.findings,
                **details.model_dump(mode="json")}

    def _moved_work(self, runs: dict[tuple[str, str], list[Any]], name: str) -> float:
        """Time a patch saves inside the timed region must not reappear in the untimed
        phases (import, setup) of the same process; the fastest runs of each are compared
        (the least disturbed by other load).  Returns the agent's extra untimed ms."""
        base, agent = runs[(name, "baseline")], runs[(name, "agent")]
        saved = min(r.experiment_ms for r in base) - min(r.experiment_ms for r in agent)
        extra = min(r.untimed_ms for r in agent) - min(r.untimed_ms for r in base)
        limit = max(self.settings.moved_work_fraction * saved, self.settings.moved_work_floor_ms)
        if saved > 0 and extra > limit:
            self.details.moved_out_ms = round(extra, 3)
            raise Rejected(
                f"work moved out of the timed region on workload {name}: the patch saves "
                f"{saved:.1f} ms inside it but its import and setup take {extra:.1f} ms longer")
        return extra

    def _parallel(self, runs: dict[tuple[str, str], list[Any]], name: str) -> None:
        """A run that used more CPU time than wall time ran work on other CPUs (a thread or
        a process it waited for): the pure-Python work of these tasks has no business there,
        and it would hide work from the judge's clock."""
        def busy(arm: str) -> float:
            return statistics.median(r.cpu_ms / r.lifetime_ms for r in runs[(name, arm)])

        agent, base = busy("agent"), busy("baseline")
        if agent > max(1.25, base + 0.25):
            raise Rejected(f"work moved to other CPUs on workload {name}: its runs used "
                           f"{agent:.2f} s of CPU per second of wall time (the baseline's "
                           f"{base:.2f}): another thread or process")


def _equivalent(module: Any, expected: Any, got: Any, when: str) -> None:
    try:
        module.check_equivalence(expected, got)
    except Exception as exc:
        raise Incorrect(f"{when}: the results are not equivalent to the baseline's "
                        f"({type(exc).__name__}: {str(exc)[:500]})") from None


def _compile(tree: Path, changed: list[str]) -> str | None:
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
