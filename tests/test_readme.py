"""The README's promises: two commands up front, and CI runs the test command verbatim."""

from __future__ import annotations

import re

from tests.helpers import REPO


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_readme_starts_with_two_commands() -> None:
    commands = readme_commands()[:2]
    assert len(commands) == 2
    assert "kbtool run" in commands[0] and "torch==2.13.0" in commands[0]
    assert "pytest" in commands[1] and "torch==2.13.0" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert readme_commands()[1] in ci_lines
