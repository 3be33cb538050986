"""``kbtool plugins``, ``kbtool config show`` and ``kbtool version``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kbtool import __version__
from kbtool.cli.app import ConfigFile, ConfigProfile, app, config_app
from kbtool.plugin import manager


@app.command("plugins")
def plugins_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the loaded plugins with their versions and the hooks they implement."""
    infos = manager.plugin_infos()
    if as_json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in infos:
        origin = "built-in" if info.builtin else "third-party"
        print(f"{info.name} {info.version} ({origin}): {', '.join(info.hooks)}")


@config_app.command("show")
def config_show(
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Print the resolved configuration as YAML (task kinds' sections under their names)."""
    from kbtool.cli.common import make_config, no_words
    from kbtool.config import config_as_yaml, split_overrides

    words, overrides = split_overrides(args or [])
    no_words("config show", words)
    print(config_as_yaml(make_config(overrides, config_file, config_profile)), end="")


@app.command("version")
def version_command() -> None:
    """Print kbtool's version."""
    print(__version__)
