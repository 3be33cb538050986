"""The task-kind contract, checked: what a kind must get right for the core to work with it.

``check_kind`` looks at a kind as registered (its class attributes and the methods it
overrides); ``check_task`` exercises its parent-side methods on one of its tasks (payload,
packing for a worker, prompts, the candidate round trip).  kbtool's tests run both on every
registered kind; a plugin's own tests can call them on theirs::

    from kbtool.task.contract import check_kind, check_task
    assert check_kind("mykind", MyKind()) == []
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from kbtool.config import Config, Section
from kbtool.evaluation.result import EvalResult
from kbtool.task.kind import LegacyKind, TaskKind
from kbtool.task.model import Task

# The prompts a search asks a kind for (kbtool.search.prompts.TEMPLATE_NAMES).
PROMPTS = ("system", "ideas", "generate", "improve", "fix", "format_error")
# What the search fills in besides the kind's own prompt context.
SEARCH_VALUES = {"device_description": "a CPU", "idea": "an idea", "code": "x = 1",
                 "feedback": "it failed", "solution": "x = 1", "runtime_ms": "1.0",
                 "speedup": "1.00"}


def _overrides(kind: TaskKind, method: str) -> bool:
    return getattr(type(kind), method) is not getattr(TaskKind, method)


def check_kind(name: str, kind: Any) -> list[str]:
    """What is wrong with ``kind`` as registered under ``name`` (empty: nothing)."""
    problems: list[str] = []
    if not isinstance(kind, TaskKind):
        return [f"{name}: does not subclass kbtool.task.kind.TaskKind"]
    if isinstance(kind, LegacyKind):
        return [f"{name}: registered without subclassing TaskKind (runs through an adapter)"]
    if kind.name and kind.name != name:
        problems.append(f"{name}: calls itself {kind.name!r}")
    if not _overrides(kind, "check"):
        problems.append(f"{name}: does not implement check()")
    if not isinstance(kind.baselines, tuple) or len(set(kind.baselines)) != len(kind.baselines):
        problems.append(f"{name}: baselines must be a tuple of distinct names")
    elif kind.baselines and not _overrides(kind, "baseline"):
        problems.append(f"{name}: names baselines {kind.baselines} but does not implement "
                        "baseline()")
    core = set(EvalResult.model_fields)
    clash = sorted(core & set(kind.details_model.model_fields))
    if clash:
        problems.append(f"{name}: details_model redefines result fields {clash}")
    if kind.payload_model is not None and not issubclass(kind.payload_model, BaseModel):
        problems.append(f"{name}: payload_model is not a pydantic model")
    model = kind.settings_model
    if model is not None:
        if not (isinstance(model, type) and issubclass(model, Section)):
            problems.append(f"{name}: settings_model does not subclass kbtool.config.Section")
        else:
            if not model.name or model.name in Config.model_fields:
                problems.append(f"{name}: its section needs a name that is no core key "
                                f"(got {model.name!r})")
            for key in (*model.flat_keys, *model.local_keys):
                if key not in model.model_fields:
                    problems.append(f"{name}: section key {key!r} is listed but not a field")
                elif key in Config.model_fields:
                    problems.append(f"{name}: flat key {key!r} shadows a core key")
    if not kind.candidate_suffix.startswith("."):
        problems.append(f"{name}: candidate_suffix must start with a dot")
    if kind.row_columns and not _overrides(kind, "tasks_from_rows"):
        problems.append(f"{name}: names row_columns but does not implement tasks_from_rows()")
    if kind.templates is not None:
        missing = [p for p in PROMPTS if not (kind.templates / f"{p}.md").is_file()]
        if missing:
            problems.append(f"{name}: templates folder lacks {missing}")
    return problems


def check_task(kind: TaskKind, task: Task, config: Config | None = None) -> list[str]:
    """What goes wrong when the core uses ``kind`` on ``task`` (empty: nothing)."""
    from kbtool.search.prompts import Templates

    config = config or Config()
    problems: list[str] = []
    try:
        kind.payload(task)
    except Exception as exc:
        problems.append(f"{task.id}: payload does not validate: {exc}")
    packed = kind.pack(task)
    again = Task.model_validate_json(packed.model_dump_json())
    if again != packed:
        problems.append(f"{task.id}: the packed task does not survive JSON")
    if kind.describe(packed) != kind.describe(task):
        problems.append(f"{task.id}: a packed task describes itself differently")
    candidate = kind.null_candidate(task) or "candidate text"
    if kind.extract_candidate(kind.format_candidate(candidate)) != candidate.rstrip("\n") + "\n":
        problems.append(f"{task.id}: extract_candidate(format_candidate(c)) is not c")
    reply = f"Here is the answer.\n\n{kind.format_candidate(candidate)}\nIt should pass.\n"
    if kind.candidate_from_file(reply) != kind.extract_candidate(reply):
        problems.append(f"{task.id}: kbtool eval reads a reply in a file otherwise than "
                        f"kbtool run reads it (candidate_from_file vs extract_candidate)")
    if kind.candidate_from_file(candidate) != candidate:
        problems.append(f"{task.id}: a file of plain code is not taken as it is "
                        f"(candidate_from_file)")
    if kind.templates is not None:
        templates = Templates(kind, task.kind)
        values = {**SEARCH_VALUES, **kind.prompt_context(task, kind.configure(task, config))}
        for prompt in PROMPTS:
            try:
                templates.render(prompt, **values)
            except Exception as exc:
                problems.append(f"{task.id}: prompt {prompt!r} does not render: {exc}")
    return problems
