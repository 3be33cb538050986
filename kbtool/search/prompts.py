"""Prompt templates (each task kind's ``templates`` folder, overridable with
``templates_dir``) and the parsing of the ideas step's reply."""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from kbtool.errors import UsageError
from kbtool.task.kind import TaskKind

TEMPLATE_NAMES = ("system", "ideas", "generate", "improve", "fix", "format_error")
_IDEA = re.compile(r"^\s*(?:\d+[.)]|[-*])\s+(.+?)\s*$", re.MULTILINE)


class Templates:
    """The prompts of one task kind.  A ``templates_dir`` overrides any of them, per kind
    (``DIR/<kind>/<name>.md``) or for every kind (``DIR/<name>.md``)."""

    def __init__(self, kind: TaskKind, kind_name: str, override_dir: Path | None = None) -> None:
        if override_dir is not None and not override_dir.is_dir():
            raise UsageError(f"templates_dir {override_dir} is not a folder")
        self.kind_name = kind_name
        self.sources: dict[str, Path] = {}
        folders = [override_dir / kind_name, override_dir] if override_dir else []
        if kind.templates is not None:
            folders.append(kind.templates)
        for name in TEMPLATE_NAMES:
            found = next((f / f"{name}.md" for f in folders if (f / f"{name}.md").is_file()), None)
            if found is not None:
                self.sources[name] = found
        self._templates = {name: Template(path.read_text()) for name, path in
                           self.sources.items()}

    def render(self, name: str, **values: object) -> str:
        if name not in self._templates:
            raise UsageError(f"task kind {self.kind_name!r} has no {name!r} prompt template "
                             f"(put {name}.md in templates_dir/{self.kind_name}/)")
        try:
            return self._templates[name].substitute(**{k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise UsageError(f"template {self.sources[name]} uses ${exc.args[0]}, which "
                             f"kbtool does not provide for '{name}' prompts") from None


def parse_ideas(reply: str, count: int) -> list[str]:
    """Numbered or bulleted ideas, trimmed or repeated to ``count`` (the reply's first line
    when it has no list)."""
    ideas = [m.group(1) for m in _IDEA.finditer(reply)][:10]
    if not ideas:
        first = reply.strip().splitlines()[0] if reply.strip() else "make it faster"
        ideas = [first]
    return [ideas[i % len(ideas)] for i in range(count)]
