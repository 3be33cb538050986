"""Bug injection: every family the issue names, spliced into the method's own text."""

from __future__ import annotations

import ast

from kbtool_plugins.repo.mutate import mutations

METHOD = '''def f(self, a, b=2):
    """Doc: 1 < 2 is not touched."""
    # a comment that stays
    if a < b and not self.x:
        return a + b * 3  # trailing
    while a:
        a = a[1:]
    return [i for i in range(a) if i % 2 == 0]
'''


def test_every_family_is_found_and_each_bug_is_one_small_change() -> None:
    found = mutations(METHOD, seed=1)
    families = {description.split(":")[0] for _, description in found}
    assert families == {"operator", "comparison", "off_by_one", "negation", "boolean",
                        "wrong_name"}
    for text, description in found:
        assert text != METHOD, description
        ast.parse(text)
        changed = [(a, b) for a, b in zip(METHOD.splitlines(), text.splitlines(), strict=True)
                   if a != b]
        assert len(changed) == 1, description  # one line, the rest as written
        assert "# a comment that stays" in text and '"""Doc: 1 < 2 is not touched."""' in text


def test_the_same_seed_gives_the_same_bugs_in_the_same_order() -> None:
    assert mutations(METHOD, seed=7) == mutations(METHOD, seed=7)
    assert [d for _, d in mutations(METHOD, seed=7)] != [d for _, d in mutations(METHOD, seed=8)]


def test_parentheses_only_where_needed() -> None:
    texts = dict((d, t) for t, d in mutations(METHOD, seed=3))
    negated = next(t for d, t in texts.items() if d.startswith("negation: the condition `a`"))
    assert "    while not a:\n" in negated
