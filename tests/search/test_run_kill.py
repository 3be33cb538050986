"""SIGKILL a search that talks to a real OpenAI-compatible server, resume it, and check
that the server is never asked again for an answer the run had recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from kbtool.runs.store import read_events
from tests.helpers.llm_server import ServerProcess

REPLY = ("Ideas:\n1. clamp instead of relu\n2. avoid a temporary\n3. work in place on the "
         "output\n\n```python\nimport torch\nimport torch.nn as nn\n\n"
         "class ModelNew(nn.Module):\n    def forward(self, x):\n"
         "        return torch.clamp_min(x, 0.0)\n```\n")


def _messages(body: dict) -> str:
    return json.dumps([(m["role"], m["content"]) for m in body["messages"]])


def _recorded(run_dir: Path) -> Counter[str]:
    """How many calls the run has recorded, by their messages."""
    return Counter(_messages({"messages": [{"role": r, "content": c} for r, c in
                                           json.loads(p.read_text())["request"]["messages"]]})
                   for p in (run_dir / "calls").glob("*.json"))


def _kbtool(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kbtool", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # its own group: kill it with its zygote


def test_sigkill_then_resume_repeats_no_completed_call(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with ServerProcess(tmp_path / "server", replies=[REPLY], latency=0.3) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test",
               "XDG_CACHE_HOME": str(tmp_path / "cache")}
        args = ["run", "builtin/1/2", "builtin/1/7", f"run_dir={run_dir}",
                "model_name=openai/test-model", "num_samples=3", "num_phases=2",
                "max_fix_attempts=1", "num_workers=2", "--config-profile", "quick",
                "baselines=[eager]"]
        proc = _kbtool(args, env)
        deadline = time.monotonic() + 120
        while len(server.completed()) < 5:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run made too few calls"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        recorded = _recorded(run_dir)
        assert recorded, "nothing was recorded before the kill"
        assert not (run_dir / "summary.json").exists()

        resume_start = time.time()
        resumed = _kbtool(["run", "--resume", str(run_dir)], env)
        _, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        after = Counter(_messages(r["body"]) for r in server.completed()
                        if r["start"] >= resume_start)
        assert after, "the resumed run had work left to do"
        # Identical prompts can be distinct calls (another phase, another agent), so count:
        # after the resume the server may only see the calls that were not recorded before.
        final = _recorded(run_dir)
        for messages, count in after.items():
            assert count <= final[messages] - recorded[messages], "a recorded call was repeated"

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["totals"]["cached_calls"] >= sum(recorded.values())
    events = read_events(run_dir)
    samples = [e["sample"] for e in events if e["type"] == "llm_call"]
    assert len(samples) == len(set(samples))
    assert summary["tasks"]["builtin/1/2_ReLU"]["correct"]  # the reply only fits ReLU
    assert not summary["tasks"]["builtin/1/7_GELU"]["correct"]
