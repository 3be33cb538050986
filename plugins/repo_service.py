"""Repository checks as a service: ``kbtool sandbox serve`` (``repo.service``) and the
``restapi`` evaluation backend that sends checks to it (``repo.restapi``)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile
from kbtool.errors import RunError, UsageError, unknown
from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from kbtool.config import Config

DEFAULT_PORT = 8731


def sandbox_serve(
    args: Annotated[list[str] | None, typer.Argument(
        help="key=value settings (test_timeout_s=60 memory_limit_mb=4096 sandbox=required "
             "repo_data=[DIR] ...).")] = None,
    host: Annotated[str, typer.Option(
        help="Interface to listen on; anything but loopback needs KBTOOL_SANDBOX_TOKEN.")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one, printed).")] = DEFAULT_PORT,
    workspaces: Annotated[int | None, typer.Option(
        min=1, help="Items checked at once (default: the CPU count).")] = None,
    repo: Annotated[list[str] | None, typer.Option(
        help="Serve this repository (a data set's name); repeat for more. Default: every "
             "data set's.")] = None,
    max_request_mb: Annotated[float | None, typer.Option(
        min=0.001, help="Larger request bodies are answered 413 (default 2).")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Serve repository checks over HTTP (the seed's POST /run_item), until Ctrl-C or SIGTERM.

    kbtool sandbox serve --port 8731 --workspaces 4 --repo django test_timeout_s=60
    """
    import uvicorn

    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool_plugins.repo.service import (
        TOKEN_ENV,
        ServiceSettings,
        check_options,
        create_app,
        is_loopback,
    )

    words, overrides = split_overrides(args or [])
    if words:
        raise UsageError(f"kbtool sandbox serve takes key=value settings, not {words[0]!r}")
    config = make_config(overrides, config_file, config_profile)
    token = os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise UsageError(f"--host {host} opens the service beyond this machine: set "
                         f"{TOKEN_ENV} to the bearer token clients must send")
    settings = ServiceSettings(repos=served_repos(config, repo or []),
                               workspaces=workspaces or os.cpu_count() or 1,
                               checks=check_options(config), token=token,
                               **({} if max_request_mb is None else
                                  {"max_request_bytes": int(max_request_mb * (1 << 20))}))
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise RunError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    names = ", ".join(f"{r.spec.requirement}" for r in settings.repos.values())

    def ready() -> None:
        print(f"sandbox service on http://{host}:{bound} ({settings.workspaces} workspaces; "
              f"{names}); Ctrl-C or SIGTERM stops", flush=True)

    server = uvicorn.Server(uvicorn.Config(create_app(settings, on_ready=ready),
                                           log_level="warning", timeout_graceful_shutdown=5))
    server.run(sockets=[sock])


def served_repos(config: Config, names: list[str]) -> dict[str, Any]:
    """The repositories of the data sets named (all when none), fetched once."""
    from kbtool_plugins.repo import repository
    from kbtool_plugins.repo.dataset import builtin_folders, load
    from kbtool_plugins.repo.settings import RepoSettings

    specs: dict[str, Any] = {}
    for folder in [*builtin_folders(), *config.section(RepoSettings).repo_data]:
        spec = load(folder).spec
        specs.setdefault(spec.name, spec)
    for name in names:
        if name not in specs:
            raise unknown("repository", name, specs, hint="add its items with repo_data=[DIR]")
    chosen = names or list(specs)
    if not chosen:
        raise UsageError("no repository to serve: no data set is installed (repo_data=[DIR])")
    return {name: repository.fetch(specs[name], config.cache_dir) for name in chosen}


def restapi_backend(config: Config) -> Any:
    from kbtool_plugins.repo.restapi import RestApiBackend

    return RestApiBackend(config)


@hookimpl
def register_commands(cli: typer.Typer) -> None:
    sandbox = typer.Typer(help="The sandbox REST service for repository checks.",
                          no_args_is_help=True)
    sandbox.command("serve")(sandbox_serve)
    cli.add_typer(sandbox, name="sandbox")


@hookimpl
def register_eval_backends(register: Callable[[str, Any], None]) -> None:
    register("restapi", restapi_backend)
