"""The task kind: everything specific to one kind of task, behind one interface.

The core (evaluator, queue, workers, search, report, monitor) knows tasks only through
their kind.  A kind says what a task's payload is, which settings it takes, how its
prompts read, how a candidate is taken from an LLM reply, which baselines it is timed
against, how a candidate is checked, and which fields it adds to a result.  Subclass
:class:`TaskKind`, override what differs from the defaults, and register an instance:

    @hookimpl
    def register_task_kinds(register):
        register("mykind", MyKind())

Two sides:

- *parent side* methods (``payload`` ... ``feedback``) run in kbtool's own process and never
  run candidate code;
- *child side* methods (``inspect``, ``baseline``, ``check``, ``side_by_side``, ``audit``)
  run in an
  isolated child process forked for the purpose (``kbtool.sandbox``), with a time limit, a
  memory limit and the sandbox; they report stages through ``report.stage(name)``.

``kbtool.task.contract`` checks a kind against this contract; kbtool's tests run it on
every registered kind.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from kbtool.config.model import Config, Section
from kbtool.task.model import Task

if TYPE_CHECKING:
    from kbtool.evaluation.result import EvalResult
    from kbtool.report.sections import KindReport, RunView
    from kbtool.sandbox.isolation import Reporter
    from kbtool.timing.base import Timer

log = logging.getLogger(__name__)

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
# Other names models give a language in a fence.
_LANGUAGE_ALIASES = {"python": ("py", "python3"), "diff": ("patch", "udiff")}


class NoDetails(BaseModel):
    """A kind that adds no fields to results."""

    model_config = ConfigDict(extra="forbid")


def fenced_blocks(reply: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of a reply, in order."""
    return [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]


