"""``kbtool tasks check`` for perf tasks: what a task's author must fix, one line each.

In kbtool's isolated process, like a check, without a candidate: the workloads' files, the
task's paths (tests, prompt files), the human patch as a candidate would be judged (what it
changes, what it adds), every workload (visible and hidden) run on the baseline (twice with
one seed, once with another) and on the human patch, and the package's tests on both.
"""

from __future__ import annotations

import secrets
import time

from kbtool.config import Config
from kbtool.sandbox.isolation import Reporter
from kbtool.task.model import Task, TaskAudit, TaskRefused
from kbtool_plugins.perf.check import Check, Rejected
from kbtool_plugins.perf.patching import changed_files, refusal, snapshot
from kbtool_plugins.perf.workloads import BenchWorkload, problems

# A timed region shorter than this is mostly the judge's pipe and the scheduler.
MIN_EXPERIMENT_MS = 10.0


def audit(task: Task, config: Config, report: Reporter) -> TaskAudit:
    found = TaskAudit(task=task.id)
    problem, checked = found.problems.append, found.checked.append
    check = Check(task, config, time.monotonic())
    payload, where = check.payload, check.where
    found.problems += problems(task)
    if found.problems:
        return found  # nothing can run
    if not payload.hidden_workloads:
        problem("no hidden_workloads: add workloads the agent never sees (a visible one's "
                "file with other params, or a file of its own), else a patch fitted to the "
                "visible inputs scores as a real gain")
    tree = where.baseline_tree
    for rel in payload.prompt_files:
        if not (tree / rel).is_file():
            problem(f"prompt_files: {rel} is not in the baseline's source tree")
    for arg in payload.tests:
        path = arg.split("::")[0]
        if not arg.startswith("-") and not (tree / path).exists():
            problem(f"tests: {path} is not in the baseline's source tree")
    if not payload.tests:
        problem("no tests: name the package's tests that cover the changed code (tests:)")
    _human_patch(check, found)

    report.stage("workloads")
    bench, _ = check.start(None)
    for workload in bench.items:
        _workload(check, workload, found)

    if payload.tests and check.settings.run_tests:
        report.stage("tests")
        for who, copy in (("baseline", tree), ("human", where.human_tree)):
            code, summary, output = check.tests(copy, who)
            if code is None:
                problem(f"the package's tests take longer than perf.test_timeout_s="
                        f"{check.settings.test_timeout_s:g} s on the {who}")
            elif code != 0:
                first = next((ln.split(" - ")[0] for ln in output.splitlines()
                              if ln.startswith(("FAILED ", "ERROR "))), "")
                problem(f"the package's tests fail on the {who} ({summary}"
                        + (f"; first: {first}" if first else "") + "): name tests that pass "
                        "on both releases (tests: takes pytest's arguments, --deselect too)"
                        + (", or install what the human patch needs (test_requirements)"
                           if who == "human" else ""))
            else:
                checked(f"the package's tests pass on the {who} ({summary})")
    return found


def _human_patch(check: Check, found: TaskAudit) -> None:
    """The human patch must pass what a candidate's patch passes."""
    where = check.where
    if not where.human_patch.read_text().strip():
        found.problems.append("the human patch is empty: the two releases' sources do not "
                              "differ (besides version and metadata lines)")
        return
    before, after = snapshot(where.baseline_tree), snapshot(where.human_tree)
    changed = [p for p in changed_files(before, after) if "__pycache__" not in p]
    why = refusal(changed, after, where.package_path)
    if why:
        found.problems.append(f"the human patch would be refused as a candidate: {why}")
        return
    try:
        check.static_check(where.human_tree, changed)
    except Rejected as exc:
        found.problems.append(f"the human patch would be refused as a candidate: {exc}")
        return
    omitted = where.omitted
    found.checked.append(f"the human patch changes {', '.join(changed)}"
                         + (f"; left out of it: {'; '.join(omitted)}" if omitted else ""))


def _workload(check: Check, workload: BenchWorkload, found: TaskAudit) -> None:
    name = f"{'hidden ' if workload.hidden else ''}workload {workload.name}"
    problem = found.problems.append
    one, other = secrets.randbits(31), secrets.randbits(31)
    try:
        first = check.run_arm("baseline", workload, one)
        again = check.run_arm("baseline", workload, one)
        second = check.run_arm("baseline", workload, other)
        human = check.run_arm("human", workload, one)
    except TaskRefused as exc:
        problem(str(exc).replace(f"workload {workload.name}", name))
        return
    bad = len(found.problems)
    why = workload.equivalent(first.result, again.result)
    if why:
        problem(f"{name}: two baseline runs with one seed disagree ({why}): setup(seed) and "
                "experiment must give the same results for the same seed")
    if workload.equivalent(first.result, second.result) is None:
        problem(f"{name}: check_equivalence accepts the results of other inputs (seeds {one} "
                f"and {other}): it must compare the results themselves, or a patch that "
                "returns anything passes")
    why = workload.equivalent(first.result, human.result)
    if why:
        problem(f"{name}: the human patch's results differ from the baseline's ({why}): the "
                "workload or its check_equivalence must accept both")
    if first.experiment_ms < MIN_EXPERIMENT_MS:
        problem(f"{name}: its timed region takes {first.experiment_ms:.1f} ms on the baseline; "
                f"below {MIN_EXPERIMENT_MS:g} ms the judge's own overhead and the scheduler "
                "dominate: give it more work")
    if workload.params:
        assert check.judge is not None
        plain = check.judge.run(check.versions["baseline"], workload.path, one, {})
        if workload.equivalent(first.result, plain.result) is None:
            problem(f"{name}: its params change nothing (the results equal its file's "
                    "without them): setup and experiment must read those names when called")
    if "main" in check.versions:
        main = check.run_arm("main", workload, one)
        why = workload.equivalent(first.result, main.result)
        if why:
            problem(f"{name}: the main release's results differ from the baseline's ({why}): "
                    "opt_main cannot be scored (drop main, or make the check accept both)")
    if len(found.problems) == bad:
        found.checked.append(
            f"{name}: runs on the baseline ({first.experiment_ms:.0f} ms) and the human patch "
            f"({human.experiment_ms:.0f} ms, one run each: not a verdict); deterministic for "
            "a seed, its check tells other inputs apart, the human patch's results agree")
