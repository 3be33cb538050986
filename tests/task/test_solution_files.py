"""``kbtool eval --solution FILE`` reads a file as ``kbtool run`` reads a reply
(``TaskKind.candidate_from_file``): a reply saved to a file gives its code block, plain code
stays as it is, for every built-in kind."""

from __future__ import annotations

from kbtool.plugin import registry

MODEL_NEW = "import torch\n\n\nclass ModelNew(torch.nn.Module):\n    pass\n"
DIFF = ("diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n")


def test_a_reply_in_a_file_gives_the_block_kbtool_run_takes() -> None:
    for name, code in (("kernelbench", MODEL_NEW), ("repo", "def f(x):\n    return x\n"),
                       ("perf", DIFF)):
        kind = registry.TASK_KINDS.get(name)
        reply = (f"Sure. First a sketch:\n```\nnot this\n```\nThe answer:\n"
                 f"{kind.format_candidate(code)}\nThat should be faster.\n")
        assert kind.candidate_from_file(reply) == kind.extract_candidate(reply) == code, name
        assert kind.candidate_from_file(code) == code, name


def test_plain_code_that_shows_a_fence_stays_as_it_is() -> None:
    """A docstring may show a fenced example: Python that parses is plain code."""
    kind = registry.TASK_KINDS.get("kernelbench")
    code = f'"""Use it so:\n\n```python\nModelNew()\n```\n"""\n{MODEL_NEW}'
    assert kind.candidate_from_file(code) == code
    diff = DIFF.replace("+x = 2\n", "+x = '''\n+```\n+'''\n")
    assert registry.TASK_KINDS.get("perf").candidate_from_file(diff) == diff


def test_a_reply_without_a_block_is_checked_as_it_is() -> None:
    kind = registry.TASK_KINDS.get("repo")
    text = "I would change the method, but I am not sure how.\n```\n"
    assert kind.candidate_from_file(text) == text
