"""LLM providers for the OpenAI API and OpenAI-compatible servers (vLLM, SGLang, llama.cpp, ...).

``openai/MODEL``  the OpenAI API (OPENAI_API_KEY; OPENAI_BASE_URL for another endpoint)
``vllm/MODEL``    a vLLM server at VLLM_BASE_URL (else OPENAI_BASE_URL); no key needed
``local/MODEL``   any OpenAI-compatible server at KBTOOL_LOCAL_BASE_URL (else OPENAI_BASE_URL)

The setting ``llm_base_url`` overrides these variables (``autorun=true`` sets it per server).

The client makes no retries of its own (``max_retries=0``): ``kbtool.llm.client.LLMClient``
retries what this module marks retryable.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kbtool.llm.model import ChatRequest, ChatResponse, ProviderError
from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from kbtool.config import Config


@dataclass(frozen=True)
class Endpoint:
    base_url_vars: tuple[str, ...]
    key_vars: tuple[str, ...]
    needs_key: bool   # False: a placeholder key is sent when none is set


ENDPOINTS = {
    "openai": Endpoint(("OPENAI_BASE_URL",), ("OPENAI_API_KEY",), needs_key=True),
    # Local servers never get OPENAI_API_KEY: a real OpenAI key must not leave for them.
    "vllm": Endpoint(("VLLM_BASE_URL", "OPENAI_BASE_URL"), ("VLLM_API_KEY",), needs_key=False),
    "local": Endpoint(("KBTOOL_LOCAL_BASE_URL", "OPENAI_BASE_URL"), ("KBTOOL_LOCAL_API_KEY",),
                      needs_key=False),
}

# OpenAI reasoning models accept only the default temperature.
_NO_TEMPERATURE = re.compile(r"^(o\d|gpt-5)")
_RETRYABLE_STATUS = {408, 409, 429}


def _env(names: tuple[str, ...]) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


class OpenAIProvider:
    """Chat completions through the official ``openai`` client."""

    def __init__(self, config: Config, name: str = "openai") -> None:
        self.config = config
        self.name = name
        self.endpoint = ENDPOINTS[name]
        self._client: Any = None
        self._lock = threading.Lock()

    def check(self) -> None:
        """Fail now, not at the first call, when the client cannot be made (dry runs)."""
        self._get_client()

    def _get_client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> Any:
        try:
            import openai
        except ImportError:
            raise ProviderError(f"the {self.name} provider needs the openai package: "
                                "pip install openai", retryable=False) from None
        base_url = self.config.llm_base_url or _env(self.endpoint.base_url_vars)
        key = _env(self.endpoint.key_vars)
        if self.name != "openai" and base_url is None:
            raise ProviderError(f"{self.name}/MODEL needs the server's URL: set "
                                f"{self.endpoint.base_url_vars[0]} (e.g. http://localhost:8000/v1)",
                                retryable=False)
        if key is None:
            if self.endpoint.needs_key and base_url is None:
                raise ProviderError("OPENAI_API_KEY is not set: export OPENAI_API_KEY=sk-... "
                                    "(or OPENAI_BASE_URL for a server that needs no key)",
                                    retryable=False)
            key = "unset"
        return openai.OpenAI(api_key=key, base_url=base_url, max_retries=0,
                             timeout=self.config.llm_timeout_s)

    def complete(self, request: ChatRequest) -> ChatResponse:
        client = self._get_client()
        import openai

        args: dict[str, Any] = {"model": request.model, "messages": request.openai_messages()}
        if self.name == "openai":  # max_tokens is refused by OpenAI's reasoning models
            args["max_completion_tokens"] = request.max_tokens
            if not _NO_TEMPERATURE.match(request.model):
                args["temperature"] = request.temperature
        else:                      # older compatible servers know only max_tokens
            args["max_tokens"] = request.max_tokens
            args["temperature"] = request.temperature
        where = f"{self.name}/{request.model}"
        try:
            reply = client.chat.completions.create(**args)
        except openai.APITimeoutError:
            raise ProviderError(f"{where}: no reply within llm_timeout_s={self.config.llm_timeout_s}",
                                retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{where}: connection failed ({exc.__cause__ or exc})",
                                retryable=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retryable = (status in _RETRYABLE_STATUS or status >= 500) and \
                getattr(exc, "code", None) != "insufficient_quota"
            raise ProviderError(f"{where}: HTTP {status}: {_detail(exc)}", retryable=retryable,
                                status=status) from None
        except (openai.APIError, ValueError) as exc:  # a body that is not a chat completion
            raise ProviderError(f"{where}: malformed reply ({exc})", retryable=True) from None
        return _response(reply, where)


def _detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])[:500]
    return str(getattr(exc, "message", exc))[:500]


def _response(reply: Any, where: str) -> ChatResponse:
    choices = getattr(reply, "choices", None)
    if not choices:
        raise ProviderError(f"{where}: malformed reply: no choices", retryable=True)
    text = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(text, str):
        reason = getattr(choices[0], "finish_reason", None)
        raise ProviderError(f"{where}: malformed reply: no content (finish_reason={reason})",
                            retryable=True)
    usage = getattr(reply, "usage", None)
    return ChatResponse(text=text, prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
                        completion_tokens=getattr(usage, "completion_tokens", None) or 0,
                        cost_usd=None, model=getattr(reply, "model", None) or "")


@hookimpl
def register_providers(register: Any) -> None:
    for name in ENDPOINTS:
        register(name, lambda config, name=name: OpenAIProvider(config, name))
