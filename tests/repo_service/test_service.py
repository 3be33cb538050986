"""`kbtool sandbox serve` over real HTTP: the seed's wire format, verdicts, 422s naming the
field, concurrency, isolation between items, the bearer token, metrics, and workspaces that
are replaced."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from kbtool_plugins.repo import repository
from kbtool_plugins.repo.repository import Repository, RepoSpec
from kbtool_plugins.repo.runner import test_file as file_of_test
from tests.helpers import run_kbtool
from tests.repo_service.mini import (
    CLEAN_TEST,
    SHOUT_TESTS,
    TEXT,
    VOWEL_TESTS,
    Mini,
    Service,
    make_mini,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the sandbox forks")

GOOD = "def shout(word):\n    return word.upper() + '!'\n"
WRONG = "def shout(word):\n    return word.upper() + '?'\n"


def body(replace: str = GOOD, **more: Any) -> dict[str, Any]:
    return {"idx": 0, "dp_id": "mini-0", "file_path": "mini/text.py", "replace_content": replace,
            "method_name": "shout", "start_line": 4, "end_line": 6, "tests": SHOUT_TESTS, **more}


def post(service: Service, data: dict[str, Any], **params: Any) -> httpx.Response:
    return httpx.post(f"{service.url}/run_item", json=data, params=params, timeout=120)


def test_run_item_speaks_the_seeds_format(service: Service) -> None:
    reply = post(service, body(idx=7, dp_id=42))
    assert reply.status_code == 200
    data = reply.json()
    assert {"datapoint", "test_output", "edited_file"} <= set(data)
    assert data["datapoint"]["idx"] == 7 and data["datapoint"]["dp_id"] == 42
    assert data["edited_file"] == TEXT.replace(
        '    """The word in capitals, with a bang."""\n    return word.upper() + "!"\n',
        "    return word.upper() + '!'\n")
    assert "2/2 selected tests passed" in data["test_output"]
    result = data["result"]
    assert result["status"] == "passed" and (result["passed"], result["total"]) == (2, 2)
    assert "no network" in result["sandbox"]

    wrong = post(service, body(WRONG)).json()
    assert wrong["result"]["status"] == "failed" and wrong["result"]["passed"] == 0
    assert "FAILED   test_text.ShoutTests.test_shout" in wrong["test_output"]
    broken = post(service, body("def shout(word):\n    return (\n")).json()
    assert broken["result"]["status"] == "syntax_error"
    # do_edit=false: the tests run on the pristine file, whatever the body says
    pristine = post(service, body(WRONG), do_edit="false").json()
    assert pristine["result"]["status"] == "passed" and pristine["edited_file"] == TEXT


@pytest.mark.parametrize(("change", "field"), [
    ({"tests": None}, "tests"),
    ({"tests": []}, "tests"),
    ({"tests": "test_text"}, "tests"),
    ({"start_line": 0}, "start_line"),
    ({"start_line": 6, "end_line": 2}, "end_line"),
    ({"end_line": 400}, "end_line"),
    ({"file_path": "../../../etc/passwd"}, "file_path"),
    ({"file_path": "/etc/passwd"}, "file_path"),
    ({"file_path": "mini/nope.py"}, "file_path"),
    ({"file_path": "mini/../../repo.json"}, "file_path"),
    ({"idx": "first"}, "idx"),
    ({"replace_content": None}, "replace_content"),
    ({"repo": "django"}, "repo"),
    ({"repo_sha256": "0" * 64}, "repo_sha256"),
    ({"colour": "blue"}, "colour"),
])
def test_malformed_requests_get_a_422_naming_the_field(service: Service, change: dict[str, Any],
                                                       field: str) -> None:
    data = {k: v for k, v in {**body(), **change}.items() if v is not None}
    reply = post(service, data)
    assert reply.status_code == 422, reply.text
    assert any(d["loc"][-1] == field for d in reply.json()["detail"]), reply.text


EXPECTED = ("passed", "failed", "syntax_error", "syntax_error")  # by idx % 4


def test_100_concurrent_requests_each_get_their_own_answer(service: Service) -> None:
    """Each answer is its own item's: its idx, its edit, its verdict (half of them are
    syntax errors, which are judged without running tests: a faster test, the same path)."""
    def one(idx: int) -> tuple[int, dict[str, Any]]:
        end = ("+ '!'", "+ '?'", "+ (", "+ )")[idx % 4]
        code = f"def shout(word):\n    # item {idx}\n    return word.upper() {end}\n"
        return idx, post(service, body(code, idx=idx, dp_id=f"dp-{idx}")).json()

    with ThreadPoolExecutor(100) as pool:
        replies = list(pool.map(one, range(100)))
    for idx, data in replies:
        assert data["datapoint"]["idx"] == idx and data["datapoint"]["dp_id"] == f"dp-{idx}"
        assert f"# item {idx}\n" in data["edited_file"]
        assert data["result"]["status"] == EXPECTED[idx % 4], idx


def test_what_an_item_writes_leaves_no_trace_for_the_next(service: Service) -> None:
    """An edit that writes a new module, appends to another one and patches the package at
    import is rejected, and the next items (on every workspace) see the pristine tree."""
    evil = ("import os as _os\nimport mini as _mini\n_mini.PWNED = True\n"
            "_here = _os.path.dirname(_os.path.abspath(__file__))\n"
            "open(_os.path.join(_here, '__init__.py'), 'a').write('PWNED = 1\\n')\n"
            "open(_os.path.join(_here, 'evil.py'), 'w').write('x = 1\\n')\n" + GOOD)
    first = post(service, body(evil))
    assert first.status_code == 200
    result = first.json()["result"]
    assert result["status"] == "rejected"
    assert any("mini/evil.py" in p for p in result["problems"])
    assert any("mini/__init__.py" in p for p in result["problems"])
    with ThreadPoolExecutor(4) as pool:
        later = list(pool.map(lambda i: post(service, body(tests=[CLEAN_TEST]),
                                             do_edit="false").json(), range(4)))
    assert [r["result"]["status"] for r in later] == ["passed"] * 4


def test_health_and_metrics(service: Service) -> None:
    health = httpx.get(f"{service.url}/health").json()
    assert health["status"] == "ok" and health["workspaces"] == 2 and health["repos"]["mini"]
    before = _metric(service, 'kbtool_sandbox_items_total{status="passed"}')
    post(service, body())
    post(service, body(WRONG))
    assert _metric(service, 'kbtool_sandbox_items_total{status="passed"}') == before + 1
    assert _metric(service, 'kbtool_sandbox_items_total{status="failed"}') >= 1
    assert _metric(service, "kbtool_sandbox_workspaces") == 2
    assert _metric(service, "kbtool_sandbox_item_seconds_count") >= 2


def _metric(service: Service, name: str) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    return next((float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith(name + " ")), 0.0)


def test_a_workspace_whose_process_dies_is_replaced(service: Service) -> None:
    pids = httpx.get(f"{service.url}/health").json()["pids"]
    os.kill(pids[0], signal.SIGKILL)
    time.sleep(0.2)
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda i: post(service, body()).json(), range(4)))
    assert [r["result"]["status"] for r in replies] == ["passed"] * 4
    health = httpx.get(f"{service.url}/health").json()
    assert health["workspaces"] == 2 and pids[0] not in health["pids"]
    assert _metric(service, "kbtool_sandbox_workspaces_replaced_total") >= 1


def test_a_hung_item_times_out_and_its_workspace_serves_on(mini: Mini) -> None:
    svc = Service(mini, workspaces=1, extra=("test_timeout_s=2",)).start()
    try:
        hang = "def count_vowels(text):\n    while True:\n        pass\n"
        reply = post(svc, body(hang, method_name="count_vowels", start_line=9, end_line=15,
                               tests=VOWEL_TESTS))
        assert reply.json()["result"]["status"] == "timeout"
        assert post(svc, body()).json()["result"]["status"] == "passed"
    finally:
        svc.kill()


def test_the_bearer_token(mini: Mini) -> None:
    svc = Service(mini, workspaces=1, env={"KBTOOL_SANDBOX_TOKEN": "s3cret"}).start()
    try:
        assert post(svc, body()).status_code == 401
        bad = httpx.post(f"{svc.url}/run_item", json=body(),
                         headers={"Authorization": "Bearer wrong"}, timeout=60)
        assert bad.status_code == 401
        good = httpx.post(f"{svc.url}/run_item", json=body(),
                          headers={"Authorization": "Bearer s3cret"}, timeout=60)
        assert good.status_code == 200 and good.json()["result"]["status"] == "passed"
        assert httpx.get(f"{svc.url}/metrics").status_code == 401
        assert httpx.get(f"{svc.url}/health").status_code == 200  # probes need no secret
        pids = httpx.get(f"{svc.url}/health").json()["pids"]
        assert svc.stop() in (0, -signal.SIGTERM)  # uvicorn ends by the signal it caught
        assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)  # workspaces too
    finally:
        svc.kill()


def test_serve_refuses_what_it_cannot_do_in_one_line(service: Service, mini: Mini) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KBTOOL_SANDBOX_TOKEN"}
    for args, message, code in (
            (["--host", "0.0.0.0"], "set KBTOOL_SANDBOX_TOKEN", 2),
            (["--repo", "minj"], "unknown repository 'minj' (did you mean 'mini'?)", 2),
            (["--port", str(service.port)], f"cannot listen on 127.0.0.1:{service.port}", 1)):
        proc = run_kbtool("sandbox", "serve", "--repo", "mini", *mini.settings(), *args,
                          env=env, timeout=120)
        assert proc.returncode == code and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def _errors(service: Service, code: str) -> float:
    return _metric(service, f'kbtool_sandbox_errors_total{{code="{code}"}}')


def test_every_refused_request_is_counted(service: Service) -> None:
    """422s of FastAPI's validation, of the repository's choice and of the request's check,
    and 413s: each is one more in kbtool_sandbox_errors_total."""
    before = {code: _errors(service, code) for code in ("413", "422")}
    refused = [post(service, {k: v for k, v in body().items() if k != "tests"}),
               post(service, body(repo="django")),
               post(service, body(file_path="mini/nope.py")),
               post(service, body(end_line=400))]
    assert [r.status_code for r in refused] == [422] * 4
    assert post(service, body("#" * (3 << 20))).status_code == 413
    assert _errors(service, "422") == before["422"] + 4
    assert _errors(service, "413") == before["413"] + 1


def test_large_requests_get_a_413_and_errors_repeat_no_large_field(service: Service) -> None:
    big = post(service, body("# " + "x" * (10 << 20) + "\n" + GOOD))
    assert big.status_code == 413 and len(big.content) < 1000
    assert "limit" in big.json()["detail"]
    # Chunked (no Content-Length): refused as it arrives.
    chunks = (b'{"idx": 0, "replace_content": "' if i == 0 else b"y" * (1 << 20)
              for i in range(5))
    streamed = httpx.post(f"{service.url}/run_item", content=chunks, timeout=120,
                          headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    # Under the limit but refused: the answer names the field without repeating the body.
    filler = "#" + "z" * (1 << 20) + "\n"
    for data in ({k: v for k, v in body(filler).items() if k != "method_name"},
                 body(filler, repo="r" * 100_000),
                 body(filler, file_path="mini/" + "n" * 100_000 + ".py"),
                 body(filler, tests=["t" * 100_000])):
        reply = post(service, data)
        assert reply.status_code in (200, 422), reply.status_code
        assert len(reply.content) < 5000 or reply.status_code == 200, len(reply.content)
        if reply.status_code == 422:
            assert "zzzz" not in reply.text and reply.json()["detail"][0]["loc"][0] == "body"


def test_the_request_limit_is_a_setting(mini: Mini) -> None:
    svc = Service(mini, workspaces=1, extra=("--max-request-mb", "0.01")).start()
    try:
        assert post(svc, body("#" * 20_000 + "\n" + GOOD)).status_code == 413
        assert post(svc, body()).json()["result"]["status"] == "passed"
    finally:
        svc.kill()


def test_a_request_without_repo_is_sent_to_the_repository_it_names(
        mini: Mini, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The seed's client sends no ``repo``: with several repositories served, the one whose
    files hold file_path (and the tests) is chosen; when two hold both, the 422 says so."""
    maxi = make_mini(tmp_path_factory.mktemp("maxi"), package="maxi", cache=mini.cache_dir)
    twin = make_mini(tmp_path_factory.mktemp("twin"), name="twin", cache=mini.cache_dir)
    folders = f"repo_data=[{mini.data},{maxi.data},{twin.data}]"
    svc = Service(mini, workspaces=1, extra=("--repo", "maxi", folders)).start()
    try:
        for package in ("mini", "maxi"):
            reply = post(svc, body(file_path=f"{package}/text.py"))
            assert reply.status_code == 200, reply.text
            assert reply.json()["result"]["status"] == "passed"
        wrong = post(svc, body(WRONG, file_path="maxi/text.py")).json()
        assert wrong["result"]["status"] == "failed"
        nowhere = post(svc, body(file_path="other/text.py"))
        assert nowhere.status_code == 422 and nowhere.json()["detail"][0]["loc"] == \
            ["body", "file_path"]
    finally:
        svc.kill()
    both = Service(mini, workspaces=1, extra=("--repo", "twin", folders)).start()
    try:
        ambiguous = post(both, body())
        assert ambiguous.status_code == 422 and "name one" in ambiguous.text
        assert ambiguous.json()["detail"][0]["loc"] == ["body", "repo"]
        assert post(both, body(repo="twin")).json()["result"]["status"] == "passed"
    finally:
        both.kill()


def test_test_ids_name_their_files(mini: Mini) -> None:
    """How a request without ``repo`` tells repositories apart by their tests: a test id
    names a file as the repository's runner reads it."""
    repo = repository.find(RepoSpec.model_validate(mini.spec), mini.cache_dir)
    assert repo is not None
    assert file_of_test(repo, SHOUT_TESTS[0]) == repo.src / "tests" / "test_text.py"
    assert file_of_test(repo, "test_text") == repo.src / "tests" / "test_text.py"
    assert file_of_test(repo, "test_other.Case.test") is None
    assert file_of_test(repo, "test_text.Shout Tests") is None
    as_pytest = Repository(spec=repo.spec.model_copy(update={"runner": "pytest"}),
                           root=repo.root)
    assert file_of_test(as_pytest, "tests/test_text.py::ShoutTests::test_shout") is not None
    assert file_of_test(as_pytest, "tests/nope.py::test") is None
    assert file_of_test(as_pytest, "../../repo.json") is None
    assert file_of_test(as_pytest, "tests/" + "n" * 5000 + ".py::t") is None
