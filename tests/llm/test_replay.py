"""``replay/PATH``: a transcript's answers, in the order a chain asks for them."""

from __future__ import annotations

from pathlib import Path

import yaml

from kbtool.llm.model import ChatRequest
from kbtool_plugins.provider_replay import ReplayProvider


def ask(provider: ReplayProvider, kind: str, attempt: int, phase: int = 0,
        agent: int = 0) -> str:
    """A call as the search's chains and the multiturn strategy make it."""
    meta = {"task": "t/1", "kind": kind, "phase": phase, "agent": agent, "attempt": attempt,
            "seeded": False}
    request = ChatRequest(provider="replay", model="x", messages=(("user", "go"),),
                          sample=f"t/1/p{phase}/a{agent}/s{attempt}", meta=meta)
    return provider.complete(request).text


def test_the_first_feedback_turn_gets_the_first_fix(tmp_path: Path) -> None:
    path = tmp_path / "transcript.yaml"
    path.write_text(yaml.safe_dump({"tasks": {"t/1": {
        "generate": ["g0", "g1"], "fix": ["f0", "f1", "f2"]}}}))
    replay = ReplayProvider(path)
    # Turn 0 generates, turns 1, 2, 3 are fixes: fix[0], fix[1], fix[2] in turn.
    assert [ask(replay, "generate", 0)] + [ask(replay, "fix", t) for t in (1, 2, 3)] == \
        ["g0", "f0", "f1", "f2"]
    # Another agent's chain starts one further on in each list.
    assert ask(replay, "generate", 0, agent=1) == "g1"
    assert ask(replay, "fix", 1, agent=1) == "f1"