class TaskKind:
    """Base class of task kinds; every method has a sensible default but ``check``."""

    # -- what the kind is ----------------------------------------------------------------
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Validates ``Task.payload`` (``payload()`` returns it typed).
    payload_model: ClassVar[type[BaseModel] | None] = None
    #: Its settings section (``kbtool config show`` lists it under ``Section.name``).
    settings_model: ClassVar[type[Section] | None] = None
    #: The fields its ``check`` adds to a result (top-level keys of ``kbtool eval --json``).
    details_model: ClassVar[type[BaseModel]] = NoDetails
    #: Names of the baselines a candidate is timed against; the first is the default
    #: ``mode``.  None: candidates are judged, not timed (no speedup).
    baselines: ClassVar[tuple[str, ...]] = ()
    #: A candidate's file suffix and the fence language of its code in prompts and replies.
    candidate_suffix: ClassVar[str] = ".py"
    candidate_language: ClassVar[str] = "python"
    #: Folder of its prompt templates (``ideas``, ``generate``, ``improve``, ``fix``,
    #: ``format_error``, ``system``; ``$name`` placeholders filled from ``prompt_context``).
    templates: ClassVar[Path | None] = None
    #: Modules the warm evaluation process imports once, so no check pays for them.
    preload: ClassVar[tuple[str, ...]] = ()
    #: Whether ``check`` runs candidate code in its own process (True, the default: a
    #: crash or an escaped exception there may be the candidate's, a ``runtime_error``).
    #: False for a judge that runs candidates only in processes it starts and confines
    #: (KernelBench's, perf's): an exception escaping such a check, the check's process
    #: dying, or a malformed verdict is kbtool's own failure, ``internal_error``.
    check_runs_candidate: ClassVar[bool] = True
    #: The columns a data set's rows must have to hold tasks of this kind (the ``hf``
    #: source, docs/datasets.md); empty: the kind reads no data sets.
    row_columns: ClassVar[tuple[str, ...]] = ()

    # -- parent side ----------------------------------------------------------------------
    def payload(self, task: Task) -> BaseModel | dict[str, Any]:
        """The task's payload, validated by ``payload_model`` when the kind has one."""
        if self.payload_model is None:
            return dict(task.payload)
        return self.payload_model.model_validate(task.payload)

    def settings(self, config: Config) -> Section | None:
        return config.section(self.settings_model) if self.settings_model else None

    def task_from_file(self, path: Path) -> Task | None:
        """A task defined by one file (``kbtool eval path/to/file``), if this kind reads such
        files; None otherwise."""
        return None

    def tasks_from_rows(self, rows: list[dict[str, Any]], source: str,
                        config: Config) -> list[Task]:
        """The tasks a data set's rows hold (each row has ``row_columns``, maybe more), with
        ids under ``source``; raise ``UsageError`` naming the first row that holds no valid
        task.  Kinds with ``row_columns`` implement it."""
        raise NotImplementedError(f"task kind {self.name!r} reads no data sets")

    def pack(self, task: Task) -> Task:
        """The task made self-contained, to be sent to a worker that cannot read this
        machine's files (inline what ``path`` points to)."""
        return task

    def describe(self, task: Task) -> str:
        """What ``kbtool tasks show`` prints below the metadata (the reference)."""
        if task.path is not None and task.path.is_file():
            return task.path.read_text()
        return json.dumps(task.payload, indent=2, default=str)

    def fields(self, task: Task) -> dict[str, Any]:
        """What ``kbtool tasks show --json`` adds to the task's id, kind, level, ...: the
        payload's fields by default."""
        payload = self.payload(task)
        return payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload

    def labels(self, task: Task) -> dict[str, str]:
        """Small facts about a task that a run records for its reports (a repository
        item's task type, a package's name)."""
        return {}

    def prepare(self, task: Task, config: Config) -> None:
        """Make what the task needs on this machine before any child step runs (downloads,
        environments).  Runs in the evaluating process (a worker's, under the queue), which
        may use the network and write under ``config.cache_dir``; the isolated children
        only read what it made.  The default: nothing to prepare."""

    def configure(self, task: Task, config: Config) -> Config:
        """The settings to evaluate ``task`` with (e.g. only the overrides that apply to it);
        raise ``UsageError`` for settings that can never apply."""
        return config

    def check_settings(self, tasks: list[Task], config: Config) -> None:
        """Raise ``UsageError`` for settings that apply to none of ``tasks`` (a misspelled
        name in a batch, where ``configure`` drops what does not apply to one task)."""

    def resolve_mode(self, config: Config) -> str | None:
        """The baseline speedups are against: ``mode`` or the kind's first baseline."""
        if not self.baselines:
            return None
        if config.mode is None:
            return self.baselines[0]
        if config.mode not in self.baselines:
            from kbtool.errors import UsageError

            raise UsageError(f"mode={config.mode}: tasks of kind {self.name or 'this'!r} are "
                             f"timed against {', '.join(self.baselines)}")
        return config.mode

    def resolve_baselines(self, config: Config) -> list[str]:
        """The baselines one evaluation reports a speedup against (``EvalResult.speedups``):
        the ``mode`` first, then those of ``config.baselines`` this kind names (a run's
        other names belong to its other kinds).  A paired ``check`` times the reference
        under each of them (they arrive as ``config.baselines``)."""
        mode = self.resolve_mode(config)
        if mode is None:
            return []
        return [mode, *(b for b in dict.fromkeys(config.baselines or ())
                        if b in self.baselines and b != mode)]

    def baseline_key(self, task: Task, config: Config, mode: str) -> str | None:
        """What identifies the reference's timing under ``mode`` (the problem's text, its
        sizes, ...), so a measured baseline can be reused; None: never cached."""
        return None

    def prompt_context(self, task: Task, config: Config) -> dict[str, str]:
        """Values for the ``$placeholders`` of this kind's templates."""
        return {"reference": self.describe(task)}

    def extract_candidate(self, reply: str) -> str | None:
        """The candidate in an LLM reply: its last fenced block in ``candidate_language``
        (or unlabelled); None when the reply has none (the model is told, and retries)."""
        names = {self.candidate_language, "", *_LANGUAGE_ALIASES.get(self.candidate_language, ())}
        for lang, body in reversed(fenced_blocks(reply)):
            if lang in names:
                return body.strip("\n") + "\n"
        return None

    def candidate_from_file(self, text: str) -> str:
        """The candidate in a file given to ``kbtool eval --solution``: the file itself when it
        is plain code, else (a reply saved to a file: prose and fenced blocks) what
        ``extract_candidate`` takes from it, as ``kbtool run`` does from a reply.  Plain code:
        a file with no line that begins with a fence (```), or, for a Python kind, one that
        parses (a docstring may show a fence).  A reply without a block in the kind's language is
        checked as it is (its check says why it fails)."""
        fenced = any(line.startswith("```") for line in text.splitlines())
        if not fenced:
            return text
        if self.candidate_language == "python":
            try:
                ast.parse(text)
                return text
            except (SyntaxError, ValueError):
                pass
        found = self.extract_candidate(text)
        return text if found is None else found

    def format_candidate(self, candidate: str) -> str:
        """A candidate as a reply would hold it (the inverse of ``extract_candidate``)."""
        return f"```{self.candidate_language}\n{candidate.rstrip()}\n```\n"

    def null_candidate(self, task: Task) -> str | None:
        """A candidate that is the reference itself (true speedup 1.0), or None."""
        return None

    def feedback(self, result: EvalResult, config: Config) -> str:
        """What a fix prompt tells the model about a candidate that failed."""
        tail = (result.error or "")[-10_000:]
        status = result.status.value
        if status == "incorrect":
            return f"It ran but its results are wrong.\n{tail}"
        if status == "rejected":
            return f"It was rejected by the integrity checks: {tail}"
        if status == "timeout":
            return f"It timed out after {config.timeout_s:g} s.\n{tail}"
        what = "compile or load" if status == "compile_error" else "run"
        return f"It failed to {what}:\n{tail}"

    def report(self, view: RunView) -> KindReport | None:
        """What ``kbtool report`` shows of this kind's tasks beyond the core metrics
        (``kbtool.report.sections``); None: nothing more."""
        return None

    def details(self, result: EvalResult) -> BaseModel:
        """The fields this kind added to ``result``, typed (a field the core result also has,
        such as ``speedup_ci``, is taken from the core's)."""
        core = result.model_dump(mode="json", exclude=set(result.model_extra or {}))
        fields = {**{k: v for k, v in core.items() if v is not None},
                  **(result.model_extra or {})}
        return self.details_model.model_validate(
            {k: v for k, v in fields.items() if k in self.details_model.model_fields})

    # -- child side (an isolated process) -------------------------------------------------
    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        """Metadata (sizes, memory need, ...); raise ``TaskRefused`` for a task that cannot
        run here."""
        return {}

    def baseline(self, task: Task, config: Config, mode: str, timer: Timer,
                 report: Reporter) -> dict[str, Any]:
        """Time the reference under ``mode``; return ``{"timing": TimingStats dict}``."""
        raise NotImplementedError(f"task kind {self.name!r} has no baseline {mode!r}")

    def check(self, task: Task, candidate: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """Load, check and time a candidate; return ``EvalResult`` fields (``status``,
        ``correct``, ``error``, ``timing``, ``flags``, ...) and this kind's details."""
        raise NotImplementedError

    def side_by_side(self, task: Task, candidate: Path, config: Config, timer: Timer,
                     report: Reporter) -> dict[str, Any] | None:
        """Time reference and candidate alternately in one process; return ``baseline_ms``
        and ``runtime_ms``.  Used to re-check a suspiciously large speedup; None (the
        default): this kind cannot, and the speedup stays flagged, not re-measured."""
        return None

    def check_in_folder(self, task: Task, candidate: str, name: str, config: Config,
                        timer: Timer, report: Reporter) -> dict[str, Any]:
        """``check`` on ``candidate``'s text, in a fresh folder ``name`` of the working
        folder (an audit checks several candidates in one child)."""
        import os

        folder = Path.cwd() / name
        folder.mkdir()
        path = folder / f"candidate{self.candidate_suffix}"
        path.write_text(candidate)
        home = Path.cwd()
        os.chdir(folder)
        try:
            return self.check(task, path, config, timer, report)
        finally:
            os.chdir(home)

    def audit(self, task: Task, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """Check the task itself for its author (``kbtool tasks check``): a ``TaskAudit``
        dict, whose ``problems`` say in one line each what to fix.  Runs after ``inspect``
        succeeded (a task that does not load never gets here).  The default: the null
        candidate (the reference itself), checked like any candidate, must come out ``ok``."""
        from kbtool.task.model import TaskAudit

        audit = TaskAudit(task=task.id, checked=["loads here (inspect)"])
        null = self.null_candidate(task)
        if null is None:
            return audit.model_dump()
        result = self.check_in_folder(task, null, "null-candidate", config, timer, report)
        status = str(result.get("status", "?"))
        if status == "ok":
            audit.checked.append("the reference itself, checked as a candidate, is ok")
        else:
            error = str(result.get("error") or "").strip().splitlines()
            audit.problems.append(f"the reference itself, checked as a candidate, is {status}"
                                  + (f": {error[0][:300]}" if error else ""))
        return audit.model_dump()


class LegacyKind(TaskKind):
    """A kind registered before ``TaskKind`` existed (an object with ``inspect``,
    ``baseline``, ``check`` and maybe ``side_by_side``): the old core's behaviour around it
    (KernelBench-style ``ModelNew`` files timed against eager and compile)."""

    baselines = ("eager", "compile")

    def __init__(self, name: str, wrapped: Any) -> None:
        self.wrapped = wrapped
        self.kind_name = name

    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        return dict(self.wrapped.inspect(task, config))

    def baseline(self, task: Task, config: Config, mode: str, timer: Timer,
                 report: Reporter) -> dict[str, Any]:
        return dict(self.wrapped.baseline(task, config, mode, timer, report))

    def check(self, task: Task, candidate: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        return dict(self.wrapped.check(task, candidate, config, timer, report))

    def side_by_side(self, task: Task, candidate: Path, config: Config, timer: Timer,
                     report: Reporter) -> dict[str, Any] | None:
        method = getattr(self.wrapped, "side_by_side", None)
        return None if method is None else method(task, candidate, config, timer, report)

    def extract_candidate(self, reply: str) -> str | None:
        blocks = fenced_blocks(reply)
        for _, body in blocks:
            if "class ModelNew" in body:
                return body.strip() + "\n"
        return super().extract_candidate(reply)


def as_kind(name: str, thing: Any) -> TaskKind:
    """What ``register_task_kinds`` registered, as a ``TaskKind``."""
    if isinstance(thing, TaskKind):
        return thing
    log.warning("task kind %r does not subclass kbtool.task.kind.TaskKind; it runs through a "
                "compatibility adapter (deprecated)", name)
    return LegacyKind(name, thing)
