"""Task sources, ids, size overrides and the memory check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kbtool.config import load_config
from kbtool.errors import KbtoolError
from kbtool.evaluation.evaluator import Evaluator
from kbtool.task import catalog
from kbtool.task.model import TaskRefused
from kbtool_plugins.kernelbench.problem import apply_sizes, size_constants
from kbtool_plugins.kernelbench.settings import KernelBenchSettings
from tests.helpers import REPO, make_config, run_kbtool

HUGE = '''"""A KernelBench-sized problem: 4096 x 393216 floats (6.4 GB)."""
import torch
import torch.nn as nn

batch_size = 4096
dim = 393216


class Model(nn.Module):
    def forward(self, x):
        return torch.relu(x)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
'''


def test_builtin_suite() -> None:
    tasks = catalog.select(load_config({}))
    assert len(tasks) >= 8
    assert {t.level for t in tasks} == {1, 2, 3}
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.id == f"builtin/{task.level}/{task.path.stem}"
        assert task.number is not None and task.kind == "kernelbench"


def test_every_builtin_task_loads_and_fits(evaluator: Evaluator) -> None:
    for task in catalog.select(evaluator.config):
        info = evaluator.inspect(task)
        assert info["dtype"] == "float32" and info["input_bytes"] > 0, task.id
        assert info["sizes"], task.id


def test_selection_by_level_and_range() -> None:
    config = load_config({"level": 1, "task_start": 2, "task_end": 4})
    assert [t.number for t in catalog.select(config)] == [2, 3, 4]
    assert all(t.level == 1 for t in catalog.select(config))


@pytest.mark.parametrize("source", ["builtin", "repo", "perf"])
def test_max_items_keeps_the_first_of_a_selection(source: str) -> None:
    everything = catalog.select(load_config({"source": source}))
    assert len(everything) > 3
    first = catalog.select(load_config({"source": source, "max_items": 3}))
    assert [t.id for t in first] == [t.id for t in everything[:3]]
    ranged = load_config({"source": source, "task_start": 2, "max_items": 2})
    assert [t.number for t in catalog.select(ranged)] == \
        [t.number for t in everything if t.number is not None and t.number >= 2][:2]


def test_max_items_on_the_command_line() -> None:
    listed = run_kbtool("tasks", "list", "repo", "max_items=4")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 4
    zero = run_kbtool("tasks", "list", "max_items=0")
    assert zero.returncode == 2 and "max_items" in zero.stderr


@pytest.fixture()
def kernelbench_checkout(tmp_path: Path) -> Path:
    """A checkout shaped like KernelBench: KernelBench/level1..4 plus an extra level."""
    root = tmp_path / "KernelBench-repo"
    for level in ("level1", "level2", "level3", "level4", "level7"):
        folder = root / "KernelBench" / level
        folder.mkdir(parents=True)
        for src in sorted((REPO / "tasks" / "kernelbench" / "level1").glob("*.py"))[:3]:
            shutil.copy(src, folder / src.name)
    (root / "KernelBench" / "level1" / "__init__.py").write_text("")
    return root


def test_kernelbench_source(kernelbench_checkout: Path) -> None:
    for path in (kernelbench_checkout, kernelbench_checkout / "KernelBench"):
        tasks = catalog.select(load_config({"source": "kernelbench", "kernelbench_path": str(path)}))
        assert {t.level for t in tasks} == {1, 2, 3, 4, 7}
        assert len(tasks) == 15  # __init__.py is no problem
    config = load_config({"source": "kernelbench", "kernelbench_path": str(kernelbench_checkout),
                          "level": 7, "task_start": 2, "task_end": 2})
    assert [t.id for t in catalog.select(config)] == ["kernelbench/7/2_ReLU"]


def test_kernelbench_source_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERNELBENCH_PATH", raising=False)
    with pytest.raises(KbtoolError, match="kernelbench_path"):
        catalog.select(load_config({"source": "kernelbench"}))
    with pytest.raises(KbtoolError, match="not a KernelBench checkout"):
        catalog.select(load_config({"source": "kernelbench", "kernelbench_path": str(tmp_path)}))


def test_dir_source_and_file_paths(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    shutil.copy(REPO / "tasks" / "kernelbench" / "level1" / "2_ReLU.py", tmp_path / "mine" / "relu.py")
    tasks = catalog.select(load_config({"source": "dir", "tasks_dir": str(tmp_path)}))
    assert [t.id for t in tasks] == ["dir/mine/relu"]
    task = catalog.resolve(str(tmp_path / "mine" / "relu.py"), load_config({}))
    assert task.id == "file/relu" and task.path == (tmp_path / "mine" / "relu.py").resolve()


def test_resolve_ids() -> None:
    config = load_config({})
    assert catalog.resolve("builtin/1/2", config).id == "builtin/1/2_ReLU"
    assert catalog.resolve("builtin/1/2_ReLU", config).name == "2_ReLU"
    with pytest.raises(KbtoolError, match="ambiguous"):
        catalog.resolve("builtin/1", config)
    with pytest.raises(KbtoolError, match="did you mean 'builtin/1/2_ReLU'"):
        catalog.resolve("builtin/1/2_Relu", config)
    with pytest.raises(KbtoolError, match="unknown task source 'bultin'"):
        catalog.resolve("bultin/1/2", config)
    with pytest.raises(KbtoolError, match="problem file not found"):
        catalog.resolve("nowhere/problem.py", config)


def test_size_overrides() -> None:
    source = (REPO / "tasks" / "kernelbench" / "level1" / "1_Matmul.py").read_text()
    constants = size_constants(source)
    assert constants and all(isinstance(v, (int, float)) for v in constants.values())
    name = next(iter(constants))
    changed = apply_sizes(source, {name: 7})
    assert size_constants(changed)[name] == 7
    with pytest.raises(TaskRefused, match="no size constant 'nope'"):
        apply_sizes(source, {"nope": 1})
    with pytest.raises(TaskRefused, match="must be a number"):
        apply_sizes(source, {name: "big"})
    for degenerate in (0, -5):  # empty tensors compare equal to anything
        with pytest.raises(TaskRefused, match=f"size {name}={degenerate} must be positive"):
            apply_sizes(source, {name: degenerate})


@pytest.mark.parametrize("args", [["tasks", "show", "builtin/1/1", "--size", "N=-5"],
                                  ["eval", "builtin/1/1", "--solution", "SOLUTION", "--size",
                                   "N=0", "--device", "cpu"],
                                  ["eval", "level=1", "--solutions", "baseline", "sizes.Nx=4"]])
def test_degenerate_and_unknown_sizes_are_one_line_usage_errors(args: list[str],
                                                                tmp_path: Path) -> None:
    """A zero, negative or misspelled size is refused before anything runs: one line, exit 2
    (a wrong matmul once came back ``ok`` at N=0: empty outputs compare equal)."""
    wrong = tmp_path / "wrong.py"
    wrong.write_text("import torch\nclass ModelNew(torch.nn.Module):\n"
                     "    def forward(self, a, b):\n        return a\n")
    proc = run_kbtool(*[str(wrong) if a == "SOLUTION" else a for a in args], cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kbtool: error:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_oversized_task_is_refused_before_allocating(tmp_path: Path) -> None:
    problem = tmp_path / "huge.py"
    problem.write_text(HUGE)
    with Evaluator(make_config(tmp_path, device="cpu", memory_limit_mb=4096)) as ev:
        task = catalog.resolve(str(problem), ev.config)
        with pytest.raises(KbtoolError, match=r"needs about .* GB .*--size NAME=VALUE .*dim=393216"):
            ev.inspect(task)
        small = ev.config.with_section(KernelBenchSettings(sizes={"dim": 1024}))
        info = ev.inspect(task, small)
        assert info["sizes"]["dim"] == 1024 and info["input_bytes"] == 4096 * 1024 * 4


def test_tasks_cli(tmp_path: Path) -> None:
    listed = run_kbtool("tasks", "list")
    assert listed.returncode == 0
    assert "builtin/1/1_Matmul" in listed.stdout.splitlines()
    level2 = run_kbtool("tasks", "list", "builtin", "level=2").stdout.splitlines()
    assert level2 and all(line.startswith("builtin/2/") for line in level2)
    shown = run_kbtool("tasks", "show", "builtin/1/2", "--json", "--size", "batch_size=4")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["id"] == "builtin/1/2_ReLU" and data["sizes"]["batch_size"] == 4
    problem = tmp_path / "huge.py"
    problem.write_text(HUGE)
    refused = run_kbtool("tasks", "show", str(problem))
    assert refused.returncode == 2 and "needs about" in refused.stderr
    assert "Traceback" not in refused.stderr
    unknown = run_kbtool("tasks", "list", "nosuch")
    assert unknown.returncode == 2 and "unknown task source" in unknown.stderr
