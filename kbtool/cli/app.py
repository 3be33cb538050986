"""The Typer application and its command groups; the commands live in sibling modules
(one per command or group) and register themselves on these objects.

Every command module is imported at start-up (Typer needs the signatures for ``--help``):
a command imports what only it needs (configuration, evaluation, torch, scipy...) inside
its function, so that the other commands do not pay for it (``bench/startup.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="kbtool",
    help="Search for faster code with LLM agents, and measure it honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="List and inspect tasks.", no_args_is_help=True)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
worker_app = typer.Typer(help="Serve and watch the shared-directory evaluation queue.",
                         no_args_is_help=True)
submit_app = typer.Typer(help="Submit worker pools and runs to a batch scheduler (Slurm).",
                         no_args_is_help=True)
jobs_app = typer.Typer(help="Status of the submitted kbtool jobs; cancel them.")
profiles_app = typer.Typer(help="HPC site profiles (hpc/*.yaml, plugins, your own).",
                           no_args_is_help=True)
image_app = typer.Typer(help="Build the containerized worker's image.", no_args_is_help=True)
for group, name in ((tasks_app, "tasks"), (config_app, "config"), (worker_app, "worker"),
                    (submit_app, "submit"), (jobs_app, "jobs"), (profiles_app, "profiles"),
                    (image_app, "image")):
    app.add_typer(group, name=name)

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="YAML config file (layered over ~/.config/kbtool/config.yaml, ./kbtool.yaml).")]
ConfigProfile = Annotated[str | None, typer.Option(
    "--config-profile", help="Named profile from the config files (built in: quick, publish).")]
Sizes = Annotated[list[str] | None, typer.Option(
    "--size", help="KernelBench tasks: override a module-level size constant, e.g. "
                   "--size batch_size=16 (the setting sizes.NAME=VALUE).")]
