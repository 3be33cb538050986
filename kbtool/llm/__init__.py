"""LLM calls: the request/response model and the client (cache, retries, budgets)."""

from kbtool.llm.model import ChatRequest, ChatResponse, Provider, ProviderError, split_model_name

__all__ = ["ChatRequest", "ChatResponse", "Provider", "ProviderError", "split_model_name"]
