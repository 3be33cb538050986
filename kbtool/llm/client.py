"""Calls to an LLM provider as a search needs them: cached, rate-limited, retried, counted,
and stopped by budget caps.

Every answer is recorded under its request key (``ChatRequest.key``) in the run directory
and in a shared cache, so resuming or re-running a search makes no paid call twice.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tenacity

from kbtool.config import Config
from kbtool.llm.model import ChatRequest, ChatResponse, Provider, ProviderError
from kbtool.runs.events import BudgetExhausted as BudgetExhaustedEvent
from kbtool.runs.events import LLMCall, LLMError
from kbtool.util.files import write_atomic

# USD per million tokens (input, output), for providers that do not report a cost.
# Users override or extend this with the `prices` setting.
DEFAULT_PRICES = {
    "gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6), "gpt-4.1": (2.0, 8.0),
    "o3": (2.0, 8.0), "o4-mini": (1.1, 4.4), "gemini-2.5-pro": (1.25, 10.0),
    "gemini-2.5-flash": (0.3, 2.5), "deepseek-chat": (0.27, 1.1),
    "claude-sonnet-4": (3.0, 15.0),
}


class BudgetExhausted(Exception):
    """A cap on calls, tokens or dollars is reached; no further call is made."""


@dataclass
class Usage:
    calls: int = 0           # answers the run used (paid or recorded)
    paid_calls: int = 0      # answers paid for in this process
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    errors: int = 0          # failed attempts (each retry counts)
    retries: int = 0


class LLMClient:
    def __init__(self, provider: Provider, config: Config, record_dir: Path | None,
                 on_event: Any = None) -> None:
        self.provider = provider
        self.config = config
        self.record_dir = record_dir              # this run's answers (resume)
        # Every run's answers, for re-runs; not for providers whose answers cost nothing.
        self.cache_dir = config.cache_dir / "llm" if getattr(provider, "cacheable", True) \
            else None
        self.usage = Usage()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(config.num_workers)
        self._interval_lock = threading.Lock()
        self._last_call = 0.0
        self._on_event = on_event or (lambda event: None)
        self._exhausted: str | None = None
        self._in_flight = 0

    # -- records ---------------------------------------------------------------------------
    def _lookup(self, key: str) -> dict[str, Any] | None:
        for root in (self.record_dir, self.cache_dir):
            if root is None:
                continue
            try:
                return json.loads((root / f"{key}.json").read_text())
            except (OSError, ValueError):
                continue
        return None

    def _record(self, request: ChatRequest, response: ChatResponse) -> None:
        data = {"request": {**asdict(request), "messages": list(request.messages)},
                "response": asdict(response)}
        for root in (self.record_dir, self.cache_dir):
            if root is not None:
                write_atomic(root / f"{request.key()}.json", json.dumps(data))

    # -- budget ----------------------------------------------------------------------------
    @property
    def exhausted(self) -> str | None:
        return self._exhausted

    def _check_budget(self, in_flight: int = 0) -> None:
        """Tokens and dollars are known only when a call returns, so calls in flight may
        pass those two caps; never ``max_calls``."""
        c, u = self.config, self.usage
        reason = None
        if c.max_calls is not None and u.calls + in_flight >= c.max_calls:
            reason = f"max_calls={c.max_calls} reached"
        elif c.max_total_tokens is not None and \
                u.prompt_tokens + u.completion_tokens >= c.max_total_tokens:
            reason = f"max_total_tokens={c.max_total_tokens} reached"
        elif c.max_cost_usd is not None and u.cost_usd >= c.max_cost_usd:
            reason = f"max_cost_usd={c.max_cost_usd} reached"
        if reason:
            if self._exhausted is None:
                self._exhausted = reason
                self._on_event(BudgetExhaustedEvent(reason=reason))
            raise BudgetExhausted(reason)

    def _account(self, response: ChatResponse) -> None:
        u = self.usage
        u.calls += 1
        u.prompt_tokens += response.prompt_tokens
        u.completion_tokens += response.completion_tokens
        u.cost_usd += response.cost_usd or 0.0

    def price(self, model: str, response: ChatResponse) -> float | None:
        if response.cost_usd is not None:
            return response.cost_usd
        prices = {**DEFAULT_PRICES, **{k: tuple(v) for k, v in self.config.prices.items()}}
        names = {model, model.rsplit("/", 1)[-1], response.model}  # gemini/gemini-2.5-pro too
        match = max((name for name in prices for m in names if m.startswith(name)), key=len,
                    default=None)
        if match is None:
            return None
        p_in, p_out = prices[match]
        return (response.prompt_tokens * p_in + response.completion_tokens * p_out) / 1e6

    # -- calls -----------------------------------------------------------------------------
    def complete(self, request: ChatRequest) -> ChatResponse:
        """The answer to ``request``: recorded if it exists, else paid for (with retries)."""
        key = request.key()
        found = self._lookup(key)
        if found is not None:
            response = ChatResponse(**{**found["response"], "cached": True})
            with self._lock:
                self._check_budget()
                self._account(response)
                self.usage.cached_calls += 1
            if self.record_dir is not None and not (self.record_dir / f"{key}.json").exists():
                self._record(request, response)
            self._on_event(self._event(request, response))
            return response
        with self._lock:
            self._check_budget(in_flight=self._in_flight)
            self._in_flight += 1  # counted now, so concurrent calls cannot pass max_calls
        try:
            with self._slots:
                response = self._call_with_retries(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        response.cost_usd = self.price(request.model, response)
        with self._lock:
            self._account(response)
            self.usage.paid_calls += 1
        self._record(request, response)
        self._on_event(self._event(request, response))
        return response

    def _event(self, request: ChatRequest, response: ChatResponse) -> LLMCall:
        return LLMCall(sample=request.sample, key=request.key(),
                       model=f"{request.provider}/{request.model}", cached=response.cached,
                       prompt_tokens=response.prompt_tokens,
                       completion_tokens=response.completion_tokens,
                       cost_usd=response.cost_usd, latency_s=round(response.latency_s, 4))

    def _wait_interval(self) -> None:
        if self.config.api_query_interval <= 0:
            return
        with self._interval_lock:
            wait = self._last_call + self.config.api_query_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_call = time.monotonic()

    def _call_with_retries(self, request: ChatRequest) -> ChatResponse:
        """One call, retried with exponential back-off (and jitter) while the provider says
        the failure is worth retrying; every failed attempt is counted and logged."""

        def attempt_once(retry_state_attempt: list[int]) -> ChatResponse:
            retry_state_attempt[0] += 1
            self._wait_interval()
            start = time.monotonic()
            try:
                response = self.provider.complete(request)
                if not response.text.strip():
                    raise ProviderError("empty reply", retryable=True)
            except ProviderError as exc:
                with self._lock:
                    self.usage.errors += 1
                self._on_event(LLMError(sample=request.sample, error=str(exc)[:500],
                                        status=exc.status, attempt=retry_state_attempt[0],
                                        retryable=exc.retryable))
                raise
            response.latency_s = time.monotonic() - start
            return response

        def backoff(state: tenacity.RetryCallState) -> float:
            delay = self.config.retry_base_s * 2 ** (state.attempt_number - 1)
            return min(delay, 60.0) * random.uniform(0.8, 1.2)

        def count_retry(state: tenacity.RetryCallState) -> None:
            with self._lock:
                self.usage.retries += 1

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.max_retries + 1),
            wait=backoff,
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            before_sleep=count_retry, reraise=True)
        attempts = [0]
        return retrying(attempt_once, attempts)
