"""`kbtool report`: numbers checked against values worked out by hand from the recorded run
tests/fixtures/run_small (never modified here: changes are made to copies in tmp_path)."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml

from kbtool.report.build import build_report, load_run
from tests.helpers import RUN_PERF, run_kbtool
from tests.helpers import RUN_SMALL as FIXTURE
from tests.repo_service.mini import make_mini

GOOD_SHOUT = "def shout(word):\n    return word.upper() + '!'\n"
GOOD_VOWELS = "def count_vowels(text):\n    return sum(c in 'aeiou' for c in text.lower())\n"

KEYS = ["0", "0.5", "0.8", "1.0", "1.5", "2.0"]

# The literal values of tests/fixtures/run_small/summary.json.  Conv2d has no correct solution.
MATMUL = {"eager": 1.0018939310797226, "compile": 0.9983363508714278}
RELU = {"eager": 0.054236106524594735, "compile": 0.09445557439084948}
LINEAR = {"eager": 1.5055390033292326, "compile": 1.5683746232020104}
BEST_MS = {"builtin/1/1_Matmul": 7.972835, "builtin/1/2_ReLU": 4.08807,
           "builtin/2/1_Linear_ReLU_Add": 0.686044, "builtin/1/5_Conv2d": None}

# fast_p = (tasks correct and speedup > p) / 4, worked out task by task:
#   eager:   Matmul 1.0019, ReLU 0.0542, Linear 1.5055 -> >0: 3, >0.5: 2, >0.8: 2, >1.0: 2
#            (Matmul 1.0019 > 1), >1.5: 1 (Linear 1.5055), >2.0: 0
#   compile: Matmul 0.9983, ReLU 0.0945, Linear 1.5684 -> >0: 3, >0.5: 2, >0.8: 2, >1.0: 1
#            (Matmul 0.9983 is not > 1), >1.5: 1, >2.0: 0
FAST_P = {"eager": {"0": 3 / 4, "0.5": 2 / 4, "0.8": 2 / 4, "1.0": 2 / 4, "1.5": 1 / 4, "2.0": 0.0},
          "compile": {"0": 3 / 4, "0.5": 2 / 4, "0.8": 2 / 4, "1.0": 1 / 4, "1.5": 1 / 4,
                      "2.0": 0.0}}
# Geometric means: over the 3 correct tasks; and over all 4 with max(speedup, 1), 1 if incorrect.
GEOMEAN_CORRECT = {m: (MATMUL[m] * RELU[m] * LINEAR[m]) ** (1 / 3) for m in ("eager", "compile")}
GEOMEAN_CLAMPED = {"eager": (1.0018939310797226 * 1.0 * 1.5055390033292326 * 1.0) ** (1 / 4),
                   "compile": (1.0 * 1.0 * 1.5683746232020104 * 1.0) ** (1 / 4)}
# statuses: Matmul ok 4 + incorrect 1; ReLU ok 4 + incorrect 1; Linear ok 4 + incorrect 1 +
# runtime_error 1; Conv2d incorrect 8.
STATUSES = {"ok": 12, "incorrect": 11, "compile_error": 0, "runtime_error": 1, "timeout": 0,
            "rejected": 0, "internal_error": 0}


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-12, abs=1e-12)


def check_fixture_numbers(rep: dict) -> None:
    assert rep["n_tasks"] == 4
    for mode in ("eager", "compile"):
        assert list(rep["fast_p"][mode]) == KEYS
        for key in KEYS:
            assert rep["fast_p"][mode][key] == approx(FAST_P[mode][key]), (mode, key)
        assert rep["geomean_speedup"]["correct_tasks"][mode] == approx(GEOMEAN_CORRECT[mode])
        assert rep["geomean_speedup"]["all_tasks_clamped"][mode] == approx(GEOMEAN_CLAMPED[mode])
    assert rep["statuses"]["candidates"] == STATUSES
    assert rep["statuses"]["total_candidates"] == 24
    assert rep["statuses"]["tasks_correct"] == 3
    assert rep["statuses"]["tasks_without_correct"] == ["builtin/1/5_Conv2d"]
    for task_id, ms in BEST_MS.items():
        assert rep["tasks"][task_id]["best_runtime_ms"] == ms
        assert rep["tasks"][task_id]["correct"] is (ms is not None)
    assert rep["tasks"]["builtin/1/2_ReLU"]["speedup"]["eager"] == approx(RELU["eager"])
    assert rep["tasks"]["builtin/1/1_Matmul"]["best_solution"] == \
        "tasks/builtin_1_1_Matmul/phase0/agent0/step0/candidate.py"
    # Both phases: the best solutions were all found in phase 0.
    assert [p["phase"] for p in rep["phases"]] == [0, 1]
    for phase in rep["phases"]:
        assert phase["correct_tasks"] == 3
        assert phase["geomean_speedup"]["correct_tasks"]["eager"] == approx(GEOMEAN_CORRECT["eager"])
        assert phase["tasks"]["builtin/1/1_Matmul"]["best_so_far_ms"] == 7.972835
        assert phase["tasks"]["builtin/1/5_Conv2d"]["best_so_far_ms"] is None


def test_numbers_by_hand() -> None:
    rep = build_report(load_run(FIXTURE))
    assert rep["source"] == "summary.json"
    check_fixture_numbers(rep)
    cost = rep["cost"]
    assert (cost["calls"], cost["paid_calls"], cost["cached_calls"]) == (28, 28, 0)
    assert (cost["prompt_tokens"], cost["completion_tokens"], cost["total_tokens"]) == \
        (9326, 1557, 9326 + 1557)
    assert cost["cost_usd"] == 0.0
    assert cost["evaluations"] == 12


def test_json_cli() -> None:
    proc = run_kbtool("report", str(FIXTURE), "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)  # one JSON object, nothing else on stdout
    assert set(rep["fast_p"]) >= {"eager", "compile"}
    for mode in ("eager", "compile"):
        assert list(rep["fast_p"][mode]) == KEYS
    check_fixture_numbers(rep)
    assert {"geomean_speedup", "phases", "statuses", "cost", "tasks"} <= set(rep)


def test_plain_tables() -> None:
    proc = run_kbtool("report", str(FIXTURE))
    assert proc.returncode == 0, proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert "eager 0.75 0.50 0.50 0.50 0.25 0.00" in lines
    assert "compile 0.75 0.50 0.50 0.25 0.25 0.00" in lines
    assert "eager 0.434x 1.108x" in lines  # geomean over correct tasks, over all clamped
    assert "candidates 12 11 0 1 0 0 0" in lines
    assert "builtin/1/5_Conv2d no - 15.96 27.03 - - 0/8" in lines
    assert "\x1b[" not in proc.stdout  # plain text when not on a terminal
    assert "28 LLM calls" in proc.stdout


def test_plots(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    proc = run_kbtool("report", str(FIXTURE), "--plots", str(out))
    assert proc.returncode == 0, proc.stderr
    for name in ("best_runtime_per_phase", "geomean_speedup_per_phase", "speedup_distribution",
                 "fast_p"):
        png, pdf = out / f"{name}.png", out / f"{name}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert pdf.read_bytes()[:5] == b"%PDF-"
        assert png.stat().st_size > 1000 and pdf.stat().st_size > 1000


def test_csv_and_export(tmp_path: Path) -> None:
    proc = run_kbtool("report", str(FIXTURE), "--csv", str(tmp_path / "csv"),
                      "--export", str(tmp_path / "best"), "--json")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # the notes about written files go to stderr
    with open(tmp_path / "csv" / "tasks.csv", newline="") as handle:
        rows = {row["task"]: row for row in csv.DictReader(handle)}
    assert set(rows) == set(BEST_MS)
    assert float(rows["builtin/2/1_Linear_ReLU_Add"]["speedup_compile"]) == approx(LINEAR["compile"])
    assert rows["builtin/1/5_Conv2d"]["correct"] == "False"
    assert rows["builtin/1/5_Conv2d"]["speedup_eager"] == ""
    assert rows["builtin/1/1_Matmul"]["n_incorrect"] == "1"
    with open(tmp_path / "csv" / "phases.csv", newline="") as handle:
        phases = list(csv.DictReader(handle))
    assert len(phases) == 4 * 2
    with open(tmp_path / "csv" / "fast_p.csv", newline="") as handle:
        fast = {(r["baseline"], r["p"]): float(r["fast_p"]) for r in csv.DictReader(handle)}
    assert fast[("compile", "1.0")] == 0.25
    assert (tmp_path / "csv" / "phase_summary.csv").is_file()
    exported = sorted(p.name for p in (tmp_path / "best").glob("*.py"))
    assert exported == ["builtin_1_1_Matmul.py", "builtin_1_2_ReLU.py",
                        "builtin_2_1_Linear_ReLU_Add.py"]
    assert (tmp_path / "best" / "builtin_1_2_ReLU.py").read_text() == \
        (FIXTURE / "tasks/builtin_1_2_ReLU/phase0/agent0/step1/candidate.py").read_text()


def improved_copy(tmp_path: Path) -> Path:
    """The fixture with a faster Matmul found in phase 1 (4.0 ms) and a slower ReLU phase 1
    (5.0 ms, so its best stays the phase 0 one)."""
    run = tmp_path / "improved"
    shutil.copytree(FIXTURE, run)
    summary = json.loads((run / "summary.json").read_text())
    matmul = summary["tasks"]["builtin/1/1_Matmul"]
    matmul["best_runtime_ms"] = 4.0
    matmul["speedup"] = {"eager": 7.987935 / 4.0, "compile": 7.959571 / 4.0}
    matmul["phases"][1]["best_runtime_ms"] = 4.0
    summary["tasks"]["builtin/1/2_ReLU"]["phases"][1]["best_runtime_ms"] = 5.0
    summary["totals"]["cost_usd"] = 1.25
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_per_phase_best_so_far(tmp_path: Path) -> None:
    rep = build_report(load_run(improved_copy(tmp_path)))
    p0, p1 = rep["phases"]
    assert p0["tasks"]["builtin/1/1_Matmul"]["best_so_far_ms"] == 7.972835
    assert p1["tasks"]["builtin/1/1_Matmul"]["best_so_far_ms"] == 4.0
    assert p1["tasks"]["builtin/1/2_ReLU"]["best_runtime_ms"] == 5.0   # that phase's own best
    assert p1["tasks"]["builtin/1/2_ReLU"]["best_so_far_ms"] == 4.08807
    # phase 0: Matmul 7.987935/7.972835; phase 1: 7.987935/4.0; ReLU and Linear unchanged
    g0 = (7.987935 / 7.972835 * RELU["eager"] * LINEAR["eager"]) ** (1 / 3)
    g1 = (7.987935 / 4.0 * RELU["eager"] * LINEAR["eager"]) ** (1 / 3)
    assert p0["geomean_speedup"]["correct_tasks"]["eager"] == approx(g0)
    assert p1["geomean_speedup"]["correct_tasks"]["eager"] == approx(g1)
    clamped1 = (7.959571 / 4.0 * 1.0 * LINEAR["compile"] * 1.0) ** (1 / 4)
    assert p1["geomean_speedup"]["all_tasks_clamped"]["compile"] == approx(clamped1)
    # overall, Matmul vs compile is now 1.99 > 1.5: fast_1.5 = 2/4, fast_2.0 still 0
    assert rep["fast_p"]["compile"]["1.5"] == 0.5
    assert rep["fast_p"]["compile"]["2.0"] == 0.0
    assert p0["fast_p"]["compile"]["1.5"] == 0.25


def test_two_runs_side_by_side(tmp_path: Path) -> None:
    other = improved_copy(tmp_path)
    plots = tmp_path / "plots"
    proc = run_kbtool("report", str(FIXTURE), str(other), "--json", "--plots", str(plots),
                      "--export", str(tmp_path / "best"), "--csv", str(tmp_path / "csv"))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert list(data["runs"]) == [str(FIXTURE), str(other)]
    assert data["fast_p"] == data["runs"][str(FIXTURE)]["fast_p"]  # the first run's, on top
    check_fixture_numbers(data["runs"][str(FIXTURE)])
    assert data["runs"][str(other)]["fast_p"]["eager"]["1.5"] == 0.5  # Matmul 1.997, Linear 1.506
    assert data["runs"][str(other)]["cost"]["cost_usd"] == 1.25
    assert (plots / "geomean_speedup_per_phase.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "best").glob("*/*.py"))) == 6  # one folder per run
    with open(tmp_path / "csv" / "tasks.csv", newline="") as handle:
        assert {row["run"] for row in csv.DictReader(handle)} == {str(FIXTURE), str(other)}
    text = run_kbtool("report", str(FIXTURE), str(other))
    assert text.returncode == 0, text.stderr
    assert "2 runs side by side" in text.stdout
    # the same run twice is reported twice, under distinct names
    twice = run_kbtool("report", str(FIXTURE), str(FIXTURE), "--json")
    assert twice.returncode == 0, twice.stderr
    assert len(json.loads(twice.stdout)["runs"]) == 2


def test_crashed_run_without_summary(tmp_path: Path) -> None:
    run = tmp_path / "crashed"
    shutil.copytree(FIXTURE, run)
    (run / "summary.json").unlink()
    rep = build_report(load_run(run))
    assert rep["source"] == "reconstructed"
    check_fixture_numbers(rep)  # the same numbers, rebuilt from eval.json files and events
    assert rep["cost"]["calls"] == 28 and rep["cost"]["prompt_tokens"] == 9326
    proc = run_kbtool("report", str(run), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["fast_p"] == FAST_P

    # no step eval.json either: the eval events and evals/ still give every candidate
    for path in run.glob("tasks/*/phase*/agent*/step*/eval.json"):
        path.unlink()
    check_fixture_numbers(build_report(load_run(run)))

    # killed mid-run: the event log stops after the first 40 events
    lines = (FIXTURE / "events.jsonl").read_text().splitlines(keepends=True)
    (run / "events.jsonl").write_text("".join(lines[:40]) + '{"seq": 41, "ty')  # a torn line
    rep = build_report(load_run(run))
    assert rep["status"] == "incomplete"
    assert rep["n_tasks"] == 4  # from tasks.json
    assert rep["tasks"]["builtin/1/1_Matmul"]["best_runtime_ms"] == 7.972835
    assert rep["tasks"]["builtin/1/5_Conv2d"]["correct"] is False
    proc = run_kbtool("report", str(run))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "no_tasks", "plain_dir"])
def test_bad_input(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("not a run")
    elif kind == "empty":
        target.mkdir()
    elif kind == "no_tasks":
        target.mkdir()
        (target / "tasks.json").write_text("[]")
    elif kind == "plain_dir":
        target = FIXTURE / "tasks"
    proc = run_kbtool("report", str(target))
    assert proc.returncode == 2
    assert proc.stderr.startswith("kbtool: error: ")
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_bad_input_among_good_runs(tmp_path: Path) -> None:
    proc = run_kbtool("report", str(FIXTURE), str(tmp_path / "nope"), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr and "nope" in proc.stderr


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = run_kbtool("report", str(FIXTURE), "--plots", str(tmp_path / "file"), "--json")
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.startswith("kbtool: error: --plots")


def test_geomean_edge_cases() -> None:
    from kbtool.report.build import fast_p, geomean

    assert geomean([]) is None
    assert geomean([2.0, 8.0]) == approx(4.0)
    assert fast_p([None, None], 2) == dict.fromkeys(KEYS, 0.0)
    assert fast_p([1.0], 1)["1.0"] == 0.0  # strictly faster than p
    assert math.isclose(fast_p([1.0], 1)["0.8"], 1.0)


# -- what applies to each kind --------------------------------------------------------------

SPEEDUP_FIGURES = ("geomean_speedup_per_phase", "speedup_distribution", "fast_p")


def reply(code: str) -> str:
    return f"Here it is.\n```python\n{code}```\n"


def test_a_run_of_repository_items_reports_what_applies(tmp_path: Path) -> None:
    """Repository items are judged, not timed: no fast_p, speedup or runtime table or figure
    (they were printed empty), no matplotlib warning, and the candidates and the evaluations
    counted so that they agree (a repeated answer reuses its verdict)."""
    mini = make_mini(tmp_path / "mini")
    wrong = "def shout(word):\n    return word\n"
    script = tmp_path / "replies.yaml"
    script.write_text(yaml.safe_dump({"tasks": {
        "repo/mini/method_gen/1_shout": {"generate": [reply(wrong)],
                                         "fix": [reply(wrong), reply(GOOD_SHOUT)]},
        "repo/mini/repair/2_count_vowels": {"generate": [reply(GOOD_VOWELS)]}}}))
    run_dir = tmp_path / "run"
    proc = run_kbtool("run", "repo/mini/method_gen/1_shout", "repo/mini/repair/2_count_vowels",
                      "strategy=multiturn", "max_iter=3", f"replay_path={script}",
                      f"run_dir={run_dir}", *mini.settings(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "repo/mini/method_gen/1_shout: correct; 1/3 candidates correct" in proc.stdout
    assert "3 evaluations" in proc.stdout  # the wrong answer, given twice, is checked once
    out = tmp_path / "plots"
    proc = run_kbtool("report", str(run_dir), "--plots", str(out))
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for gone in ("fast_p:", "geometric-mean speedup\n", "per phase:", "best ms", "vs eager"):
        assert gone not in text, gone
    assert "fast_p and geometric-mean speedups: none" in text
    assert "candidates by status (4 candidates, 3 evaluations: 1 was identical to an " \
           "earlier candidate and reused its verdict)" in text
    assert ", 3 evaluations" in text and "repo: pass rate" in text
    assert sorted(p.name for p in out.iterdir()) == ["repo_turns.pdf", "repo_turns.png"]
    assert "Warning" not in proc.stderr, proc.stderr


def test_a_run_of_performance_commits_reports_what_applies(tmp_path: Path) -> None:
    """perf tasks are timed inside their check, against no core baseline: their runtime is
    reported, fast_p and the core speedup figures are not (the perf section has its own)."""
    out = tmp_path / "plots"
    proc = run_kbtool("report", str(RUN_PERF), "--plots", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = [" ".join(line.split()) for line in proc.stdout.splitlines()]
    assert "task correct best ms ok/candidates" in lines
    assert "perf/packaging-canonicalize yes 205.5 1/1" in lines
    assert not any(line.startswith(("fast_p:", "per phase: best solution")) for line in lines)
    assert "candidates by status (1 candidate)" in proc.stdout
    names = {p.stem for p in out.iterdir()}
    assert "best_runtime_per_phase" in names and not names & set(SPEEDUP_FIGURES)
    assert {"perf_speedups", "perf_opt_at_k"} <= names
    assert "Warning" not in proc.stderr, proc.stderr


def test_a_timed_run_keeps_every_table_and_figure(tmp_path: Path) -> None:
    out = tmp_path / "plots"
    proc = run_kbtool("report", str(FIXTURE), "--plots", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "fast_p: fraction" in proc.stdout and "per phase: best runtime" in proc.stdout
    assert "candidates by status (24 candidates, 12 evaluations: 12 were identical" in \
        proc.stdout
    assert {p.stem for p in out.iterdir()} == {"best_runtime_per_phase", *SPEEDUP_FIGURES}
