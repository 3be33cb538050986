"""KernelBench problems as the real set writes them: size constants as expressions, sizes
that must reach the candidate too, tracebacks that point at the right line, problems too
big for the machine (shrink=auto), models that do not build on the meta device, huge
intermediates, CUDA inputs on a CPU machine, missing packages, large outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kbtool.errors import KbtoolError
from kbtool.evaluation.evaluator import Evaluator
from kbtool.task import catalog
from kbtool_plugins.kernelbench import compare
from kbtool_plugins.kernelbench.compare import compare_outputs
from kbtool_plugins.kernelbench.problem import apply_sizes, derived_constants, size_constants
from kbtool_plugins.kernelbench.settings import DEFAULT_TOLERANCES, KernelBenchSettings
from tests.helpers import make_config, run_kbtool

MATMUL = '''\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, a, b):
        return a @ b


M = 64 * 2
K = 32 * 2  # written as KernelBench writes them
N = K // 2


def get_inputs():
    return [torch.randn(M, K), torch.randn(K, N)]


def get_init_inputs():
    return []
'''

# A candidate that copies the problem's constants, as most do, and fails on line 9 when
# the shapes do not match.
COPYING_CANDIDATE = '''\
import torch
import torch.nn as nn

M = 64 * 2
K = 32 * 2
N = K // 2


class ModelNew(nn.Module):
    def forward(self, a, b):
        assert a.shape == (M, K), f"wrong shape {tuple(a.shape)}"  # line 11
        return torch.mm(a, b)
'''


def problem(tmp_path: Path, text: str, name: str = "problem.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_expression_constants_are_sizes_and_keep_their_lines() -> None:
    assert size_constants(MATMUL) == {"M": 128, "K": 64, "N": 32}
    changed = apply_sizes(MATMUL, {"K": 16})
    assert size_constants(changed) == {"M": 128, "K": 16, "N": 8}  # N follows K
    assert changed.count("\n") == MATMUL.count("\n")
    assert changed.splitlines()[10] == "K = 16  # written as KernelBench writes them"


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Evaluator:
    with Evaluator(make_config(tmp_path_factory.mktemp("kb"), device="cpu")) as ev:
        yield ev


def test_sizes_reach_the_candidate_and_tracebacks_keep_lines(evaluator: Evaluator,
                                                             tmp_path: Path) -> None:
    task = catalog.resolve(str(problem(tmp_path, MATMUL)), evaluator.config)
    candidate = problem(tmp_path, COPYING_CANDIDATE, "candidate.py")
    config = evaluator.config.with_section(KernelBenchSettings(sizes={"M": 16}))
    result = evaluator.evaluate(task, candidate, config)
    assert result.status.value == "ok", result.error
    assert result.model_extra["sizes"] == {"M": 16, "K": 64, "N": 32}
    # A candidate whose own constant is not overridden fails at its real line number.
    broken = problem(tmp_path, COPYING_CANDIDATE.replace("M = 64 * 2", "M_ = 64 * 2")
                     .replace("(M, K)", "(128, K)"), "broken.py")
    result = evaluator.evaluate(task, broken, config)
    assert result.status.value == "runtime_error"
    assert f'File "{broken}", line 11' in result.error and "wrong shape (16, 64)" in result.error


HUGE = '''\
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.norm = nn.BatchNorm1d(features)

    def forward(self, x):
        return torch.relu(self.norm(x))


batch_size = 4096
features = 393216  # 6.4 GB of inputs


def get_inputs():
    return [torch.randn(batch_size, features)]


def get_init_inputs():
    return [features]
'''


def test_shrink_auto_scales_a_problem_until_it_fits(evaluator: Evaluator, tmp_path: Path) -> None:
    task = catalog.resolve(str(problem(tmp_path, HUGE)), evaluator.config)
    with pytest.raises(KbtoolError, match="shrink it with shrink=auto"):
        evaluator.inspect(task)
    shrink = evaluator.config.with_section(KernelBenchSettings(shrink="auto"))
    info = evaluator.inspect(task, shrink)
    sizes = info["settings"]["kernelbench"]["sizes"]
    assert 2 <= sizes["batch_size"] < 4096  # batch dimensions go first
    assert sizes.get("features", 393216) <= 393216
    assert info["needed_bytes"] <= 512 * 2**20
    candidate = problem(tmp_path, "from problem import *\n", "c.py")
    candidate.write_text(HUGE.replace("class Model", "class ModelNew"))
    result = evaluator.evaluate(task, candidate, shrink)
    assert result.status.value == "ok", result.error
    assert result.model_extra["shrunk"]["batch_size"][0] == 4096
    assert result.model_extra["sizes"]["batch_size"] == sizes["batch_size"]


# As KernelBench's level-1 losses write them (HingeLoss): the target broadcasts against the
# last dimension, written as a tuple equal to the batch: the two must shrink together.
BROADCAST_LOSS = '''\
import torch
import torch.nn as nn


class Model(nn.Module):
    def forward(self, scores, labels):
        return torch.relu(0.5 - scores * labels).square().mean()


batch_size = 32768
input_shape = (32768,)  # 4.3 GB of scores
dim = 1


def get_inputs():
    return [torch.rand(batch_size, *input_shape), torch.randint(0, 2, (batch_size,)).float() * 2 - 1]


def get_init_inputs():
    return []
'''

SHAPED = '''\
channels = 64
bias_shape = (channels, 1, 1)
pair = [4096, 2 * 8]
width = pair[1] * 2
shape = (1, 2)
shape = "none"
'''


def test_tuple_constants_are_sizes_by_element() -> None:
    assert size_constants(BROADCAST_LOSS) == {"batch_size": 32768, "input_shape[0]": 32768,
                                              "dim": 1}
    changed = apply_sizes(BROADCAST_LOSS, {"input_shape[0]": 512})
    assert "input_shape = (512,)  # 4.3 GB of scores\n" in changed
    # Elements computed from other constants follow them; a later assignment wins.
    assert size_constants(SHAPED) == {"channels": 64, "bias_shape[0]": 64, "bias_shape[1]": 1,
                                      "bias_shape[2]": 1, "pair[0]": 4096, "pair[1]": 16,
                                      "width": 32}
    assert derived_constants(SHAPED) == {"bias_shape[0]", "width"}
    assert size_constants(apply_sizes(SHAPED, {"channels": 8}))["bias_shape[0]"] == 8


def test_shrink_auto_shrinks_a_shape_with_the_batch_it_broadcasts_against(
        evaluator: Evaluator, tmp_path: Path) -> None:
    task = catalog.resolve(str(problem(tmp_path, BROADCAST_LOSS, "loss.py")), evaluator.config)
    shrink = evaluator.config.with_section(KernelBenchSettings(shrink="auto", shrink_max_mb=64))
    info = evaluator.inspect(task, shrink)
    sizes = info["settings"]["kernelbench"]["sizes"]
    assert sizes["batch_size"] == sizes["input_shape[0]"] < 32768
    assert info["sizes"]["dim"] == 1  # a small constant: not a size to scale
    assert info["needed_bytes"] <= 64 * 2**20
    candidate = problem(tmp_path, BROADCAST_LOSS.replace("class Model", "class ModelNew"),
                        "c.py")
    result = evaluator.evaluate(task, candidate, shrink)
    assert result.status.value == "ok", result.error
    assert result.model_extra["shrunk"]["input_shape[0]"] == [32768, sizes["batch_size"]]
    # The size is one a user can give too.
    shown = run_kbtool("tasks", "show", str(tmp_path / "loss.py"), "--json", "--size",
                       "batch_size=64", "--size", "input_shape[0]=64")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["sizes"]["input_shape[0]"] == 64


def test_a_model_that_needs_real_tensors_to_build_is_estimated(evaluator: Evaluator,
                                                               tmp_path: Path) -> None:
    """Swin-style models call .item() in __init__: no meta build; the estimate still works."""
    text = MATMUL.replace('''    def forward(self, a, b):''', '''    def __init__(self):
        super().__init__()
        self.rates = [x.item() for x in torch.linspace(0, 1, 4)]

    def forward(self, a, b):''')
    task = catalog.resolve(str(problem(tmp_path, text)), evaluator.config)
    info = evaluator.inspect(task)
    assert info["input_bytes"] == (128 * 64 + 64 * 32) * 4


def test_a_huge_intermediate_is_counted(evaluator: Evaluator, tmp_path: Path) -> None:
    """An attention matrix far bigger than inputs and outputs is refused before running."""
    text = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def forward(self, q):
            scores = q @ q.transpose(0, 1)  # n x n
            return (scores.softmax(dim=-1) @ q).sum(dim=0)


    n = 60000
    d = 8


    def get_inputs():
        return [torch.randn(n, d)]


    def get_init_inputs():
        return []
    '''
    task = catalog.resolve(str(problem(tmp_path, text)), evaluator.config)
    with pytest.raises(KbtoolError, match=r"largest intermediate 14\.4\d* GB"):
        evaluator.inspect(task)


def test_cuda_inputs_on_a_cpu_machine(evaluator: Evaluator, tmp_path: Path) -> None:
    text = MATMUL.replace("return [torch.randn(M, K), torch.randn(K, N)]",
                          "return [torch.randn(M, K).cuda(), torch.randn(K, N, device='cuda')]")
    task = catalog.resolve(str(problem(tmp_path, text)), evaluator.config)
    with pytest.raises(KbtoolError, match=r"puts its tensors on CUDA.*cuda_inputs=cpu") as info:
        evaluator.inspect(task)
    assert "\n" not in str(info.value)
    mapped = evaluator.config.with_section(KernelBenchSettings(cuda_inputs="cpu"))
    candidate = problem(tmp_path, MATMUL.replace("class Model", "class ModelNew"), "c.py")
    assert evaluator.evaluate(task, candidate, mapped).status.value == "ok"


def test_a_missing_package_is_named(evaluator: Evaluator, tmp_path: Path) -> None:
    text = "from transformers_that_is_not_here import AutoConfig\n" + MATMUL
    task = catalog.resolve(str(problem(tmp_path, text)), evaluator.config)
    with pytest.raises(KbtoolError, match=r"needs the Python package "
                                          r"'transformers_that_is_not_here'.*pip install "
                                          r"transformers_that_is_not_here\)"):
        evaluator.inspect(task)
    # One of KernelBench's own dependencies (as where it is not installed): the extra.
    text = "raise ModuleNotFoundError(\"No module named 'einops'\", name='einops')\n" + MATMUL
    task = catalog.resolve(str(problem(tmp_path, text, "einops_missing.py")), evaluator.config)
    with pytest.raises(KbtoolError, match=r"'einops'.*pip install 'kbtool\[kernelbench\]'"):
        evaluator.inspect(task)


def test_comparison_goes_by_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the chunk size, the verdict and the worst difference are the same."""
    import torch

    ref = torch.randn(10_007)
    off = ref.clone()
    off[-1] += 1.0  # wrong only in the last chunk
    flat = torch.full_like(ref, 0.0)
    verdicts = []
    for chunk in (1 << 21, 1000, 7):
        monkeypatch.setattr(compare, "CHUNK", chunk)
        verdicts.append((compare_outputs(ref, ref.clone(), DEFAULT_TOLERANCES),
                         compare_outputs(ref, off, DEFAULT_TOLERANCES),
                         compare_outputs(ref * 1e-9, flat, DEFAULT_TOLERANCES)))
    for same, wrong, tiny in verdicts:
        assert same.incorrect is None and same.slipped is None and same.max_abs_diff == [0.0]
        assert "1 of 10007 values differ" in wrong.incorrect
        assert wrong.max_abs_diff[0] == pytest.approx(1.0, rel=1e-5)
        assert tiny.incorrect is None and "constant" in tiny.slipped


