"""Prompt templates (``templates/*.md``, overridable with ``templates_dir``) and the
extraction of code from replies."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from string import Template

from kbtool.errors import KbtoolError

TEMPLATE_NAMES = ("system", "ideas", "generate", "improve", "fix", "format_error")
_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)
_IDEA = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.+?)\s*$", re.MULTILINE)


class Templates:
    def __init__(self, override_dir: Path | None = None) -> None:
        builtin = Path(str(importlib.resources.files("kbtool_templates")))
        if override_dir is not None and not override_dir.is_dir():
            raise KbtoolError(f"templates_dir {override_dir} is not a folder")
        self.sources: dict[str, Path] = {}
        for name in TEMPLATE_NAMES:
            user = override_dir / f"{name}.md" if override_dir else None
            self.sources[name] = user if user is not None and user.is_file() else \
                builtin / f"{name}.md"
        self._templates = {name: Template(path.read_text()) for name, path in
                           self.sources.items()}

    def render(self, name: str, **values: object) -> str:
        try:
            return self._templates[name].substitute(**{k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise KbtoolError(f"template {self.sources[name]} uses ${exc.args[0]}, which "
                              f"kbtool does not provide for '{name}' prompts") from None


def extract_code(reply: str) -> str | None:
    """The fenced code block that defines ``ModelNew`` (else the first Python block)."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(reply)]
    for _, body in blocks:
        if "class ModelNew" in body:
            return body.strip() + "\n"
    for lang, body in blocks:
        if lang in ("python", "py", ""):
            return body.strip() + "\n"
    return None


def parse_ideas(reply: str, count: int) -> list[str]:
    """Numbered or bulleted ideas, trimmed or repeated to ``count`` (the reply's first line
    when it has no list)."""
    ideas = [m.group(1) for m in _IDEA.finditer(reply)][:10]
    if not ideas:
        first = reply.strip().splitlines()[0] if reply.strip() else "make it faster"
        ideas = [first]
    return [ideas[i % len(ideas)] for i in range(count)]
