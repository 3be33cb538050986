"""An evaluation leaves nothing in the temporary directory: not its children's scratch, not
the cache folder torch makes as it is imported (``torchinductor_<user>``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import SOLUTIONS, run_kbtool


@pytest.mark.parametrize(("settings", "baselines"), [
    (["--mode", "eager", "baselines=[eager,compile]"], ["compile", "eager"]),
    (["--mode", "compile"], ["compile"])], ids=["eager", "compile"])
def test_an_evaluation_leaves_nothing_in_the_temp_dir(tmp_path: Path, settings: list[str],
                                                      baselines: list[str]) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = run_kbtool("eval", "builtin/1/2_ReLU", "--solution",
                      str(SOLUTIONS / "level1_2_ReLU_torch.py"), "--json", "--device", "cpu",
                      "--config-profile", "quick", *settings, cwd=tmp_path,
                      env={"TMPDIR": str(temp), "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in temp.iterdir()) == []
    result = json.loads(proc.stdout)
    assert result["status"] == "ok", result
    assert sorted(result["speedups"]) == baselines
