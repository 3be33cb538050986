"""`kbtool serve` and `kbtool run ... autorun=true` with a real OpenAI-compatible server as the
``serve_command`` (tests/helpers/llm_server.py, which answers ``GET /health`` as vLLM does):
real processes, real ports, real signals."""

from __future__ import annotations

import json
import os
import queue
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kbtool.config import load_config
from kbtool.errors import RunError, UsageError
from kbtool.llm.model import ChatRequest
from kbtool.llm.serve import ModelServers, port_is_free, serve_argv
from tests.helpers import REPO, TESTS, run_kbtool

LLM_SERVER = TESTS / "helpers" / "llm_server.py"
PY = sys.executable


def free_base_port(count: int) -> int:
    """A port p with p .. p+count-1 free on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise AssertionError("no free ports")


def server_command(tmp_path: Path, before: str = "", args: str = "") -> str:
    """A serve_command: a shell that records what it was given, then becomes the server."""
    return (f"sh -c '{before} echo $CUDA_VISIBLE_DEVICES > {tmp_path}/cvd{{gpu}}; "
            f"echo $$ > {tmp_path}/pid{{gpu}}; "
            f"exec {PY} {LLM_SERVER} --port {{port}} --log {tmp_path}/requests{{gpu}}.jsonl {args}'")


def config_file(tmp_path: Path, command: str, **more: object) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump({"serve_command": command, **more}))
    return path


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"  # exited; its parent has not reaped it yet


def wait_until(check, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def read_until(proc: subprocess.Popen[str], text: str, timeout: float = 30.0) -> str:
    """stdout of ``proc`` up to the first line holding ``text``."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in iter(proc.stdout.readline, "")]
                     + [lines.put("")], daemon=True).start()  # type: ignore[union-attr]
    seen = ""
    while text not in seen:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {text!r} in {timeout} s; stdout so far: {seen!r}") from None
        if not line:
            raise AssertionError(f"exited {proc.wait()} before {text!r}: {seen!r} "
                                 f"{proc.stderr.read() if proc.stderr else ''}")
        seen += line
    return seen


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`kbtool serve test-model gpu_ids=0,1` in a subprocess, up and healthy."""
    base = free_base_port(2)
    cfg = config_file(tmp_path, server_command(tmp_path))
    proc = subprocess.Popen([PY, "-m", "kbtool", "serve", "test-model", "gpu_ids=0,1",
                             f"base_port={base}", f"data_dir={tmp_path}", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        read_until(proc, "serving test-model")
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_argv_fills_the_template() -> None:
    assert serve_argv("vllm serve {model} --host {host} --port {port}", "Qwen/Q-7B", 1, 3118) == \
        ["vllm", "serve", "Qwen/Q-7B", "--host", "127.0.0.1", "--port", "3118"]
    assert serve_argv("run '--json={{\"gpu\": {gpu}}}'", "m", 2, 1) == ['run', '--json={"gpu": 2}']
    with pytest.raises(Exception, match="bad placeholder 'mdoel'"):
        serve_argv("vllm serve {mdoel}", "m", 0, 1)
    assert load_config({"gpu_ids": "0,1"}).gpu_ids == [0, 1]
    assert load_config({"gpu_ids": 3}).gpu_ids == [3]


def test_serve_one_server_per_gpu_then_sigterm_stops_them(
        serving: tuple[subprocess.Popen[str], int], tmp_path: Path) -> None:
    proc, base = serving
    for gpu in (0, 1):
        assert httpx.get(f"http://127.0.0.1:{base + gpu}/health").status_code == 200
        assert (tmp_path / f"cvd{gpu}").read_text().strip() == str(gpu)
        assert (tmp_path / "serve" / f"gpu{gpu}.log").is_file()
    reply = httpx.post(f"http://127.0.0.1:{base + 1}/v1/chat/completions",
                       headers={"Authorization": "Bearer x"},
                       json={"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200
    pids = [int((tmp_path / f"pid{gpu}").read_text()) for gpu in (0, 1)]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, proc.stderr.read() if proc.stderr else ""
    assert all(gone(pid) for pid in pids)
    assert port_is_free(base) and port_is_free(base + 1)


def test_servers_die_with_a_killed_kbtool(serving: tuple[subprocess.Popen[str], int],
                                          tmp_path: Path) -> None:
    """SIGKILL leaves kbtool no chance to stop them: the kernel's parent-death signal does."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the parent-death signal is Linux's")
    proc, _ = serving
    pids = [int((tmp_path / f"pid{gpu}").read_text()) for gpu in (0, 1)]
    proc.kill()
    proc.wait()
    assert wait_until(lambda: all(gone(pid) for pid in pids)), "servers outlived kbtool"


