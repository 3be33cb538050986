"""The ``multiturn`` strategy: generate -> check -> feed back the test output -> repeat.

One chat per task: the model answers, the candidate is checked, and until the tests pass or
``max_iter`` turns are spent the next message tells it what the tests said (the tail of
their output, ``feedback_chars``).  ``max_iter=1`` is single turn.  Ablations:
``feedback=false`` says only that the tests did not pass; ``history=false`` sends each turn
the task alone, with what the tests said of the last answer (and that answer, unless
``feedback`` is off too).  When the conversation no longer fits the model's context, the oldest answer and
its feedback are dropped.  A check whose tests could not run (``infrastructure``) ends the
item without counting against the model.  Turn ``t`` is recorded as step ``t`` of phase 0,
agent 0 (``tasks/<task>/phase0/agent0/step<t>/``), so a resumed run replays every recorded
call and evaluation and goes on where it stopped.
"""

from __future__ import annotations

from kbtool.evaluation.result import Status
from kbtool.runs.events import FormatError, PhaseDone
from kbtool.search.engine import Candidate, SearchContext
from kbtool.task.model import Task
from kbtool_plugins.repo.settings import RepoSettings

INFRASTRUCTURE = "infrastructure"
NO_FEEDBACK = "The tests did not all pass."


def drop_oldest_turn(messages: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """The chat without its oldest answer and the feedback on it (the task stays)."""
    if len(messages) < 4:
        return None
    del messages[1:3]
    return messages


def multiturn(ctx: SearchContext, task: Task) -> None:
    own = ctx.config.section(RepoSettings)
    kind = ctx.kind(task)
    first = ctx.render("generate", task, idea="")
    messages: list[tuple[str, str]] = [("user", first)]
    passed = False
    for turn in range(own.max_iter):
        if ctx.stopped:
            break
        where = ctx.store.layout.step_dir(task.id, 0, 0, turn)
        sample = f"{task.id}/p0/a0/s{turn}"
        ctx.store.write(where / "prompt.md", messages[-1][1])
        reply = ctx.ask(task, sample, messages,
                        {"kind": "generate" if turn == 0 else "fix", "phase": 0, "agent": 0,
                         "attempt": turn, "seeded": False},
                        shorten=drop_oldest_turn if own.history else None)
        if reply is None:
            break
        ctx.store.write(where / "response.md", reply)
        code = kind.extract_candidate(reply)
        if code is None:
            ctx.store.emit(FormatError(sample=sample, task=task.id))
            feedback = ctx.render("format_error", task)
        else:
            path = ctx.store.write(ctx.store.layout.candidate(where, kind.candidate_suffix),
                                   code)
            result = ctx.evaluate(task, code, path, sample)
            ctx.store.write(where / "eval.json", result.model_dump_json(indent=2))
            candidate = Candidate(task.id, 0, 0, turn, "reference", path, result)
            ctx.record(task).add(candidate)
            if candidate.correct:
                passed = True
                break
            if INFRASTRUCTURE in result.flags or result.status == Status.internal_error:
                break  # the tests could not run, or kbtool failed: nothing to tell the model
            feedback = ctx.render("fix", task, code=code, feedback=(
                ctx.feedback(result) if own.feedback else NO_FEEDBACK))
        if own.history:
            messages += [("assistant", reply), ("user", feedback)]
        else:  # the task again, with at most the last answer (when there is feedback on it)
            last = kind.format_candidate(code) if code is not None else reply
            shown = f"Your previous answer:\n{last}\n" if own.feedback else ""
            messages = [("user", f"{first}\n\n{shown}{feedback}")]
    ctx.store.emit(PhaseDone(sample=f"{task.id}/p0", task=task.id, phase=0,
                             correct=int(passed)))
