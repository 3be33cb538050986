"""LLM providers against a real OpenAI-compatible HTTP server (tests/helpers/llm_server.py).

Nothing is patched: the official clients talk HTTP to the local server, which scripts
replies, latency and failures, and records what it received.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kbtool.config import load_config
from kbtool.llm.client import BudgetExhausted, LLMClient
from kbtool.llm.model import ChatRequest, ProviderError
from kbtool_plugins import provider_litellm, provider_openai
from tests.helpers.llm_server import LLMServer, ServerProcess, request_key

pytest.importorskip("openai", reason="the openai provider needs the openai package")

ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "VLLM_BASE_URL", "VLLM_API_KEY",
            "KBTOOL_LOCAL_BASE_URL", "KBTOOL_LOCAL_API_KEY")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    """A server the openai provider talks to (OPENAI_BASE_URL, OPENAI_API_KEY)."""
    with LLMServer(hang_s=5.0) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        yield srv


def registered(module: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    module.register_providers(register=found.__setitem__)
    return found


def config(tmp_path: Path, **overrides: Any):
    return load_config({"cache_dir": str(tmp_path / "cache"), "retry_base_s": 0.01,
                        "llm_timeout_s": 2.0, **overrides})


def make_client(tmp_path: Path, provider: str = "openai", record_dir: Path | None = None,
                **overrides: Any) -> LLMClient:
    cfg = config(tmp_path, **overrides)
    factory = {**registered(provider_openai), **registered(provider_litellm)}[provider]
    return LLMClient(factory(cfg), cfg, record_dir)


def req(prompt: str = "write a fast kernel", model: str = "test-model", provider: str = "openai",
        sample: str = "") -> ChatRequest:
    return ChatRequest(provider=provider, model=model, messages=(("system", "you write CUDA"),
                                                                 ("user", prompt)),
                       max_tokens=100, sample=sample)


# -- the openai provider ---------------------------------------------------------------------------
def test_registers_openai_vllm_local() -> None:
    assert set(registered(provider_openai)) == {"openai", "vllm", "local"}
    assert set(registered(provider_litellm)) == {"litellm", "gemini", "anthropic", "deepseek"}


def test_openai_success(server: LLMServer, tmp_path: Path) -> None:
    server.set_replies("def kernel(): pass")
    provider = registered(provider_openai)["openai"](config(tmp_path))
    response = provider.complete(req("make it faster please"))
    assert response.text == "def kernel(): pass"
    assert (response.prompt_tokens, response.completion_tokens) == (3 + 4, 3)
    assert response.model == "test-model" and response.cost_usd is None
    [record] = server.requests
    assert record.completed and record.path == "/v1/chat/completions"
    assert record.authorization == "Bearer test-key"
    assert record.body["model"] == "test-model"
    assert record.body["messages"][1] == {"role": "user", "content": "make it faster please"}
    assert record.body["max_completion_tokens"] == 100 and record.body["temperature"] == 0.8
    assert record.key == request_key(record.body)


@pytest.mark.parametrize("failure", ["429", "500", "503", "garbage", "empty", "null"])
def test_retryable_failure_then_success(server: LLMServer, tmp_path: Path, failure: str) -> None:
    client = make_client(tmp_path)
    server.script(failure)
    response = client.complete(req())
    assert response.text == "reply 1" and not response.cached
    assert [r.action for r in server.requests] == [failure, "ok"]
    assert (client.usage.errors, client.usage.retries, client.usage.paid_calls) == (1, 1, 1)


def test_hang_times_out_and_is_retried(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, llm_timeout_s=0.5)
    server.script("hang")
    start = time.monotonic()
    assert client.complete(req()).text == "reply 1"
    assert 0.5 <= time.monotonic() - start < 2.0
    assert [(r.action, r.completed) for r in server.requests] == [("hang", False), ("ok", True)]
    assert client.usage.retries == 1


def test_retries_give_up_after_max_retries(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, max_retries=2)
    server.script("500", "500", "500", "500")
    with pytest.raises(ProviderError) as info:
        client.complete(req())
    assert info.value.retryable and info.value.status == 500
    assert len(server.requests) == 3 and client.usage.retries == 2


def test_bad_key_is_not_retried(server: LLMServer, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "bad")
    client = make_client(tmp_path)
    with pytest.raises(ProviderError) as info:
        client.complete(req())
    assert not info.value.retryable and info.value.status == 401
    assert len(server.requests) == 1 and client.usage.retries == 0


@pytest.mark.parametrize("status", ["400", "403", "404", "quota"])
def test_other_permanent_errors_are_not_retried(server: LLMServer, tmp_path: Path, status: str) -> None:
    client = make_client(tmp_path)
    server.script(status)
    with pytest.raises(ProviderError) as info:
        client.complete(req())
    assert not info.value.retryable
    assert len(server.requests) == 1


def test_missing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = registered(provider_openai)["openai"](config(tmp_path))
    with pytest.raises(ProviderError, match="OPENAI_API_KEY") as info:
        provider.complete(req())
    assert not info.value.retryable


def test_base_url_without_key_sends_placeholder(server: LLMServer, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    assert make_client(tmp_path).complete(req()).text == "reply 1"
    assert server.requests[0].authorization == "Bearer unset"


@pytest.mark.parametrize(("name", "url_var"), [("vllm", "VLLM_BASE_URL"),
                                               ("local", "KBTOOL_LOCAL_BASE_URL"),
                                               ("vllm", "OPENAI_BASE_URL")])
def test_local_servers_need_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                   url_var: str) -> None:
    with LLMServer(replies="hi") as srv:
        monkeypatch.setenv(url_var, srv.base_url)
        response = make_client(tmp_path, provider=name).complete(req(provider=name))
        assert response.text == "hi"
        [record] = srv.requests
        assert record.authorization == "Bearer unset" and record.body["max_tokens"] == 100


def test_local_server_needs_a_url(tmp_path: Path) -> None:
    provider = registered(provider_openai)["vllm"](config(tmp_path))
    with pytest.raises(ProviderError, match="VLLM_BASE_URL"):
        provider.complete(req(provider="vllm"))


# -- LLMClient: cache, resume, budgets, pacing ------------------------------------------------------
def test_same_request_twice_is_answered_from_the_cache(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path)
    first, second = client.complete(req()), client.complete(req())
    assert (first.cached, second.cached) == (False, True) and second.text == first.text
    assert len(server.requests) == 1
    assert (client.usage.calls, client.usage.paid_calls, client.usage.cached_calls) == (2, 1, 1)
    client.complete(req(sample="task1/phase0/agent1"))  # another sample is another call
    assert len(server.requests) == 2


def test_resume_from_record_dir(server: LLMServer, tmp_path: Path) -> None:
    run_dir = tmp_path / "run" / "llm"
    first = make_client(tmp_path / "a", record_dir=run_dir).complete(req())
    # A resumed run: a new client (another process), another shared cache, the same run dir.
    again = make_client(tmp_path / "b", record_dir=run_dir)
    response = again.complete(req())
    assert response.cached and response.text == first.text
    assert len(server.requests) == 1 and again.usage.paid_calls == 0
    assert (run_dir / f"{req().key()}.json").is_file()


def test_max_calls(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, max_calls=2)
    client.complete(req("one"))
    client.complete(req("two"))
    with pytest.raises(BudgetExhausted):
        client.complete(req("three"))
    assert client.exhausted is not None and "max_calls=2" in client.exhausted
    assert len(server.requests) == 2


def test_max_calls_holds_under_concurrency(server: LLMServer, tmp_path: Path) -> None:
    server.set_latency(0.2)
    client = make_client(tmp_path, max_calls=2, num_workers=4)
    outcomes: list[str] = []

    def call(text: str) -> None:
        try:
            client.complete(req(text))
            outcomes.append("ok")
        except BudgetExhausted:
            outcomes.append("budget")

    threads = [threading.Thread(target=call, args=(f"call {i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["budget", "budget", "ok", "ok"]
    assert len(server.requests) == 2


def test_cost_from_prices(server: LLMServer, tmp_path: Path) -> None:
    server.set_replies("one two three four")
    client = make_client(tmp_path, prices={"test-": [1.0, 2.0], "test-model": [10.0, 20.0]})
    response = client.complete(req("a b c"))  # prompt: 3 + 3 words
    assert response.cost_usd == pytest.approx((6 * 10.0 + 4 * 20.0) / 1e6)  # longest prefix
    assert client.usage.cost_usd == pytest.approx(response.cost_usd)
    assert (client.usage.prompt_tokens, client.usage.completion_tokens) == (6, 4)


def test_max_cost_usd(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, prices={"test-model": [1e6, 0.0]}, max_cost_usd=10.0)
    client.complete(req("a"))       # 4 prompt tokens: 4 dollars
    client.complete(req("b"))       # 8 dollars
    client.complete(req("c"))       # 12 dollars: over, but the call was already made
    with pytest.raises(BudgetExhausted, match="max_cost_usd"):
        client.complete(req("d"))
    assert len(server.requests) == 3


def test_num_workers_bounds_concurrency(server: LLMServer, tmp_path: Path) -> None:
    server.set_latency(0.3)
    client = make_client(tmp_path, num_workers=2)
    client.complete(req("warm-up"))  # the client and its connection pool exist
    server.reset()
    start = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(lambda i: client.complete(req(f"prompt {i}")).text, range(4)))
    wall = time.monotonic() - start
    assert len(set(texts)) == 4 and len(server.requests) == 4
    assert server.max_active == 2
    assert 0.6 <= wall < 1.0


def test_api_query_interval_spaces_requests(server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, api_query_interval=0.2, num_workers=3)
    client.complete(req("warm-up"))  # the client exists: each call starts when it is let go
    server.reset()
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda i: client.complete(req(f"prompt {i}")), range(3)))
    starts = sorted(r.start for r in server.requests)
    assert len(starts) == 3
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(starts))


# -- the server in another process -------------------------------------------------------------------
def test_server_process_logs_completed_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ServerProcess(tmp_path / "srv", replies=["alpha", "beta"], latency=0.3, script=["500"]) as proc:
        monkeypatch.setenv("OPENAI_BASE_URL", proc.base_url)
        assert proc.port_file.read_text() == str(proc.port)
        impatient = registered(provider_openai)["openai"](config(tmp_path, llm_timeout_s=0.1))
        with pytest.raises(ProviderError):   # the scripted 500
            impatient.complete(req())
        with pytest.raises(ProviderError, match="llm_timeout_s"):  # gives up before the reply
            impatient.complete(req())
        time.sleep(0.4)
        assert proc.completed() == []     # the client was gone: nothing completed
        patient = registered(provider_openai)["openai"](config(tmp_path))
        assert patient.complete(req()).text == "alpha"  # not spent on the abandoned request
        [logged] = proc.completed()
        assert logged["reply"] == "alpha" and logged["completed"]
        assert logged["key"] == request_key(logged["body"])
    assert proc.proc is not None and proc.proc.poll() is not None


def test_server_rejects_unknown_actions() -> None:
    with pytest.raises(ValueError, match="unknown server action"):
        LLMServer(script=["teapot"])


# -- litellm ----------------------------------------------------------------------------------------
def test_litellm_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litellm", None)  # what an absent package looks like
    provider = registered(provider_litellm)["litellm"](config(tmp_path))
    with pytest.raises(ProviderError, match=r"kbtool\[litellm\]") as info:
        provider.complete(req(provider="litellm", model="openai/test-model"))
    assert not info.value.retryable


def test_aliases_prefix_the_model(tmp_path: Path) -> None:
    found = registered(provider_litellm)
    assert found["gemini"](config(tmp_path)).prefix == "gemini/"
    assert found["litellm"](config(tmp_path)).prefix == ""


# pydantic warns about litellm's own types on its first call.
quiet_litellm = pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")


@pytest.fixture
def litellm(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no download at import
    with warnings.catch_warnings():  # pydantic warnings from litellm's own types
        warnings.simplefilter("ignore")
        return pytest.importorskip("litellm", reason="litellm is optional (pip install 'kbtool[litellm]')")


@quiet_litellm
def test_litellm_through_the_server(litellm: Any, server: LLMServer, tmp_path: Path) -> None:
    server.set_replies("one two")
    # LLMClient prices by the model as named after the provider: here "openai/test-model".
    client = make_client(tmp_path, provider="litellm", prices={"openai/test-model": [1.0, 1.0]})
    server.script("429", "garbage")
    response = client.complete(req(provider="litellm", model="openai/test-model"))
    assert response.text == "one two" and response.completion_tokens == 2
    assert response.cost_usd == pytest.approx((7 + 2) / 1e6)  # unknown to litellm: our prices
    assert [r.action for r in server.requests] == ["429", "garbage", "ok"]
    assert server.requests[-1].body["model"] == "test-model"


@quiet_litellm
def test_litellm_cost_from_its_price_table(litellm: Any, server: LLMServer, tmp_path: Path) -> None:
    response = make_client(tmp_path, provider="litellm").complete(
        req(provider="litellm", model="openai/gpt-4o"))
    assert response.cost_usd is not None and response.cost_usd > 0


@quiet_litellm
@pytest.mark.parametrize("action", ["401", "400", "404", "quota"])
def test_litellm_permanent_errors(litellm: Any, server: LLMServer, tmp_path: Path, action: str) -> None:
    client = make_client(tmp_path, provider="litellm")
    server.script(action)
    with pytest.raises(ProviderError) as info:
        client.complete(req(provider="litellm", model="openai/test-model"))
    assert not info.value.retryable and len(server.requests) == 1


@quiet_litellm
def test_litellm_timeout_is_retried(litellm: Any, server: LLMServer, tmp_path: Path) -> None:
    client = make_client(tmp_path, provider="litellm", llm_timeout_s=0.5)
    server.script("hang", "503")
    assert client.complete(req(provider="litellm", model="openai/test-model")).text == "reply 1"
    assert [r.action for r in server.requests] == ["hang", "503", "ok"]