def test_stop_kills_the_whole_group_and_what_ignores_sigterm(tmp_path: Path) -> None:
    """A server's child processes go with it; one that ignores SIGTERM gets SIGKILL."""
    stubborn = tmp_path / "stubborn.py"
    stubborn.write_text(
        "import runpy, signal, sys\n"
        f"sys.argv = [{str(LLM_SERVER)!r}, '--port', sys.argv[1]]\n"
        "real = signal.signal\n"
        "signal.signal = lambda sig, handler: real(sig, signal.SIG_IGN if sig == signal.SIGTERM"
        " else handler)\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    command = f"sh -c 'sleep 300 & echo $! > {tmp_path}/child{{gpu}}; exec {PY} {stubborn} {{port}}'"
    servers = ModelServers("m", [0], free_base_port(1), command, tmp_path / "logs", 20.0)
    servers.start()
    child = int((tmp_path / "child0").read_text())
    server = servers.servers[0]
    assert server.proc is not None and not gone(child)
    started = time.monotonic()
    servers.stop(grace_s=0.5)
    assert time.monotonic() - started < 10
    assert server.proc.returncode == -signal.SIGKILL
    assert wait_until(lambda: gone(child), 5)


def test_router_keeps_each_task_on_one_server(tmp_path: Path) -> None:
    """Tasks go round the servers in the run's order, every call of a task to the same one."""
    config = load_config({"model_name": "local/test-model", "llm_timeout_s": 10,
                          "cache_dir": str(tmp_path / "cache")})
    with ModelServers("test-model", [0, 1], free_base_port(2), server_command(tmp_path),
                      tmp_path / "logs", 20.0) as servers:
        router = servers.router(config, ["t/a", "t/b", "t/c"])
        assert router.routes == {"t/a": 0, "t/b": 1, "t/c": 0}
        for task in ("t/a", "t/b", "t/c", "t/a", "t/b"):
            for step in range(2):
                router.complete(ChatRequest("local", "test-model", (("user", f"{task} {step}"),),
                                            sample=f"{task}/s{step}", meta={"task": task}))
        unknown = ChatRequest("local", "test-model", (("user", "x"),), meta={"task": "t/zz"})
        assert router.server_for(unknown) == router.server_for(unknown)
    for gpu, expected in ((0, {"t/a", "t/c"}), (1, {"t/b"})):
        lines = (tmp_path / f"requests{gpu}.jsonl").read_text().splitlines()
        seen = {json.loads(line)["body"]["messages"][0]["content"].split()[0] for line in lines}
        assert seen == expected


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    base = free_base_port(2)
    crash = f"{PY} -c \"import sys; print('CUDA out of memory'); sys.exit(3)\""
    proc = run_kbtool("serve", "m", f"base_port={base}", f"data_dir={tmp_path}",
                      "--config", str(config_file(tmp_path, crash)))
    assert proc.returncode == 1
    assert "exited before it was healthy with code 3" in proc.stderr
    assert "last line: CUDA out of memory" in proc.stderr and "gpu0.log" in proc.stderr
    proc = run_kbtool("serve", "a", "b", f"data_dir={tmp_path}")
    assert proc.returncode == 2 and "takes one MODEL" in proc.stderr
    assert "Traceback" not in proc.stderr
    with socket.socket() as busy:  # GPU 1's port is taken: nothing starts
        busy.bind(("127.0.0.1", base + 1))
        busy.listen()
        with pytest.raises(RunError, match=f"port {base + 1} on 127.0.0.1 in use"):
            ModelServers("m", [0, 1], base, server_command(tmp_path), tmp_path, 20.0).start()
    assert not (tmp_path / "pid0").exists()
    with pytest.raises(UsageError, match="'no-such-server' is not installed"):
        ModelServers("m", [0], base, "no-such-server {model}", tmp_path, 20.0).start()
    with pytest.raises(UsageError, match="names a GPU twice"):
        ModelServers("m", [0, 0], base, server_command(tmp_path), tmp_path, 20.0)


# Runs that make no evaluation: the queue backend starts nothing (local would start an
# evaluation process for nothing).
NO_EVALUATOR = ("eval_backend=queue", "baselines=[]")


def queue_dirs(tmp_path: Path) -> list[str]:
    return [f"worker_input_dir={tmp_path}/in", f"worker_output_dir={tmp_path}/out"]


def test_autorun_routes_each_task_to_one_server_and_stops_them(tmp_path: Path) -> None:
    base = free_base_port(2)
    run_dir = tmp_path / "run"
    tasks = ["builtin/1/1", "builtin/1/2", "builtin/1/3"]
    cfg = config_file(tmp_path, server_command(tmp_path))
    proc = run_kbtool("run", *tasks, "model_name=local/test-model", "autorun=true", "gpu_ids=0,1",
                      f"base_port={base}", f"run_dir={run_dir}", f"cache_dir={tmp_path}/cache",
                      *NO_EVALUATOR, *queue_dirs(tmp_path), "num_samples=1", "num_phases=1",
                      "max_fix_attempts=0",
                      "--config", str(cfg), timeout=300)
    assert proc.returncode == 0, proc.stderr
    # Every call the run made is in exactly one server's log; each task's on one server.
    where: dict[str, set[int]] = {}
    logged = {gpu: [json.loads(line)["body"]["messages"] for line in
                    (tmp_path / f"requests{gpu}.jsonl").read_text().splitlines()]
              for gpu in (0, 1)}
    calls = [json.loads(p.read_text())["request"] for p in (run_dir / "calls").glob("*.json")]
    assert len(calls) == 2 * len(tasks)  # the ideas step and one sample each
    for call in calls:
        messages = [{"role": r, "content": c} for r, c in call["messages"]]
        servers = {gpu for gpu, seen in logged.items() if messages in seen}
        assert len(servers) == 1
        where.setdefault(call["meta"]["task"], set()).update(servers)
    ids = [t["id"] for t in json.loads((run_dir / "tasks.json").read_text())]
    assert [where[t] for t in ids] == [{0}, {1}, {0}]
    assert (run_dir / "serve" / "gpu1.log").is_file()
    pids = [int((tmp_path / f"pid{gpu}").read_text()) for gpu in (0, 1)]
    assert all(gone(pid) for pid in pids) and port_is_free(base) and port_is_free(base + 1)


def test_autorun_stops_the_servers_on_ctrl_c(tmp_path: Path) -> None:
    base = free_base_port(2)
    cfg = config_file(tmp_path, server_command(tmp_path, args="--latency 60"))
    proc = subprocess.Popen([PY, "-m", "kbtool", "run", "builtin/1/1", "builtin/1/2",
                             "model_name=local/test-model", "autorun=true", "gpu_ids=0,1",
                             f"base_port={base}", f"run_dir={tmp_path / 'run'}",
                             f"cache_dir={tmp_path}/cache", *NO_EVALUATOR, *queue_dirs(tmp_path),
                             "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert wait_until(lambda: all((tmp_path / f"pid{g}").exists() for g in (0, 1)), 120)
        pids = [int((tmp_path / f"pid{gpu}").read_text()) for gpu in (0, 1)]
        assert wait_until(lambda: not port_is_free(base + 1), 30)  # serving
        time.sleep(1.0)  # the run's first calls are waiting on them
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert all(gone(pid) for pid in pids)
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_autorun_server_that_fails_fails_the_run_in_one_line(tmp_path: Path) -> None:
    crash = f"{PY} -c \"import sys; print('no such model'); sys.exit(1)\""
    proc = run_kbtool("run", "builtin/1/1", "model_name=vllm/nope", "autorun=true",
                      f"base_port={free_base_port(1)}", f"run_dir={tmp_path / 'run'}",
                      *NO_EVALUATOR, *queue_dirs(tmp_path),
                      "--config", str(config_file(tmp_path, crash)), timeout=300)
    assert proc.returncode == 1
    assert "exited before it was healthy" in proc.stderr and "no such model" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_uses_the_environment_it_is_given(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA_VISIBLE_DEVICES is the server's own, whatever kbtool itself was given."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,6")
    with ModelServers("m", [1], free_base_port(2), server_command(tmp_path), tmp_path / "l",
                      20.0):
        assert (tmp_path / "cvd1").read_text().strip() == "1"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5,6"
    with pytest.raises(RunError, match=r"within serve_timeout_s=0\.5"):
        ModelServers("m", [0], free_base_port(1), "sleep 30", tmp_path / "l", 0.5).start()


def test_serve_fails_when_a_server_dies(tmp_path: Path) -> None:
    """`kbtool serve` watches its servers: one that exits stops the others and kbtool (exit 1)."""
    base = free_base_port(2)
    dies = (f"sh -c '{PY} {LLM_SERVER} --port {{port}} & "
            f"if [ {{gpu}} = 1 ]; then sleep 3; kill $!; exit 7; fi; wait'")
    proc = run_kbtool("serve", "m", "gpu_ids=0,1", f"base_port={base}", f"data_dir={tmp_path}",
                      "--config", str(config_file(tmp_path, dies)), timeout=120)
    assert proc.returncode == 1
    assert "the server for GPU 1" in proc.stderr and "exited with code 7" in proc.stderr
    assert port_is_free(base) and port_is_free(base + 1)  # GPU 0's was stopped too
