"""``kbtool serve``: serve an open model, one OpenAI-compatible server per GPU."""

from __future__ import annotations

from typing import Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, app
from kbtool.errors import UsageError


@app.command("serve")
def serve_command(
    args: Annotated[list[str], typer.Argument(
        help="MODEL, then key=value settings (gpu_ids=0,1 base_port=3117 serve_command=...).")],
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Serve MODEL on GPUs: one server per GPU on port base_port + GPU, until Ctrl-C or SIGTERM.

    kbtool serve Qwen/Qwen2.5-Coder-7B-Instruct gpu_ids=0,1 base_port=3117
    """
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.llm.serve import ModelServers

    words, overrides = split_overrides(args)
    if len(words) != 1:
        raise UsageError("kbtool serve takes one MODEL, then key=value settings; got "
                         + (" ".join(words) if words else "no MODEL"))
    config = make_config(overrides, config_file, config_profile)
    servers = ModelServers.from_config(config, words[0],
                                       config.serve_log_dir or config.data_dir / "serve")
    servers.start()
    for server in servers.servers:
        print(f"GPU {server.gpu}: {server.base_url} (log {server.log})", flush=True)
    print(f"serving {words[0]}: kbtool run model_name=vllm/{words[0]} "
          f"llm_base_url={servers.base_urls[0]} ..., or autorun=true to let a run start its own; "
          "Ctrl-C or SIGTERM stops", flush=True)
    servers.serve_until_stopped()
