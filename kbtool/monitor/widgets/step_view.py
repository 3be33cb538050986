"""The selected step's files, in tabs: the candidate, its evaluation, the prompt, the reply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static, TabbedContent, TabPane

from kbtool.evaluation.result import EvalResult
from kbtool.monitor.state import Step
from kbtool.monitor.text import STATUS_STYLE, fmt_ms, read_text, verdict

TABS = (("Code", "code"), ("Eval", "eval"), ("Prompt", "prompt"), ("Reply", "response"))
CORE_FIELDS = frozenset(EvalResult.model_fields)  # the rest of a result is its kind's details
DETAIL_CHARS = 300  # one detail's value is cut after this many characters


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS] + "…"


def eval_text(path: Path, step: Step | None) -> Text:
    """Status, numbers (or pass/fail for an untimed kind), flags, the kind's details and the
    error tail of one evaluation: from its ``eval.json``, else from the eval event."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        if step is None:
            return Text("(no evaluation)", "dim")
        data = {"status": step.status, "runtime_ms": step.runtime_ms,
                "baseline_ms": step.baseline_ms, "speedup": step.speedup,
                "flags": step.flags, **step.details}
    text = Text()
    status = data.get("status", "?")
    text.append("status   ")
    text.append(status, style=f"bold {STATUS_STYLE.get(status, '')}")
    if data.get("runtime_ms") is None and data.get("baseline_ms") is None:
        shown = verdict(status, None) if status == "ok" else "fail"
        text.append("\nresult   ")
        text.append(shown, style=STATUS_STYLE[shown])
        text.append(" (not timed)", style="dim")
    else:
        speed = data.get("speedup")
        text.append(f"\nruntime  {fmt_ms(data.get('runtime_ms'))} ms   baseline "
                    f"{fmt_ms(data.get('baseline_ms'))} ms ({data.get('mode', '?')})   speedup "
                    f"{'-' if speed is None else f'{speed:.3f}x'}")
    timing = data.get("timing")
    if timing:
        text.append(f"\ntiming   {timing.get('trials')} trials, 95% CI "
                    f"{fmt_ms(timing.get('ci95_low_ms'))}-{fmt_ms(timing.get('ci95_high_ms'))} "
                    f"ms ({timing.get('stop_reason')})")
    if data.get("flags"):
        text.append(f"\nflags    {', '.join(data['flags'])}", style="magenta")
    for finding in data.get("findings") or []:
        text.append(f"\n  {finding}", style="dim")
    details = [(k, v) for k, v in data.items() if k not in CORE_FIELDS and v not in (None, [], {})]
    for i, (key, value) in enumerate(details):
        text.append(f"\n{'details' if i == 0 else '':8s} {key} {_value(value)}")
    if data.get("stage_s"):
        text.append("\nstages   " + ", ".join(f"{k} {v:.2f}s"
                                              for k, v in data["stage_s"].items()))
    if data.get("error"):
        tail = "\n".join(data["error"].rstrip().splitlines()[-40:])
        text.append("\n\nerror (tail)\n", style="bold")
        text.append(tail, style="red")
    return text


def candidate_file(folder: Path, run_dir: Path, step: Step | None) -> Path | None:
    """The step's candidate: where its eval event says, else ``candidate.*`` in its folder
    (the suffix is its kind's)."""
    if step is not None and step.path:
        return run_dir / step.path
    return next(iter(sorted(folder.glob("candidate.*"))), None)


class StepView(TabbedContent):
    """Code, Eval, Prompt and Reply of the step picked in the tree."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for title, tab in TABS:  # the panes, as a ``with TabbedContent():`` block adds them
            self.compose_add_child(TabPane(title, VerticalScroll(
                Static(id=f"{tab}-text", classes="content")), id=tab))
        self._keys: dict[str, Any] = {}  # tab -> what it shows (see _set)

    def _set(self, tab: str, content: Any, key: Any = None) -> None:
        """Show ``content`` in ``tab``, unless it shows the same already (``key``: what
        tells it, for content that is not a Text): a poll that relabels the shown step
        re-reads its files, but the code is highlighted again only when it changed."""
        if key is None and isinstance(content, Text):
            key = (content.plain, str(content.style), tuple(content.spans))
        if key is not None and self._keys.get(tab) == key:
            return
        self._keys[tab] = key
        self.query_one(f"#{tab}-text", Static).update(content)

    def show_nothing(self) -> None:
        self._set("code", Text("(no step selected: pick one in the tree)", "dim"))

    def show_ideas(self, reply: str | None) -> None:
        self._set("code", Text("(the ideas step writes no code)", "dim"))
        self._set("eval", Text("(not evaluated)", "dim"))
        self._set("prompt", Text("(the ideas prompt is not stored)", "dim"))
        self._set("response", Text(reply or "(no reply)"))

    def show_step(self, folder: Path, run_dir: Path, step: Step | None) -> None:
        path = candidate_file(folder, run_dir, step)
        code = read_text(path) if path is not None else None
        if code and path is not None:
            self._set("code", Syntax(code, Syntax.guess_lexer(str(path), code),
                                     line_numbers=True, word_wrap=True, theme="ansi_dark"),
                      key=("syntax", str(path), code))
        else:
            self._set("code", Text("(no candidate: the reply had no code block, or it has "
                                   "not arrived yet)", "dim"))
        self._set("eval", eval_text(folder / "eval.json", step))
        prompt = read_text(folder / "prompt.md")
        reply = read_text(folder / "response.md")
        self._set("prompt", Text(prompt) if prompt else Text("(no prompt)", "dim"))
        self._set("response", Text(reply) if reply else Text("(no reply yet)", "dim"))
