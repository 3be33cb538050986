"""LLM provider interface: requests, responses, errors.  Providers are plugins
(``register_providers``); models are named ``provider/model`` (``openai/gpt-4o``)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from kbtool.errors import UsageError


@dataclass(frozen=True)
class ChatRequest:
    provider: str
    model: str
    messages: tuple[tuple[str, str], ...]   # (role, content) pairs
    temperature: float = 0.8
    max_tokens: int = 30000
    # Which call of the search this is (task/phase/agent/step): identical prompts sampled
    # twice are two calls, and a resumed run finds each one again.  Replay providers use
    # ``meta`` too; it is never sent to an API.
    sample: str = ""
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def key(self) -> str:
        """Cache key: everything that determines the answer."""
        body = {"provider": self.provider, "model": self.model, "messages": self.messages,
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "sample": self.sample}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:40]

    def openai_messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass
class ChatResponse:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None    # None: the provider does not know; priced by the client
    model: str = ""
    cached: bool = False
    latency_s: float = 0.0


class ProviderError(Exception):
    """A failed call.  ``retryable``: rate limits, server errors, time-outs, malformed
    replies; not: bad credentials, unknown model, bad request."""

    def __init__(self, message: str, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


# How providers say a prompt does not fit the model's context (OpenAI, vLLM, Anthropic, ...).
_CONTEXT_LENGTH = re.compile(r"context.length|maximum context|context window|prompt is too "
                             r"long|too many (input )?tokens", re.IGNORECASE)


def context_length_exceeded(exc: BaseException) -> bool:
    """Whether a failed call failed because the prompt is longer than the model's context:
    a shorter prompt may succeed where a retry of the same one never will."""
    return isinstance(exc, ProviderError) and bool(_CONTEXT_LENGTH.search(str(exc)))


class Provider(Protocol):
    def complete(self, request: ChatRequest) -> ChatResponse: ...


def split_model_name(name: str, server_type: str | None = None) -> tuple[str, str]:
    """``provider/model`` -> (provider, model); a bare model takes ``server_type``."""
    provider, sep, model = name.partition("/")
    if sep and provider and model:
        return provider, model
    if server_type:
        return server_type, name
    raise UsageError(f"model_name={name!r} needs a provider: write provider/model "
                      "(e.g. openai/gpt-4o) or set server_type=PROVIDER")
