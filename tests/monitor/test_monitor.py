"""``kbtool monitor``: the state model (folding, incremental reads), the app driven by Pilot,
live following, SVG snapshots, and the CLI's refusal of a folder that is not a run."""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.syntax import Syntax
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import TabbedContent, Tree

from kbtool.monitor import app as monitor_app
from kbtool.monitor import state as monitor_state
from kbtool.monitor.app import MonitorApp
from kbtool.monitor.screens.detail import DetailScreen
from kbtool.monitor.screens.tasks import TasksScreen
from kbtool.monitor.state import EventTail, RunFollower, RunState, parse_sample
from kbtool.monitor.widgets.panels import queue_line
from kbtool.monitor.widgets.step_tree import StepTree
from kbtool.monitor.widgets.task_list import TaskList, columns
from tests.helpers import RUN_SMALL as FIXTURE
from tests.helpers import run_kbtool

TASKS = ["builtin/1/1_Matmul", "builtin/1/2_ReLU", "builtin/2/1_Linear_ReLU_Add",
         "builtin/1/5_Conv2d"]
FROZEN_NOW = 1_795_311_000.0


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A copy of the recorded run (named like it: the name is shown and snapshotted)."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "run_small"))


def fixture_lines() -> list[str]:
    return (FIXTURE / "events.jsonl").read_text().splitlines(keepends=True)


def make_app(run_dir: Path, interval: float = 60.0) -> MonitorApp:
    return MonitorApp(run_dir, interval=interval, clock=lambda: FROZEN_NOW)


