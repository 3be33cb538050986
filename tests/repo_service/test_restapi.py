"""The ``restapi`` evaluation backend against a real `kbtool sandbox serve`: the same verdicts
as a local check, `kbtool eval` through it, a service killed mid-item (the client retries
and nothing is lost), and its errors in one line."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from kbtool.config import Config, load_config
from kbtool.errors import RunError, UsageError
from kbtool.evaluation.backend import LocalBackend, make_backend
from kbtool.evaluation.result import EvalResult
from kbtool.task import catalog
from tests.helpers import run_kbtool
from tests.helpers.llm_server import LLMServer
from tests.repo_service.mini import Mini, Service

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the sandbox forks")

SHOUT, VOWELS = "repo/mini/method_gen/1_shout", "repo/mini/repair/2_count_vowels"
GOOD = "def shout(word):\n    return word.upper() + '!'\n"
CANDIDATES: dict[str, tuple[str, str]] = {
    "good": (SHOUT, GOOD),
    "wrong": (SHOUT, "def shout(word):\n    return word.lower()\n"),
    "half right": (SHOUT, "def shout(word):\n    return word.upper() + ('!' if word else '')\n"),
    "wrong name": (SHOUT, "def yell(word):\n    return word.upper() + '!'\n"),
    "no def": (SHOUT, "return word.upper()\n"),
    "decorated": (SHOUT, "@staticmethod\ndef shout(word):\n    return word.upper() + '!'\n"),
    "writes a file": (SHOUT, "def shout(word):\n    import mini, os\n    open(os.path.join("
                             "os.path.dirname(mini.__file__), 'x.py'), 'w').write('')\n"
                             "    return word.upper() + '!'\n"),
    "repaired": (VOWELS, "def count_vowels(text):\n    return sum(c in 'aeiou' for c in "
                         "text.lower())\n"),
    "still buggy": (VOWELS, "def count_vowels(text):\n    return 2 * sum(c in 'aeiou' for c in "
                            "text.lower())\n"),
}
COMPARED = ("status", "correct", "tests_passed", "tests_total", "test_outcomes", "task_type",
            "flags", "infrastructure_error")


def settings(tmp_path: Path, mini: Mini, **more: Any) -> Config:
    return load_config({"cache_dir": str(mini.cache_dir), "repo_data": [str(mini.data)],
                        "device": "cpu", **more})


def check(backend: Any, config: Config, tmp_path: Path, name: str) -> EvalResult:
    task_id, code = CANDIDATES[name]
    # One file per call: threads checking the same candidate must not truncate each
    # other's file while it is read (that read "" and came back compile_error).
    fd, file = tempfile.mkstemp(suffix=".py", prefix=name.replace(" ", "_"), dir=tmp_path)
    os.close(fd)
    path = Path(file)
    path.write_text(code)
    result: EvalResult = backend.evaluate(catalog.resolve(task_id, config), path, config)
    return result


@pytest.fixture(scope="module")
def local(mini: Mini, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    backend = LocalBackend(settings(tmp_path_factory.mktemp("local"), mini))
    try:
        yield backend
    finally:
        backend.close()


def test_the_same_verdicts_as_a_local_check(service: Service, local: LocalBackend,
                                            mini: Mini, tmp_path: Path) -> None:
    config = settings(tmp_path, mini, eval_backend="restapi", sandbox_url=service.url)
    remote = make_backend(config)
    try:
        with ThreadPoolExecutor(4) as pool:
            remotes = dict(zip(CANDIDATES, pool.map(
                lambda name: check(remote, config, tmp_path, name), CANDIDATES), strict=True))
        for name in CANDIDATES:
            here = check(local, config, tmp_path, name)
            there = remotes[name]
            assert {k: getattr(there, k, None) for k in COMPARED} == \
                   {k: getattr(here, k, None) for k in COMPARED}, name
            assert (there.error is None) == (here.error is None), name
    finally:
        remote.close()
    verdicts = {name: r.status.value for name, r in remotes.items()}
    assert verdicts == {"good": "ok", "wrong": "incorrect", "half right": "incorrect",
                        "wrong name": "compile_error", "no def": "compile_error",
                        "decorated": "ok", "writes a file": "rejected", "repaired": "ok",
                        "still buggy": "incorrect"}
    assert remotes["half right"].model_extra["tests_passed"] == 1  # type: ignore[index]


def test_kbtool_eval_through_the_service(service: Service, mini: Mini, tmp_path: Path) -> None:
    solution = tmp_path / "good.py"
    solution.write_text(GOOD)
    proc = run_kbtool("eval", SHOUT, "--solution", str(solution), "--json", *mini.settings(),
                      "eval_backend=restapi", f"sandbox_url={service.url}", timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = EvalResult.model_validate_json(proc.stdout)
    assert result.status.value == "ok"
    assert (result.model_extra or {})["tests_passed"] == 2
    assert (result.model_extra or {})["tests_total"] == 2


@pytest.mark.parametrize("through", ["local", "service"])
def test_kbtool_eval_reads_a_reply_as_kbtool_run_does(service: Service, mini: Mini,
                                                      tmp_path: Path, through: str) -> None:
    """A chat reply saved to a file (prose and a fenced block) is the answer `kbtool run`
    would check; before, `kbtool eval` checked the prose too (compile_error)."""
    reply = tmp_path / "reply.md"
    reply.write_text(f"Here is `shout`.\n\n```python\n{GOOD}```\n\nIt adds the bang.\n")
    backend = [] if through == "local" else ["eval_backend=restapi",
                                             f"sandbox_url={service.url}"]
    proc = run_kbtool("eval", SHOUT, "--solution", str(reply), "--json", *mini.settings(),
                      *backend, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = EvalResult.model_validate_json(proc.stdout)
    assert result.status.value == "ok", result.error
    assert result.solution == str(reply)
    wrong = tmp_path / "wrong.md"
    wrong.write_text("Try this:\n```python\ndef shout(word):\n    return word\n```\n")
    proc = run_kbtool("eval", SHOUT, "--solution", str(wrong), "--json", *mini.settings(),
                      *backend, timeout=120)
    assert EvalResult.model_validate_json(proc.stdout).status.value == "incorrect"


def test_kbtool_run_through_the_service(service: Service, mini: Mini, tmp_path: Path) -> None:
    """A multi-turn search's checks go to the service; the model (a real HTTP server) always
    answers with the method `shout`: right for one item at once, the wrong method for the
    other, turn after turn, each told why."""
    reply = f"Here it is.\n```python\n{GOOD}```\n"
    run_dir = tmp_path / "run"
    with LLMServer(replies=reply) as llm:
        proc = run_kbtool("run", SHOUT, VOWELS, "model_name=local/test-model",
                          "strategy=multiturn", "max_iter=2", f"run_dir={run_dir}",
                          *mini.settings(), "eval_backend=restapi", f"sandbox_url={service.url}",
                          env={"KBTOOL_LOCAL_BASE_URL": llm.base_url}, timeout=300)
        second_turn = [r.body for r in llm.requests if len(r.body["messages"]) > 3]
    assert proc.returncode == 0, proc.stderr
    tasks = json.loads((run_dir / "summary.json").read_text())["tasks"]
    assert tasks[SHOUT]["correct"] and tasks[SHOUT]["statuses"] == {"ok": 1}
    assert not tasks[VOWELS]["correct"] and tasks[VOWELS]["statuses"] == {"compile_error": 2}
    assert len(second_turn) == 1 and "count_vowels" in second_turn[0]["messages"][-1]["content"]


def test_a_service_killed_mid_item_loses_nothing(mini: Mini, tmp_path: Path) -> None:
    """Checks in flight when the service dies are sent again (tenacity) to the service
    started again on the same port; every one comes back with its own verdict."""
    svc = Service(mini, workspaces=2).start()
    slow = "def shout(word):\n    import time\n    time.sleep(0.6)\n    return word.upper() + '!'\n"
    CANDIDATES["slow"] = (SHOUT, slow)
    CANDIDATES["slow wrong"] = (SHOUT, slow.replace("'!'", "'?'"))
    config = settings(tmp_path, mini, eval_backend="restapi", sandbox_url=svc.url,
                      queue_wait_s=120)
    backend = make_backend(config)
    try:
        names = ["slow", "slow wrong", "slow", "slow wrong"]
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(check, backend, config, tmp_path, n) for n in names]
            deadline = time.monotonic() + 60
            while httpx.get(f"{svc.url}/health").json()["busy"] < 2:  # items are running
                assert time.monotonic() < deadline
                time.sleep(0.05)
            svc.kill()
            svc.wait_port_free()
            threading.Timer(0.5, svc.start).start()  # down for a while, then back
            results = [f.result(timeout=120) for f in futures]
    finally:
        backend.close()
        svc.kill()
        CANDIDATES.pop("slow")
        CANDIDATES.pop("slow wrong")
    assert [r.status.value for r in results] == ["ok", "incorrect", "ok", "incorrect"]


def test_backend_errors_are_one_line(service: Service, mini: Mini, tmp_path: Path) -> None:
    solution = tmp_path / "good.py"
    solution.write_text(GOOD)
    proc = run_kbtool("eval", "builtin/1/2", "--solution", str(solution), *mini.settings(),
                      "eval_backend=restapi", f"sandbox_url={service.url}", timeout=120)
    assert proc.returncode == 2 and "checks repository tasks" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    with pytest.raises(UsageError, match="eval_backend=restapi needs sandbox_url="):
        make_backend(settings(tmp_path, mini, eval_backend="restapi"))
    with pytest.raises(RunError, match=r"at http://127\.0\.0\.1:9 did not answer /health "
                                       r"within 1 s"):
        make_backend(settings(tmp_path, mini, eval_backend="restapi",
                              sandbox_url="http://127.0.0.1:9", queue_wait_s=1))
