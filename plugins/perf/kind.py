"""The ``perf`` task kind: a real performance improvement of a real library.

A task names a package, the release before an improvement (baseline), the release with it
(human, or a patch), GSO-shaped workloads (visible ones, shown to the agent, and hidden
ones, never shown: ``workloads``) and the package's own tests.  A candidate is a unified
diff against the baseline's source.  The check (``check``, in kbtool's isolated process)
applies it, checks its results and the package's tests, and times baseline, human patch and
agent interleaved, with intervals; ``audit`` (``kbtool tasks check``) checks the task itself.

The speedup is measured here, paired with its baseline, so the kind names no core baselines:
its check reports ``speedup``, ``runtime_ms`` and ``baseline_ms`` itself.
"""

from __future__ import annotations

import importlib.resources
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.errors import UsageError
from kbtool.task.kind import TaskKind
from kbtool_plugins.perf import containers, gitrepo, releases
from kbtool_plugins.perf.containers import EngineFailed
from kbtool_plugins.perf.patching import patch_paths
from kbtool_plugins.perf.settings import PerfDetails, PerfPayload, PerfSettings
from kbtool_plugins.perf.workloads import (
    payload_of,
    problems,
    source_of,
    task_dir,
    workload_sources,
)

if TYPE_CHECKING:  # names for annotations only: listing tasks does not import them
    from kbtool.config import Config
    from kbtool.evaluation.result import EvalResult
    from kbtool.report.sections import KindReport, RunView
    from kbtool.sandbox.isolation import Reporter
    from kbtool.task.model import Task
    from kbtool.timing.base import Timer

