"""``kbtool init DIR``: the default configuration and every prompt template, copied to edit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.app import app

CONFIG_NAME = "config.yaml"
TEMPLATES_NAME = "templates"


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="The folder to write (made if missing).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
) -> None:
    """Write the default configuration (DIR/config.yaml: every key, its default and what it
    means) and every task kind's prompt templates (DIR/templates/<kind>/) to edit; then
    `kbtool run --config DIR/config.yaml ...` uses both."""
    from kbtool.config import Config, annotated_yaml
    from kbtool.errors import UsageError
    from kbtool.plugin import registry
    from kbtool.util.files import write_atomic

    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a folder")
    templates = (directory / TEMPLATES_NAME).resolve()
    files: dict[Path, str] = {}
    for kind_name, kind in sorted(registry.TASK_KINDS.all().items()):
        if kind.templates is not None and kind.templates.is_dir():
            for source in sorted(kind.templates.glob("*.md")):
                files[templates / kind_name / source.name] = source.read_text()
    config = Config(templates_dir=templates)
    # A default computed where kbtool runs (the cache under $XDG_CACHE_HOME) stays a comment,
    # so the file does not pin this machine's value.
    machine = tuple(name for name, field in Config.model_fields.items()
                    if field.default_factory is not None
                    and isinstance(getattr(config, name), Path))
    files[directory / CONFIG_NAME] = (
        "# kbtool's configuration with every default (written by `kbtool init`; see\n"
        "# docs/config.md). Edit it, then: kbtool run --config "
        f"{directory / CONFIG_NAME} ...\n"
        "# The prompt templates are the files under templates_dir (one folder per task kind).\n\n"
        + annotated_yaml(config, commented=machine))
    existing = [path for path in files if path.exists()]
    if existing and not force:
        raise UsageError(f"{existing[0]} exists ({len(existing)} of the files kbtool init "
                         "writes do); --force overwrites them")
    for path, text in files.items():
        write_atomic(path, text)
    kinds = len({path.parent for path in files if path.is_relative_to(templates)})
    print(f"wrote {directory / CONFIG_NAME} and {len(files) - 1} prompt templates of {kinds} "
          f"task kinds under {templates}")
    print(f"next: kbtool run --config {directory / CONFIG_NAME} ...")
