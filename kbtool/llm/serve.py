"""Serving an open model on this machine's GPUs: one OpenAI-compatible server per GPU.

``kbtool serve MODEL gpu_ids=0,1 base_port=3117`` starts them and waits for Ctrl-C or
SIGTERM; ``kbtool run ... autorun=true`` starts them for the run and stops them at its end,
also after an error or Ctrl-C.  Server ``i`` runs ``serve_command`` (vLLM's by default) with
``CUDA_VISIBLE_DEVICES`` set to its GPU, on port ``base_port + GPU index``, in a session of
its own; it is healthy once ``GET /health`` answers 200, logs to ``<log_dir>/gpu<G>.log``,
and is stopped by SIGTERM to its process group, then SIGKILL.  A run's tasks are spread
over the servers in the run's task order, and every call of one task goes to the same
server (its prefix cache holds that task's conversation).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from kbtool.config import Config
from kbtool.errors import RunError, UsageError
from kbtool.llm.model import ChatRequest, ChatResponse, Provider, split_model_name
from kbtool.plugin import registry
from kbtool.sandbox.namespaces import popen_tied

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PLACEHOLDERS = ("model", "port", "host", "gpu")
_POLL_S = 0.25   # health polls are cheap; a short interval makes small servers ready sooner
STOP_GRACE_S = 5.0

# Run in the server's process before it becomes the server (exec keeps the setting): the
# kernel sends it SIGTERM when kbtool dies, even by SIGKILL, so no server outlives its
# kbtool holding a GPU.  Linux only; elsewhere the command runs as it is.
_PARENT_DEATH_GUARD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # kbtool died before the guard was set\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n")


def serve_argv(template: str, model: str, gpu: int, port: int) -> list[str]:
    """The command of one server: ``template`` split like a shell line, then each word
    formatted with ``{model}``, ``{port}``, ``{host}`` and ``{gpu}`` (``{{``: a brace)."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise UsageError(f"serve_command {template!r}: {exc}") from None
    if not words:
        raise UsageError("serve_command is empty")
    try:
        return [w.format(model=model, port=port, host=HOST, gpu=gpu) for w in words]
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"serve_command {template!r}: bad placeholder {exc} (known: "
                         + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")") from None


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind (uvicorn sets SO_REUSEADDR): a port in TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _tail(path: Path, chars: int = 300) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in text[-4000:].splitlines() if line.strip()]
    return lines[-1][-chars:] if lines else ""