def test_kernelbench_path_needs_the_kernelbench_source(tmp_path: Path) -> None:
    proc = run_kbtool("eval", "level=1", "--solutions", "baseline",
                      f"kernelbench_path={tmp_path}", "--config-profile", "quick")
    assert proc.returncode == 2
    assert "add source=kernelbench" in proc.stderr and "Traceback" not in proc.stderr


def test_started_beside_a_folder_named_kbtool(tmp_path: Path) -> None:
    """The parent of a checkout holds a folder named kbtool: the installed command and the
    processes it starts must not import it (``python -m`` itself would: Python's rule)."""
    (tmp_path / "kbtool").mkdir()
    (tmp_path / "kbtool" / "README.md").write_text("a checkout\n")
    script = Path(sys.executable).with_name("kbtool")
    proc = subprocess.run([str(script), "tasks", "show", "builtin/1/2", "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["sizes"]


# KernelBench's own dependencies (pip install 'kbtool[kernelbench]'), as its problems use
# them: level 3's Mamba blocks rearrange with einops, level 4 builds transformers models
# (here from a configuration made in the file: nothing to download).
EINOPS_BLOCKS = '''\
import torch
import torch.nn as nn
from einops import rearrange


class Model(nn.Module):
    def __init__(self, block_len):
        super().__init__()
        self.block_len = block_len

    def forward(self, x):
        blocks = rearrange(x, "b (c l) h -> b h c l", l=self.block_len)
        return rearrange(torch.cumsum(blocks, dim=-1), "b h c l -> b (c l) h")


batch_size = 4
seq_length = 64
n_heads = 4
block_len = 16


def get_inputs():
    return [torch.randn(batch_size, seq_length, n_heads)]


def get_init_inputs():
    return [block_len]
'''

TINY_LM = '''\
import torch
from transformers import AutoModelForCausalLM, GPT2Config


class Model(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.model = AutoModelForCausalLM.from_config(config)

    def forward(self, x):
        return self.model(x).logits


config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=128, n_positions=64,
                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
batch_size = 2
sequence_length = 16


def get_inputs():
    return [torch.randint(0, 128, (batch_size, sequence_length))]


def get_init_inputs():
    return [config]
'''


@pytest.mark.parametrize("text", [EINOPS_BLOCKS, TINY_LM], ids=["einops", "transformers"])
def test_problems_that_import_kernelbench_dependencies_run(evaluator: Evaluator,
                                                           tmp_path: Path, text: str) -> None:
    task = catalog.resolve(str(problem(tmp_path, text)), evaluator.config)
    candidate = problem(tmp_path, text.replace("class Model(", "class ModelNew("), "c.py")
    result = evaluator.evaluate(task, candidate)
    assert result.status.value == "ok", result.error
