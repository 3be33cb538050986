"""`kbtool tasks check` on perf tasks, and broken tasks as task errors: a task's author learns
in one line per problem what to fix, and a broken task is never a candidate's verdict."""

from __future__ import annotations

import json
from pathlib import Path

from kbtool.config import Config
from kbtool.task import catalog
from kbtool_plugins.perf.workloads import payload_of
from tests.helpers import TESTS, run_kbtool
from tests.perf.conftest import TASK

BROKEN = TESTS / "perf" / "fixtures" / "broken"


def check(*args: str) -> tuple[int, list[str], list[str]]:
    proc = run_kbtool("tasks", "check", *args, timeout=900)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout.splitlines(), proc.stderr.splitlines()


def test_a_sound_builtin_task(perf_cache: Path) -> None:
    """The built-in task passes: its workloads (visible and hidden) run on the baseline and
    the human patch, and the package's tests pass on both; the human patch leaves out the
    release's version line."""
    code, out, err = check(TASK, f"cache_dir={perf_cache}")
    assert code == 0, err
    text = "\n".join(out)
    assert "hidden workload canonicalize_other_names: runs" in text
    assert "tests pass on the baseline" in text and "tests pass on the human" in text
    assert 'left out of it: src/packaging/__init__.py: __version__ = "26.0"' in text


def test_authoring_mistakes_are_named_one_per_line(perf_cache: Path) -> None:
    code, _, err = check("perf/missing-workload", "perf/set-result", f"perf_tasks_dir={BROKEN}",
                         f"cache_dir={perf_cache}")
    assert code == 2
    problems = [line for line in err if "PROBLEM" in line]
    assert any(line.startswith("perf/missing-workload: PROBLEM: workload nowhere: cannot read ")
               and "no_such_workload.py" in line for line in problems), err
    said = "\n".join(problems)
    assert "the baseline run of workload set_names failed: store_result: it returned " \
           "something JSON cannot hold (TypeError: Object of type set is not JSON " \
           "serializable)" in said, said
    assert "workload anything_goes: check_equivalence accepts the results of other " \
           "inputs" in said, said
    assert all(len(line) < 600 for line in problems)


def test_a_broken_task_is_a_task_error_not_a_verdict(perf_cache: Path, tmp_path: Path) -> None:
    """`kbtool eval` on a broken task: exit 2 and one line, never compile_error or
    runtime_error charged to the candidate."""
    empty = tmp_path / "empty.diff"
    empty.write_text("")
    for task, says in (("perf/missing-workload", "no_such_workload.py"),
                       ("perf/set-result", "JSON cannot hold")):
        proc = run_kbtool("eval", task, "--solution", str(empty), "--json",
                          f"perf_tasks_dir={BROKEN}", f"cache_dir={perf_cache}",
                          "perf.min_rounds=3", "perf.max_rounds=3", timeout=600)
        assert proc.returncode == 2, (task, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "broken" in lines[0], lines
        assert proc.stdout == ""


def test_json_output(perf_cache: Path) -> None:
    proc = run_kbtool("tasks", "check", "perf/missing-workload", "--json",
                      f"perf_tasks_dir={BROKEN}", f"cache_dir={perf_cache}", timeout=600)
    assert proc.returncode == 2
    [audit] = json.loads(proc.stdout)
    assert audit["task"] == "perf/missing-workload" and audit["problems"]


def test_hidden_workloads_never_reach_the_agent(perf_config: Config) -> None:
    """The prompt's values, what `tasks show` prints and a packed task's description hold
    the visible workload only; `tasks show` says how many hidden ones there are."""
    task = catalog.resolve(TASK, perf_config)
    kind = catalog.kind_of(task)
    hidden = payload_of(task).hidden_workloads[0]
    secrets = [hidden.name, *(str(v) for v in hidden.params.values())]
    shown = [*kind.prompt_context(task, perf_config).values(), kind.describe(task),
             kind.describe(kind.pack(task)), json.dumps(kind.fields(task))]
    assert "canonicalize_names" in shown[0]  # the visible workload is there
    for text in shown:
        for secret in secrets:
            assert secret not in text, secret
    assert kind.fields(task)["hidden_workloads"] == 1