async def until(pilot: Pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError("condition not reached in time")


async def loaded(pilot: Pilot) -> None:
    await until(pilot, lambda: pilot.app.polls >= 1)


def drive(app: MonitorApp, script: Callable, size: tuple[int, int] = (80, 24)) -> None:
    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await loaded(pilot)
            await script(pilot)
    asyncio.run(main())


# -- the state model ---------------------------------------------------------------------------
def test_folding_the_fixture_gives_its_summary(run_dir: Path) -> None:
    follower = RunFollower(run_dir)
    assert follower.poll() == 78
    state = follower.state
    summary = json.loads((run_dir / "summary.json").read_text())
    assert list(state.tasks) == TASKS
    for task_id, expected in summary["tasks"].items():
        task = state.tasks[task_id]
        assert task.status == "done"
        assert task.candidates == expected["candidates"]
        assert task.correct == expected["correct_candidates"]
        assert task.best_runtime_ms == expected["best_runtime_ms"]
        assert (task.best.path if task.best else None) == expected["best_solution"]
        assert dict(task.statuses) == expected["statuses"]
        for mode, speedup in expected["speedup"].items():
            assert task.speedup(mode, "eager") == pytest.approx(speedup)
        assert len(task.phases_done) == len(expected["phases"])
    totals = summary["totals"]
    assert state.llm.calls == totals["calls"]
    assert state.llm.cached == totals["cached_calls"]
    assert state.llm.prompt_tokens == totals["prompt_tokens"]
    assert state.llm.completion_tokens == totals["completion_tokens"]
    assert state.llm.errors == totals["llm_errors"]
    assert state.llm.budget_exhausted is None
    assert state.status == summary["status"] and not state.running
    assert state.evaluations == sum(t["candidates"] for t in summary["tasks"].values())
    assert state.env["device"] == "cpu" and state.env["timer"] == "cpu"


def test_a_torn_last_line_is_kept_until_it_is_complete(tmp_path: Path) -> None:
    lines = fixture_lines()
    log = tmp_path / "events.jsonl"
    half = len(lines[10]) // 2
    log.write_text("".join(lines[:10]) + lines[10][:half])
    tail = EventTail(log)
    assert [e["seq"] for e in tail.read()] == list(range(1, 11))
    assert tail.partial == lines[10][:half].encode()
    assert tail.offset == len("".join(lines[:10]).encode())
    assert tail.read() == []
    with open(log, "a") as handle:
        handle.write(lines[10][half:])
    assert [e["seq"] for e in tail.read()] == [11]
    assert tail.partial == b"" and tail.bad_lines == 0


def test_a_torn_line_repaired_by_a_resume_is_skipped(tmp_path: Path) -> None:
    lines = fixture_lines()
    log = tmp_path / "events.jsonl"
    # killed mid-line, then ``--resume`` ended the torn line and went on
    log.write_text("".join(lines[:5]) + lines[5][:20] + "\n" + "".join(lines[6:]))
    tail = EventTail(log)
    events = tail.read()
    assert len(events) == len(lines) - 1 and tail.bad_lines == 1
    state = RunState()
    state.fold(events)
    assert state.status == "finished"


def test_incremental_reads_consume_only_new_complete_lines(tmp_path: Path) -> None:
    lines = fixture_lines()
    log = tmp_path / "events.jsonl"
    log.write_text("")
    tail = EventTail(log)
    assert tail.read() == []
    seen: list[int] = []
    for start in range(0, len(lines), 7):
        chunk = "".join(lines[start:start + 7])
        with open(log, "a") as handle:  # a chunk in two writes, the first one mid-line
            handle.write(chunk[:13])
        seen += [e["seq"] for e in tail.read()]
        with open(log, "a") as handle:
            handle.write(chunk[13:])
        seen += [e["seq"] for e in tail.read()]
        assert tail.offset == log.stat().st_size and tail.partial == b""
    assert seen == list(range(1, len(lines) + 1))


def test_a_missing_or_replaced_log(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("mode: eager\n")
    follower = RunFollower(tmp_path)
    assert follower.poll() == 0 and follower.state.status == "waiting"
    (tmp_path / "events.jsonl").write_text("".join(fixture_lines()))
    assert follower.poll() == 78
    (tmp_path / "events.jsonl").write_text("".join(fixture_lines()[:3]))  # a new run here
    assert follower.poll() == 3
    assert follower.state.events == 3 and follower.state.status == "running"


def test_live_figures_of_a_running_run() -> None:
    state = RunState(tasks=["t/1"])
    assert state.tasks["t/1"].status == "pending"
    state.fold([
        {"seq": 1, "t": 100.0, "type": "run_started", "tasks": ["t/1"], "model": "m",
         "strategy": "tree", "env": {}},
        {"seq": 2, "t": 101.0, "type": "task_started", "task": "t/1"},
        {"seq": 3, "t": 102.0, "type": "llm_call", "sample": "t/1/p0/a0/s0", "cached": True,
         "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.5},
        {"seq": 4, "t": 103.0, "type": "llm_call", "sample": "t/1/p0/a1/s0"},
        {"seq": 5, "t": 104.0, "type": "format_error", "step": "t/1/p0/a1/s0", "task": "t/1"},
        {"seq": 6, "t": 105.0, "type": "llm_error", "sample": "t/1/p0/a1/s1", "error": "429"},
        {"seq": 7, "t": 106.0, "type": "budget_exhausted", "reason": "max_calls=2 reached"},
        {"seq": 8, "t": 107.0, "type": "mystery"},
    ])
    task = state.tasks["t/1"]
    assert task.status == "running" and task.phase == 0
    assert task.steps[(0, 0, 0)].status == "evaluating"
    assert task.steps[(0, 1, 0)].status == "format_error"
    assert state.awaiting_eval() == 1
    assert state.llm.cached == 1 and state.llm.cost_usd == 0.5 and state.llm.errors == 1
    assert state.llm.format_errors == 1
    assert state.llm.budget_exhausted == "max_calls=2 reached"
    assert state.elapsed_s(now=160.0) == 60.0 and state.last_seq == 8
    assert state.take_dirty() == {"t/1"} and state.take_dirty() == set()


@pytest.mark.parametrize(("sample", "parsed"), [
    ("builtin/1/2_ReLU/p0/a1/s2", ("builtin/1/2_ReLU", (0, 1, 2))),
    ("builtin/1/2_ReLU/ideas", ("builtin/1/2_ReLU", None)),
    ("file/my/task/p12/a3/s0", ("file/my/task", (12, 3, 0))),
    ("t/pX/a1/s2", ("t/pX/a1", None)),
])
def test_parse_sample(sample: str, parsed: tuple) -> None:
    assert parse_sample(sample) == parsed


# -- the app -------------------------------------------------------------------------------------
def test_the_table_lists_the_tasks(run_dir: Path) -> None:
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(TaskList)
        assert table.rows == TASKS
        assert table.cells["builtin/1/2_ReLU"][2:4] == (("5", ""), ("4", "green"))
        assert table.cells["builtin/2/1_Linear_ReLU_Add"][5][0] == "1.51x"  # vs eager
        assert table.cells["builtin/2/1_Linear_ReLU_Add"][6][0] == "1.57x"  # vs compile
        assert "finished" in str(app.screen.query_one("#topbar").content)
        assert "calls 28" in str(app.screen.query_one("#llm").content)

    drive(app, script)


def test_enter_drills_down_and_escape_comes_back(run_dir: Path) -> None:
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        await pilot.press("down", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.task_id == "builtin/1/2_ReLU"
        tree = screen.query_one(Tree)
        tops = [str(node.label) for node in tree.root.children]
        assert tops[0] == "ideas"
        assert tops[1].startswith("phase 0 2/3 ok") and tops[2].startswith("phase 1 2/2 ok")
        steps = [d for d in screen.query_one(StepTree).by_data if d[0] == "step"]
        assert len(steps) == 5
        await until(pilot, lambda: tree.cursor_node is not None and
                    tree.cursor_node.data == ("step", (0, 0, 1)))  # the best one
        await pilot.press("left")  # a step: to its agent; then fold it, unfold it
        assert tree.cursor_node.data == ("agent", 0, 0)
        await pilot.press("left")
        assert not tree.cursor_node.is_expanded
        await pilot.press("right")
        assert tree.cursor_node.is_expanded
        await pilot.press("escape")
        assert isinstance(app.screen, TasksScreen)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press("backspace")
        assert isinstance(app.screen, TasksScreen)

    drive(app, script)


def test_the_step_view_shows_code_eval_and_prompt(run_dir: Path) -> None:
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        await pilot.press("down", "enter")
        screen = app.screen
        await until(pilot, lambda: screen.shown == ("step", (0, 0, 1)))
        code = screen.query_one("#code-text").content
        assert isinstance(code, Syntax) and "class ModelNew" in code.code
        assert code.code == (run_dir / "tasks/builtin_1_2_ReLU/phase0/agent0/step1/"
                             "candidate.py").read_text()
        await pilot.press("2")
        assert screen.query_one(TabbedContent).active == "eval"
        assert "status   ok" in str(screen.query_one("#eval-text").content)
        await pilot.press("up")  # step 0: incorrect, with an error tail
        await until(pilot, lambda: screen.shown == ("step", (0, 0, 0)))
        evaluation = str(screen.query_one("#eval-text").content)
        assert "incorrect" in evaluation and "values differ beyond" in evaluation
        await pilot.press("3")
        prompt = (run_dir / "tasks/builtin_1_2_ReLU/phase0/agent0/step0/prompt.md").read_text()
        assert str(screen.query_one("#prompt-text").content) == prompt

    drive(app, script)


def test_filters_narrow_the_table(run_dir: Path) -> None:
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(TaskList)
        await pilot.press("slash", "r", "e", "l", "u")
        assert table.rows == ["builtin/1/2_ReLU", "builtin/2/1_Linear_ReLU_Add"]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert app.focused is table
        await pilot.press("down", "enter")
        assert app.screen.task_id == "builtin/2/1_Linear_ReLU_Add"
        await pilot.press("escape", "escape")  # back; then clear the filter
        assert table.rows == TASKS
        await pilot.press("f")  # pending
        assert table.rows == []
        await pilot.press("f", "f")  # running, done
        assert table.rows == TASKS and "done" in str(table.border_title)

    drive(app, script)


def test_q_quits(run_dir: Path) -> None:
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        await pilot.press("down", "enter", "q")
        assert app.return_code == 0

    drive(app, script)


def test_following_a_run_that_goes_on(run_dir: Path) -> None:
    lines = fixture_lines()
    log = run_dir / "events.jsonl"
    log.write_text("".join(lines[:40]) + lines[40][:25])  # half-way, and a torn line
    app = make_app(run_dir, interval=0.05)

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(TaskList)
        assert app.state.last_seq == 40 and app.state.running
        assert table.cells["builtin/1/5_Conv2d"][2][0] == "0"
        assert table.cells["builtin/1/5_Conv2d"][7][0] == "running"
        assert "last" in str(app.screen.query_one("#topbar").content)  # ... ago
        await pilot.press("end", "enter")  # the Conv2d task, while it runs
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.task_id == "builtin/1/5_Conv2d"
        nodes = detail.query_one(StepTree).by_data
        before = len(nodes)
        with open(log, "a") as handle:
            handle.write(lines[40][25:] + "".join(lines[41:]))
        await until(pilot, lambda: app.state.last_seq == 78)
        assert len(nodes) > before  # phase 1 arrived in the open tree
        assert ("phase", 1) in nodes
        await pilot.press("escape")
        assert table.cells["builtin/1/5_Conv2d"][2][0] == "8"
        assert table.cells["builtin/1/5_Conv2d"][7][0] == "done"
        assert "finished" in str(app.screen.query_one("#topbar").content)

    drive(app, script)


def test_a_run_that_has_not_logged_anything_yet(tmp_path: Path) -> None:
    shutil.copy(FIXTURE / "config.yaml", tmp_path / "config.yaml")
    shutil.copy(FIXTURE / "tasks.json", tmp_path / "tasks.json")
    app = make_app(tmp_path, interval=0.05)

    async def script(pilot: Pilot) -> None:
        assert "waiting for events" in str(app.screen.query_one("#topbar").content)
        table = app.screen.query_one(TaskList)
        assert table.rows == TASKS  # from tasks.json, all pending
        assert {cells[7][0] for cells in table.cells.values()} == {"pending"}
        await pilot.press("enter")  # a task with no step yet: an empty tree, no error
        assert isinstance(app.screen, DetailScreen)
        (tmp_path / "events.jsonl").write_text("".join(fixture_lines()[:12]))
        await until(pilot, lambda: app.state.last_seq == 12)
        assert ("phase", 0) in app.screen.query_one(StepTree).by_data

    drive(app, script)


def test_a_log_read_in_chunks_gives_the_same_state(run_dir: Path) -> None:
    whole = RunFollower(run_dir)
    whole.poll()
    chunked = RunFollower(run_dir)
    seen, progress = 0, []
    while True:
        seen += chunked.poll(max_bytes=1500)  # shorter than some lines: they are completed
        if chunked.loading is None:
            break
        progress.append(chunked.loading)
    assert seen == 78 and len(progress) > 5
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert {size for _, size in progress} == {(run_dir / "events.jsonl").stat().st_size}
    for task_id, task in whole.state.tasks.items():
        other = chunked.state.tasks[task_id]
        assert (other.candidates, other.correct, other.best_runtime_ms, other.status) == \
            (task.candidates, task.correct, task.best_runtime_ms, task.status)


def untimed_run(root: Path) -> Path:
    """A run of a kind whose candidates are not timed (tests pass or fail): no baselines,
    no runtimes, the kind's details in the eval events; no eval.json files."""
    run = root / "untimed"
    run.mkdir()
    (run / "config.yaml").write_text("strategy: tree\n")
    tasks = ["repo/1/fix_parser", "repo/1/fix_cache"]
    (run / "tasks.json").write_text(json.dumps([{"id": t, "kind": "pytests"} for t in tasks]))
    events = [
        {"type": "run_started", "tasks": tasks, "model": "m", "strategy": "tree", "env": {},
         "mode": None, "baselines": [], "kinds": dict.fromkeys(tasks, "pytests")},
        {"type": "task_started", "task": tasks[0]},
        {"type": "llm_call", "sample": f"{tasks[0]}/p0/a0/s0"},
        {"type": "eval", "sample": f"{tasks[0]}/p0/a0/s0", "task": tasks[0],
         "status": "incorrect", "details": {"tests_passed": 10, "tests_failed": 2}},
        {"type": "llm_call", "sample": f"{tasks[0]}/p0/a0/s1"},
        {"type": "eval", "sample": f"{tasks[0]}/p0/a0/s1", "task": tasks[0], "status": "ok",
         "path": "tasks/repo_1_fix_parser/phase0/agent0/step1/candidate.diff",
         "details": {"tests_passed": 12, "tests_failed": 0}},
        {"type": "task_done", "task": tasks[0], "correct": True},
    ]
    (run / "events.jsonl").write_text("".join(
        json.dumps({"seq": i, "t": 1000.0 + i, **e}) + "\n" for i, e in enumerate(events, 1)))
    step = run / "tasks/repo_1_fix_parser/phase0/agent0/step1"
    step.mkdir(parents=True)
    (step / "candidate.diff").write_text("--- a/parser.py\n+++ b/parser.py\n")
    return run


def test_a_kind_without_timing_shows_pass_and_its_details(tmp_path: Path) -> None:
    app = make_app(untimed_run(tmp_path))

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(TaskList)
        assert [label for label, _, _ in table.columns][4:7] == ["Best ms", "", ""]
        parser = table.cells["repo/1/fix_parser"]
        assert parser[2:5] == (("2", ""), ("1", "green"), ("pass", "green"))
        assert parser[5:7] == (("", ""), ("", ""))  # no baselines: no speedups
        assert table.cells["repo/1/fix_cache"][4] == ("-", "")
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await until(pilot, lambda: screen.shown == ("step", (0, 0, 1)))  # the one that passed
        assert "best pass" in str(screen.query_one("#taskbar").content)
        tree = screen.query_one(StepTree)
        assert str(tree.by_data[("step", (0, 0, 1))].label) == "step 1 pass"
        code = screen.query_one("#code-text").content
        assert isinstance(code, Syntax) and code.code.startswith("--- a/parser.py")
        evaluation = str(screen.query_one("#eval-text").content)
        assert "result   pass (not timed)" in evaluation and "runtime" not in evaluation
        assert "tests_passed 12" in evaluation and "tests_failed 0" in evaluation
        await pilot.press("up")
        await until(pilot, lambda: screen.shown == ("step", (0, 0, 0)))
        evaluation = str(screen.query_one("#eval-text").content)
        assert "result   fail" in evaluation and "tests_failed 2" in evaluation

    drive(app, script)


def test_speedup_columns_are_the_runs_baselines() -> None:
    labels = [label for label, _, _ in columns(["reference", "numpy"])]
    assert labels[5:7] == ["vs refe", "vs numpy"]
    assert [label for label, _, _ in columns(["eager"])][5:7] == ["vs eager", ""]


def test_a_large_log_is_shown_chunk_by_chunk(run_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The first frame comes before the log is read; then every chunk is shown as it is
    folded, with the reading's progress in the top line."""
    monkeypatch.setattr(monitor_app, "CHUNK_BYTES", 4000)
    seen: list[tuple[int, str]] = []
    first_read: list[tuple[str, int, str]] = []

    class Recording(MonitorApp):
        def poll_now(self) -> None:
            if not first_read:  # what was on screen when the log was first read
                first_read.append((type(self.screen).__name__, self.state.events,
                                   str(self.screen.query_one("#topbar").content)))
            super().poll_now()

        def on_polled(self, message: monitor_app.Polled) -> None:
            super().on_polled(message)
            seen.append((self.state.events, str(self.screen.query_one("#topbar").content)))

    app = Recording(run_dir, interval=60.0, clock=lambda: FROZEN_NOW)

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await until(pilot, lambda: app.loaded)
            table = app.screen.query_one(TaskList)
            assert table.rows == TASKS and app.shown_events == 78
            assert table.cells["builtin/1/2_ReLU"][2:4] == (("5", ""), ("4", "green"))

    asyncio.run(main())
    name, events, top = first_read[0]
    assert name == "TasksScreen" and events == 0 and "reading the log 0.0/0.0 MB" in top
    counts = [events for events, _ in seen]
    assert len(seen) > 3 and counts == sorted(counts) and counts[-1] == 78
    assert 0 < counts[0] < 78 and "reading the log" in seen[0][1]
    assert "reading the log" not in seen[-1][1]


# -- refresh costs ------------------------------------------------------------------------------
def _count_layouts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The screens laid out (whole: Textual lays out a screen, not a widget) from now on."""
    layouts: list[str] = []
    original = Screen._refresh_layout

    def counted(self: Screen, *args: object, **kwargs: object) -> None:
        layouts.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    return layouts


def test_a_poll_that_changes_figures_only_lays_nothing_out(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """New figures in the top line, the panels, the table and the drill-down's header are
    repainted in place; the screen is laid out again only when the tree gets new lines (and
    the table under the drill-down is not drawn until it is back on top)."""
    lines = fixture_lines()
    log = run_dir / "events.jsonl"
    log.write_text("".join(lines[:41]))
    app = make_app(run_dir)

    async def poll(pilot: Pilot, upto: int) -> None:
        with open(log, "a") as handle:
            handle.write("".join(lines[app.state.last_seq:upto]))
        polls = app.polls
        app.poll_now()
        await until(pilot, lambda: app.polls > polls and app.state.last_seq == upto)
        await pilot.pause()

    async def script(pilot: Pilot) -> None:
        table = app.screen.query_one(TaskList)
        await pilot.pause()
        layouts = _count_layouts(monkeypatch)
        await poll(pilot, 44)  # evals and a call of known steps: counts change
        assert table.cells["builtin/1/5_Conv2d"][2][0] == "3"
        assert f"done {app.state.evaluations} " in str(app.screen.query_one("#evals").content)
        assert layouts == []
        await pilot.press("end", "enter")  # the Conv2d task
        detail = app.screen
        assert isinstance(detail, DetailScreen)
        await pilot.pause()
        layouts.clear()
        await poll(pilot, 45)  # a call of a new step: a new line in the tree
        assert layouts == ["DetailScreen"]
        layouts.clear()
        await poll(pilot, 46)  # its evaluation: relabelled in place
        assert "4 candidates" in str(detail.query_one("#taskbar").content)
        assert layouts == []
        await pilot.press("escape")  # the table catches up
        assert table.cells["builtin/1/5_Conv2d"][2][0] == "4"

    drive(app, script)


def test_the_tree_adds_a_polls_nodes_at_once_and_measures_them_as_textual_does(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    invalidated: list[int] = []
    original = Tree._invalidate

    def counted(self: Tree) -> None:
        invalidated.append(1)
        original(self)

    monkeypatch.setattr(Tree, "_invalidate", counted)
    app = make_app(run_dir)

    async def script(pilot: Pilot) -> None:
        await pilot.press("down", "enter")
        tree = app.screen.query_one(StepTree)
        await pilot.pause()
        tree.start_over()
        invalidated.clear()
        tree.sync(app.state.tasks["builtin/1/2_ReLU"])
        assert len(tree.by_data) == 12 and len(invalidated) == 1  # 12 nodes, one invalidation
        await pilot.pause()
        for node in tree.by_data.values():
            assert tree.get_label_width(node) == Tree.get_label_width(tree, node)
        tree.root.children[1].collapse()
        assert tree.get_label_width(tree.root.children[1]) == \
            Tree.get_label_width(tree, tree.root.children[1])

    drive(app, script)


def test_the_folded_state_is_frozen_for_the_cycle_collector(
        run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen: list[int] = []
    follower = RunFollower(run_dir)
    monkeypatch.setattr(monitor_state, "FREEZE_EVENTS", 30)
    monkeypatch.setattr(monitor_state.gc, "freeze", lambda: frozen.append(follower.state.events))
    for _ in range(10):
        follower.poll(2000)  # about 6 events a poll
    assert frozen and all(b - a >= 30 for a, b in zip([0, *frozen[:-1]], frozen, strict=True))
    assert follower.state.events == 78


def test_a_dropped_state_is_freed_without_the_cycle_collector(run_dir: Path) -> None:
    """What the monitor folds is frozen for the cycle collector (gc.freeze): so a state
    must hold no reference cycle, or a replaced log's state would never be freed."""
    follower = RunFollower(run_dir)
    follower.poll()
    ref = weakref.ref(follower.state)
    enabled = gc.isenabled()
    gc.disable()
    try:
        follower.state = RunState()
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


# -- snapshots ----------------------------------------------------------------------------------
def _snapshot(keys: tuple[str, ...] = ()) -> Callable:
    async def run_before(pilot: Pilot) -> None:
        await loaded(pilot)
        await pilot.press(*keys)
        await pilot.pause()
        await pilot.pause()
    return run_before


def test_snapshot_tasks_80x24(run_dir: Path, snap_compare: Callable) -> None:
    assert snap_compare(make_app(run_dir), terminal_size=(80, 24), run_before=_snapshot())


def test_snapshot_tasks_120x40(run_dir: Path, snap_compare: Callable) -> None:
    assert snap_compare(make_app(run_dir), terminal_size=(120, 40), run_before=_snapshot())


def test_snapshot_drill_down_80x24(run_dir: Path, snap_compare: Callable) -> None:
    assert snap_compare(make_app(run_dir), terminal_size=(80, 24),
                        run_before=_snapshot(("down", "enter")))


def test_snapshot_drill_down_eval_120x40(run_dir: Path, snap_compare: Callable) -> None:
    assert snap_compare(make_app(run_dir), terminal_size=(120, 40),
                        run_before=_snapshot(("down", "enter", "up", "2")))


# -- the command -------------------------------------------------------------------------------
def test_monitor_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    result = run_kbtool("monitor", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"kbtool: error: {tmp_path} is not a kbtool run directory (no events.jsonl or "
        f"config.yaml)"]


def test_queue_panel_shows_the_runs_workers(tmp_path: Path) -> None:
    from kbtool.task.model import Task
    from kbtool.workers.jobqueue import Job, Queue, new_job_id

    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    queue = Queue(tmp_path / "in", tmp_path / "out")
    queue.submit(Job(id=new_job_id(), task=Task(id="t", source="t", name="t")))
    queue.heartbeat("w1", {"started": time.time(), "done": 3, "failed": 1})
    config = run / "config.yaml"
    config.write_text(config.read_text() + f"worker_input_dir: {tmp_path / 'in'}\n"
                      f"worker_output_dir: {tmp_path / 'out'}\n")
    follower = RunFollower(run)
    follower.poll()
    line = str(queue_line(follower.queue))
    assert "1 pending" in line and "workers 1 alive" in line and "1 not ok" in line
