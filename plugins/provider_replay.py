"""``replay/NAME``: answers from a recorded run or a hand-written transcript; no network.

- ``replay/builtin``: the transcripts shipped with kbtool for its built-in tasks
  (``tasks/transcripts/*.yaml``: hand-written candidates, some fast, some wrong, some that
  do not compile, so every path of a search runs offline).
- ``replay/PATH`` or ``replay_path=PATH``: a transcript file, or a run directory whose
  recorded answers are served by request key (a recorded search replayed exactly).

A transcript maps task ids (or ``default``) to replies by kind: ``ideas`` (one text),
``generate`` (phase 0), ``improve`` (later phases) and ``fix`` (lists).  A list's entry is
``(7 * phase + agent + n) % len``, ``n`` counting from 0 within the chain: 0 for its
``generate``/``improve`` call, and for its fixes ``n = 0, 1, ...`` in turn (the first
feedback turn gets ``fix[0]``).  A task it does not know gets its kind's null candidate (the reference
itself, for KernelBench ``ModelNew = Model``), where the kind has one.
"""

from __future__ import annotations

import importlib.resources
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.errors import KbtoolError, UsageError
from kbtool.llm.model import ChatRequest, ChatResponse, ProviderError
from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from kbtool.config import Config


def builtin_transcripts() -> Path:
    return Path(str(importlib.resources.files("kbtool_tasks"))) / "transcripts"


class ReplayProvider:
    cacheable = False  # answers cost nothing; a shared cache would only hide edits

    def __init__(self, source: Path, config: Config | None = None) -> None:
        self.source = source
        self.config = config
        self.calls: Path | None = None
        self.transcript: dict[str, Any] = {"default": {}}
        if source.is_dir() and (source / "calls").is_dir():
            self.calls = source / "calls"
        elif source.is_dir() and any(source.glob("*.yaml")):
            for path in sorted(source.glob("*.yaml")):  # a folder of transcripts, merged
                self._read(path)
        elif source.is_file():
            self._read(source)
        elif source.is_dir():
            raise UsageError(f"replay: {source} is not a kbtool run directory")
        else:
            raise UsageError(f"replay: no transcript or run directory at {source}")

    def _read(self, path: Path) -> None:
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UsageError(f"replay: {path} is not valid YAML: {exc}".splitlines()[0]) \
                from None
        self.transcript.update(data.get("tasks") or {})
        self.transcript["default"] = {**self.transcript["default"], **(data.get("default") or {})}

    def complete(self, request: ChatRequest) -> ChatResponse:
        text = self._recorded(request) if self.calls else self._scripted(request)
        words = sum(len(content.split()) for _, content in request.messages)
        return ChatResponse(text=text, prompt_tokens=words, completion_tokens=len(text.split()),
                            cost_usd=0.0, model=f"replay:{self.source.name}")

    def _recorded(self, request: ChatRequest) -> str:
        assert self.calls is not None
        path = self.calls / f"{request.key()}.json"
        if not path.exists():
            raise ProviderError(f"replay: {self.source} has no answer to {request.sample}",
                                retryable=False)
        return json.loads(path.read_text())["response"]["text"]

    def _scripted(self, request: ChatRequest) -> str:
        meta = request.meta
        entry = self.transcript.get(meta.get("task", ""), self.transcript["default"])
        kind = meta.get("kind", "generate")
        if kind == "generate" and meta.get("seeded"):
            kind = "improve"
        replies = entry.get(kind) or self.transcript["default"].get(kind)
        if kind == "ideas":
            return replies or "1. Fuse the operations into one kernel."
        if not replies:
            return self._reference_as_candidate(request)
        # A chain's attempt 0 is its generate call: its first fix is attempt 1, fix[0].
        attempt = meta.get("attempt", 0) - (1 if kind == "fix" else 0)
        index = meta.get("phase", 0) * 7 + meta.get("agent", 0) + max(attempt, 0)
        return replies[index % len(replies)]

    def _reference_as_candidate(self, request: ChatRequest) -> str:
        """The task's null candidate (the reference itself), as its kind writes a reply."""
        from kbtool.config import Config
        from kbtool.task import catalog

        task_id = request.meta.get("task", "")
        try:
            task = catalog.resolve(task_id, self.config or Config())
            kind = catalog.kind_of(task)
            candidate = kind.null_candidate(task)
        except KbtoolError:
            candidate = None
        if candidate is None:
            return f"(replay: no answer for {task_id})"
        return f"(replay: the reference itself, no optimisation)\n{kind.format_candidate(candidate)}"


def make_replay(config: Config) -> ReplayProvider:
    _, _, name = config.model_name.partition("/")
    if config.replay_path is not None:
        return ReplayProvider(config.replay_path, config)
    if name == "builtin":
        return ReplayProvider(builtin_transcripts(), config)
    return ReplayProvider(Path(name).expanduser(), config)


@hookimpl
def register_providers(register: Callable[[str, Any], None]) -> None:
    register("replay", make_replay)
