"""LLM providers through LiteLLM: Gemini, Anthropic, DeepSeek, gateways and 100 more.

``litellm/MODEL``  LiteLLM's own model name: ``litellm/gemini/gemini-2.5-pro``,
                   ``litellm/openrouter/...``, ``litellm/hosted_vllm/...``
``gemini/MODEL``, ``anthropic/MODEL``, ``deepseek/MODEL``  shorthands for
                   ``litellm/gemini/MODEL`` and so on

LiteLLM reads the keys from the environment (GEMINI_API_KEY, ANTHROPIC_API_KEY,
DEEPSEEK_API_KEY, ...).  It is imported on the first call, so kbtool starts without it.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from kbtool.llm.model import ChatRequest, ChatResponse, ProviderError
from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from kbtool.config import Config

ALIASES = ("gemini", "anthropic", "deepseek")
_RETRYABLE = ("RateLimitError", "ServiceUnavailableError", "InternalServerError", "Timeout",
              "APIConnectionError", "BadGatewayError", "APIResponseValidationError")
_NOT_RETRYABLE = ("AuthenticationError", "PermissionDeniedError", "BadRequestError",
                  "NotFoundError", "UnprocessableEntityError")
_import_lock = threading.Lock()


def _litellm() -> Any:
    with _import_lock:
        # The bundled price table instead of a download at import (compute nodes are offline).
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise ProviderError("the litellm provider needs LiteLLM: pip install 'kbtool[litellm]'",
                                retryable=False) from None
        litellm.suppress_debug_info = True
        return litellm


def _classify(litellm: Any, exc: Exception) -> bool:
    """Whether ``exc`` raised by litellm.completion is worth retrying."""
    if any(s in str(exc).lower() for s in ("insufficient_quota", "exceeded your current quota")):
        return False  # out of credit: a 429 that no retry fixes
    for names, retryable in ((_NOT_RETRYABLE, False), (_RETRYABLE, True)):
        classes = tuple(c for c in (getattr(litellm, n, None) for n in names) if isinstance(c, type))
        if classes and isinstance(exc, classes):
            return retryable
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and (status in (408, 409, 429) or status >= 500)


class LiteLLMProvider:
    def __init__(self, config: Config, prefix: str = "") -> None:
        self.config = config
        self.prefix = prefix   # "gemini/" for the gemini/ shorthand

    def complete(self, request: ChatRequest) -> ChatResponse:
        litellm = _litellm()
        model = self.prefix + request.model
        try:
            reply = litellm.completion(
                model=model, messages=request.openai_messages(), temperature=request.temperature,
                max_tokens=request.max_tokens, timeout=self.config.llm_timeout_s, num_retries=0,
                drop_params=True)   # e.g. no temperature for reasoning models
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            raise ProviderError(f"litellm {model}: {str(exc)[:500]}",
                                retryable=_classify(litellm, exc),
                                status=status if isinstance(status, int) else None) from None
        choices = getattr(reply, "choices", None)
        if not choices:
            raise ProviderError(f"litellm {model}: malformed reply: no choices", retryable=True)
        text = getattr(getattr(choices[0], "message", None), "content", None)
        if not isinstance(text, str):
            raise ProviderError(f"litellm {model}: malformed reply: no content", retryable=True)
        usage = getattr(reply, "usage", None)
        try:
            cost = float(litellm.completion_cost(completion_response=reply))
        except Exception:  # a model missing from LiteLLM's price table: kbtool's `prices`
            cost = None
        return ChatResponse(text=text, prompt_tokens=getattr(usage, "prompt_tokens", None) or 0,
                            completion_tokens=getattr(usage, "completion_tokens", None) or 0,
                            cost_usd=cost, model=getattr(reply, "model", None) or model)


@hookimpl
def register_providers(register: Any) -> None:
    register("litellm", LiteLLMProvider)
    for alias in ALIASES:
        register(alias, lambda config, alias=alias: LiteLLMProvider(config, prefix=f"{alias}/"))
