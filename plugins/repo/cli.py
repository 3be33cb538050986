"""``kbtool tasks build``: the plugin's command (added through ``register_commands``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile
from kbtool.errors import UsageError, invalid
from kbtool.util.files import write_atomic

EXAMPLE = ("kbtool tasks build packaging==26.0 --runner pytest --source-root src "
           "--deps pytest==8.4.2 --labels tests/test_version.py --files 'src/packaging/*.py' "
           "--out my-items")


def _readable_yaml(data: Any) -> str:
    """YAML with multi-line strings as literal blocks: answers read as the code they hold."""
    import yaml

    class Readable(yaml.SafeDumper):
        pass

    Readable.add_representer(str, lambda dumper, text: dumper.represent_scalar(
        "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))
    return yaml.dump(data, Dumper=Readable, sort_keys=False, width=100, allow_unicode=True)


def _words(values: list[str] | None) -> list[str]:
    return [w.strip() for v in values or [] for w in v.split(",") if w.strip()]


def build_command(
    source: Annotated[str, typer.Argument(
        help="A pip requirement naming one release (django==5.2.19), or a build.yaml of an "
             "earlier build (rebuilds it).")],
    out: Annotated[Path, typer.Option(help="The item folder to write.")],
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    runner: Annotated[str | None, typer.Option(help="django or pytest.")] = None,
    name: Annotated[str | None, typer.Option(help="Short name for task ids (default: the "
                                                  "requirement's project).")] = None,
    deps: Annotated[list[str] | None, typer.Option(help="Test dependencies (pip).")] = None,
    import_name: Annotated[str | None, typer.Option(help="Its top-level package.")] = None,
    source_root: Annotated[str | None, typer.Option(help="Folder its package is in.")] = None,
    test_root: Annotated[str | None, typer.Option(help="Folder of its tests.")] = None,
    labels: Annotated[list[str] | None, typer.Option(
        help="What to run for the survey (test labels or paths; repeat or comma-separate).")]
        = None,
    files: Annotated[list[str] | None, typer.Option(
        help="Globs of the source files to take methods from.")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Globs of files to skip.")] = None,
    method_gen: Annotated[int | None, typer.Option(help="Method generation items.")] = None,
    completion: Annotated[int | None, typer.Option(help="Completion items.")] = None,
    repair: Annotated[int | None, typer.Option(help="Repair items.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every choice (default 42).")] = None,
    failing_output_chars: Annotated[int | None, typer.Option(
        help="Repair items: the failing output kept, from its end (default 20000).")] = None,
    transcript: Annotated[Path | None, typer.Option(
        help="Also write replay answers for the items into this transcript (merged).")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Make repository items (method generation, completion, repair) from a repository's
    own test suite; see docs/repo-tasks.md."""
    import yaml
    from pydantic import ValidationError

    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool_plugins.repo.build import BuildOptions, build
    from kbtool_plugins.repo.build import transcript as replies

    _, overrides = split_overrides(args or [])
    config = make_config(overrides, config_file, config_profile)
    base: dict[str, Any] = {}
    if source.endswith((".yaml", ".yml")):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"build file not found: {source}")
        base = yaml.safe_load(path.read_text()) or {}
        spec = dict(base.get("spec") or {})
    else:
        project = source.split("==")[0].split("[")[0].strip().lower()
        spec = {"name": project, "requirement": source}
    given = {"runner": runner, "name": name, "import_name": import_name,
             "source_root": source_root, "test_root": test_root}
    spec.update({k: v for k, v in given.items() if v is not None})
    if deps:
        spec["deps"] = _words(deps)
    options: dict[str, Any] = {**base, "spec": spec}
    for key, values in (("labels", labels), ("files", files), ("exclude", exclude)):
        if values:
            options[key] = _words(values)
    counts = {"method_gen": method_gen, "completion": completion, "repair": repair}
    if any(v is not None for v in counts.values()):
        options["counts"] = {**options.get("counts", {}),
                             **{k: v for k, v in counts.items() if v is not None}}
    for key, value in (("seed", seed), ("failing_output_chars", failing_output_chars)):
        if value is not None:
            options[key] = value
    try:
        built = BuildOptions.model_validate(options)
    except ValidationError as exc:
        raise UsageError(f"tasks build: {invalid(exc, 'options')} (e.g. {EXAMPLE})") from None
    items = build(built, config.cache_dir, out)
    if transcript is not None:
        from kbtool_plugins.repo.dataset import load

        spec_made = load(out).spec
        existing = yaml.safe_load(transcript.read_text()) if transcript.is_file() else None
        data = existing or {"label": "answers generated by `kbtool tasks build` from the "
                                     "items (the original method, a wrong one, no code): "
                                     "NOT model output", "tasks": {}}
        prefix = f"repo/{spec_made.name}/"
        data["tasks"] = {k: v for k, v in (data.get("tasks") or {}).items()
                         if not k.startswith(prefix)}
        data["tasks"].update(replies(spec_made, items))
        write_atomic(transcript, _readable_yaml(data))
        print(f"replay answers for {len(items)} items written to {transcript}")


def register(tasks_app: typer.Typer) -> None:
    if not any(c.name == "build" for c in tasks_app.registered_commands):
        tasks_app.command("build")(build_command)