@dataclass
class ModelServer:
    """One server process on one GPU."""

    gpu: int
    port: int
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}/health"

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        argv = self.argv
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-c", _PARENT_DEATH_GUARD, str(os.getpid()), *argv]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(self.gpu)}
        with open(self.log, "ab") as out:
            self.proc = popen_tied(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def describe_exit(self) -> str:
        last = _tail(self.log)
        return (f"the server for GPU {self.gpu} (port {self.port}) exited with code "
                f"{self.exit_code()}; its log is {self.log}"
                + (f" (last line: {last})" if last else ""))

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the session it leads: its workers too

    def leader_gone(self) -> bool:
        """Whether the server's first process has exited; it is left unreaped (WNOWAIT),
        so its process-group id cannot be reused before the group's final SIGKILL."""
        if self.proc is None or self.proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None


class ModelServers:
    """The servers of one model, one per GPU; a context manager that stops them all."""

    def __init__(self, model: str, gpu_ids: list[int], base_port: int, command: str,
                 log_dir: Path, timeout_s: float) -> None:
        if not gpu_ids:
            raise UsageError("gpu_ids is empty: name at least one GPU (gpu_ids=0,1)")
        if len(set(gpu_ids)) != len(gpu_ids):
            raise UsageError(f"gpu_ids={gpu_ids} names a GPU twice")
        if min(gpu_ids) < 0 or base_port < 1 or base_port + max(gpu_ids) > 65535:
            raise UsageError(f"base_port={base_port} with gpu_ids={gpu_ids} gives ports outside "
                             "1-65535")
        self.model = model
        self.timeout_s = timeout_s
        self.servers = [ModelServer(gpu, base_port + gpu, serve_argv(command, model, gpu,
                                                                     base_port + gpu),
                                    log_dir / f"gpu{gpu}.log") for gpu in gpu_ids]
        self._stopped = threading.Event()

    @classmethod
    def from_config(cls, config: Config, model: str, log_dir: Path) -> ModelServers:
        return cls(model, list(config.gpu_ids), config.base_port, config.serve_command, log_dir,
                   config.serve_timeout_s)

    @property
    def base_urls(self) -> list[str]:
        return [s.base_url for s in self.servers]

    def start(self) -> None:
        """Start every server and wait until all are healthy; on any failure stop them all
        and raise a one-line error that names the log to read."""
        program = self.servers[0].argv[0]
        if shutil.which(program) is None:
            raise UsageError(f"serve_command: {program!r} is not installed or not on PATH"
                             + (" (pip install vllm, or set serve_command=...)"
                                if program == "vllm" else ""))
        busy = [s.port for s in self.servers if not port_is_free(s.port)]
        if busy:
            raise RunError(f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} "
                           f"on {HOST} in use: stop what listens there or pick another base_port")
        try:
            for server in self.servers:
                server.start()
                log.info("serving %s on GPU %d at %s (log %s)", self.model, server.gpu,
                         server.base_url, server.log)
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        waiting = list(self.servers)
        while waiting:
            for server in list(waiting):
                if server.exit_code() is not None:
                    raise RunError(server.describe_exit().replace("exited", "exited before it "
                                                                  "was healthy", 1))
                if server.healthy():
                    waiting.remove(server)
            if waiting and time.monotonic() > deadline:
                names = ", ".join(f"GPU {s.gpu} ({s.log})" for s in waiting)
                raise RunError(f"no healthy answer from GET /health within serve_timeout_s="
                               f"{self.timeout_s:g} from: {names}")
            if waiting:
                time.sleep(_POLL_S)

    def check(self) -> None:
        """Raise if a server has exited."""
        for server in self.servers:
            if server.exit_code() is not None:
                raise RunError(server.describe_exit())

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to every server's process group; SIGKILL to the groups after ``grace_s``
        (at once where the first process is gone: what is left of the group is killed)."""
        started = [s for s in self.servers if s.proc is not None]
        for server in started:
            server.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while any(not s.leader_gone() for s in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        for server in started:
            server.signal_group(signal.SIGKILL)
            assert server.proc is not None
            server.proc.wait()
            log.info("stopped the server for GPU %d (exit code %s)", server.gpu,
                     server.proc.returncode)
        self._stopped.set()

    def serve_until_stopped(self) -> None:
        """Block until SIGTERM or Ctrl-C (then stop the servers and return) or until a server
        dies (then stop the others and raise).  Main thread only."""
        previous = signal.signal(signal.SIGTERM, lambda *_: self._stopped.set())
        try:
            while not self._stopped.wait(1.0):
                self.check()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.stop()

    def router(self, config: Config, task_ids: list[str]) -> RoutedProvider:
        """A provider of ``config.model_name``'s kind per server, each task on one of them."""
        provider_name, _ = split_model_name(config.model_name, config.server_type)
        factory = registry.PROVIDERS.get(provider_name)
        providers = [factory(config.model_copy(update={"llm_base_url": url}))
                     for url in self.base_urls]
        return RoutedProvider(providers, {t: i % len(providers) for i, t in enumerate(task_ids)})

    def __enter__(self) -> ModelServers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RoutedProvider:
    """Sends every call of a task to the same provider (server): ``routes`` maps task ids to
    servers; a call of an unknown task goes by a hash of its task (or sample), also stable."""

    def __init__(self, providers: list[Provider], routes: dict[str, int]) -> None:
        self.providers = providers
        self.routes = routes
        self.cacheable: bool = getattr(providers[0], "cacheable", True)

    def server_for(self, request: ChatRequest) -> int:
        task = str(request.meta.get("task") or request.sample)
        if task in self.routes:
            return self.routes[task]
        return int(hashlib.sha256(task.encode()).hexdigest(), 16) % len(self.providers)

    def complete(self, request: ChatRequest) -> ChatResponse:
        return self.providers[self.server_for(request)].complete(request)

    def check(self) -> None:
        for provider in self.providers:
            check: Any = getattr(provider, "check", None)
            if check is not None:
                check()