TEMPLATES = Path(str(importlib.resources.files("kbtool_templates"))) / "perf"


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
    check_runs_candidate = False  # a judge: candidates run in processes it confines
    # What a check runs (the ratios' statistics, imported by kbtool.timing.compare where
    # they are used), imported once by the zygote.
    preload = ("scipy.stats", "kbtool_plugins.perf.check")

    # -- parent side ----------------------------------------------------------------------
    def prepare(self, task: Task, config: Config) -> None:
        engine = config.section(PerfSettings).perf_engine
        payload = payload_of(task)
        why = None if engine == "local" else containers.unavailable(engine)
        if why is None and payload.image is not None:  # refused now, in one line,
            if engine == "local":                       # not as a failed check
                from kbtool_plugins.perf.check import IMAGES_NEED_ENGINE

                why = f"task {task.id}: {IMAGES_NEED_ENGINE}"
            for image in dict.fromkeys(x for x in payload.image.model_dump().values() if x):
                why = why or containers.image_missing(engine, image)
        if why:
            raise UsageError(why)
        releases.prepare(payload, config, task_dir(task))

    def pack(self, task: Task) -> Task:
        payload = payload_of(task)
        update: dict[str, Any] = {
            kind: [{"name": w.name, "source": source_of(task, w),
                    **({"params": w.params} if w.params else {})} for w in workloads]
            for kind, workloads in (("workloads", payload.workloads),
                                    ("hidden_workloads", payload.hidden_workloads))}
        update["human_patch_file"] = None
        if payload.repo is not None:  # a packed task has no folder to be relative to
            update["repo"] = gitrepo.location(payload.repo, task_dir(task))
        patch = releases.human_patch_text(payload, task_dir(task))
        if patch is not None:
            update["human_patch"] = patch
        packed = PerfPayload.model_validate({**payload.model_dump(), **update})
        return task.model_copy(update={
            "path": None, "payload": packed.model_dump(mode="json", exclude_defaults=True)})

    def describe(self, task: Task) -> str:
        """What ``tasks show`` prints and prompts hold: the visible workloads only."""
        payload = payload_of(task)
        if payload.from_git:  # the baseline only: the improving commit is not the agent's
            where = f"commit {payload.baseline_commit[:12]}" if payload.baseline_commit else \
                "the improving commit's parent"
            head = f"{payload.package} at {where}"
        else:
            head = f"{payload.package} {payload.baseline} -> {payload.human or 'a patch'}"
        parts = [f"{head}: {payload.description}".rstrip()]
        for name, code in workload_sources(task).items():
            parts.append(f"--- workload {name} ---\n{code.rstrip()}")
        return "\n\n".join(parts) + "\n"

    def fields(self, task: Task) -> dict[str, Any]:
        data = payload_of(task).model_dump(mode="json")
        data["workloads"] = [w["name"] for w in data["workloads"]]
        # How many, never which: their names, files and params could tell the inputs.
        data["hidden_workloads"] = len(data["hidden_workloads"])
        data.pop("human_patch", None)  # the patch's text: `inspect` reports it
        return data

    def labels(self, task: Task) -> dict[str, str]:
        payload = payload_of(task)
        pair = f"{payload.baseline} -> {payload.human or 'patch'}"
        if payload.from_git:
            assert payload.commit is not None
            pair = f"{(payload.baseline_commit or 'parent')[:12]} -> {payload.commit[:12]}"
        return {"package": payload.package, "pair": pair,
                "negative_control": str(payload.negative_control).lower()}

    def prompt_context(self, task: Task, config: Config) -> dict[str, str]:
        payload = payload_of(task)
        base = releases.fetch_source(config, payload, task_dir(task), "baseline")
        tree = base.tree
        name = base.name[:12] if payload.from_git else base.name
        files = []
        for rel in payload.prompt_files:
            path = tree / rel
            text = path.read_text() if path.is_file() else "(not in the baseline)"
            files.append(f"--- {rel} ---\n```python\n{text.rstrip()}\n```")
        _, package = releases.package_dir(tree, payload.module)
        workloads = "\n\n".join(f"```python\n{code.rstrip()}\n```"
                                for code in workload_sources(task).values())
        return {"reference": self.describe(task), "package": payload.package,
                "module": payload.module, "baseline": name,
                "version": f"{'commit' if payload.from_git else 'release'} {name}",
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
        info = {"human_patch": patch,
                "human_patch_files": sorted(releases_patch_files(patch)),
                "human_patch_omitted": where.omitted,
                "package_path": where.package_path, "package": payload.package,
                "baseline_version": where.baseline_name,
                "human_version": where.human_name}
        broken = problems(task)
        if broken:  # shown by `tasks show`; a check refuses the task
            info["problems"] = broken
        return info

    def check(self, task: Task, candidate: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        from kbtool_plugins.perf.check import INFRASTRUCTURE, Check, Incorrect, Rejected
        from kbtool_plugins.perf.judge import RunFailed, Violation

        started = time.monotonic()
        report.stage("load")
        check = Check(task, config, started)
        try:
            return check.run(candidate.read_text(), report)
        except Rejected as exc:
            return check.verdict("rejected", str(exc), exc.outcome)
        except Violation as exc:
            return check.verdict("rejected", str(exc), "rejected")
        except Incorrect as exc:
            return check.verdict("incorrect", str(exc), exc.outcome)
        except RunFailed as exc:
            return check.verdict("timeout" if exc.timed_out else "runtime_error", str(exc),
                                 "timed_out" if exc.timed_out else "run_failed")
        except EngineFailed as exc:  # the container engine's failure, not the candidate's
            check.flag(INFRASTRUCTURE, str(exc).splitlines()[0])
            return check.verdict("runtime_error", str(exc), "run_failed")

    def audit(self, task: Task, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        from kbtool_plugins.perf.audit import audit

        try:
            return audit(task, config, report).model_dump()
        except EngineFailed as exc:
            return {"task": task.id, "problems": [f"the container engine failed: {exc}"]}


def releases_patch_files(patch: str) -> set[str]:
    return {p[2:] if p.startswith(("a/", "b/")) else p for p in patch_paths(patch)}
