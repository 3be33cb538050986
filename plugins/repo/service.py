"""The sandbox REST service: repository checks over HTTP (``kbtool sandbox serve``).

Wire-compatible with the seed's sandbox API, ``POST /run_item?do_edit=true|false`` with
``{idx, dp_id, file_path, replace_content, method_name, start_line, end_line, tests}``
(lines 1-based, inclusive) answered by ``{datapoint, test_output, edited_file}``; kbtool adds
``result`` (the judge's verdict and per-test outcomes, ``runner.RunResult``) and two optional
request fields, ``repo`` (which of the served repositories; without it, the one served
repository whose files hold ``file_path`` and the tests) and ``repo_sha256`` (refused unless
it is the served release's archive).  Bodies past ``max_request_bytes`` are answered 413;
error answers never repeat more than ``ERROR_CHARS`` of a request's text.
``do_edit=false`` runs the tests on the pristine file.  ``GET /health`` says what is
served; ``GET /metrics`` is Prometheus text (every answer of 400 or more counted by its
code).

Checks go through ``runner.run_item``: a fresh workspace per item, the repository's own
tests under kbtool's sandbox, a verdict the candidate cannot forge.  The service keeps N
*workspaces*; a request waits for a free one.  A workspace is a process of its own (the
sandboxed child of every item is forked from it: forking this threaded server would be
unsafe) and a scratch folder that every item's workspace is made in.  After each item the
folder is emptied and checked and the process must be alive (the reset); a workspace whose
reset fails is replaced by a new one.

A bearer token (``KBTOOL_SANDBOX_TOKEN``) guards ``/run_item`` and ``/metrics`` when set; it
is required to bind anything but the loopback interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import multiprocessing
import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from kbtool import __version__
from kbtool.config import Config
from kbtool.errors import UsageError
from kbtool_plugins.repo import containers
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import (
    MAX_TESTS,
    RequestError,
    RunLimits,
    RunRequest,
    RunResult,
    TestOutcome,
    run_item,
    test_file,
)
from kbtool_plugins.repo.settings import RepoSettings

log = logging.getLogger(__name__)

TOKEN_ENV = "KBTOOL_SANDBOX_TOKEN"
_BEARER = HTTPBearer(auto_error=False)  # module-level: FastAPI resolves annotations by name
ERROR_CHARS = 300  # the most of a request's text an error answer repeats
MAX_REQUEST_BYTES = 2 << 20  # default limit of a request's body (a method, or a whole file)
# Beyond the run's own limits (run_item's child gets timeout + 60 s): a workspace process
# that gives no answer by then is hung, and is replaced.
_HARD_MARGIN_S = 90.0


class RunItem(RunRequest):
    """The body of ``POST /run_item``: the seed's fields, and kbtool's optional two."""

    idx: int = Field(description="the client's index of the item (echoed)")
    dp_id: int | str = Field(description="the data point's id (echoed)")
    replace_content: str = Field(
        description="the text that replaces start_line..end_line (ignored when do_edit=false)")
    method_name: str
    start_line: int = Field(ge=1)
    end_line: int = Field(ge=0)
    repo: str | None = Field(None, description="which served repository (without it: the one "
                                               "that has file_path and the tests)")
    repo_sha256: str | None = Field(None, description="refused unless the served archive's")

    @field_validator("tests", mode="before")
    @classmethod
    def _first_tests(cls, value: Any) -> Any:
        """At most MAX_TESTS run, as in the seed: the first ones."""
        return value[:MAX_TESTS] if isinstance(value, list) else value

    @field_validator("end_line")
    @classmethod
    def _after_start(cls, value: int, info: ValidationInfo) -> int:
        """Checked here too, so that the 422 names the field."""
        start = info.data.get("start_line")
        if isinstance(start, int) and value < start - 1:
            raise ValueError(f"end_line {value} is before start_line {start}")
        return value

    def request(self, do_edit: bool) -> RunRequest:
        fields = self.model_dump(include=set(RunRequest.model_fields))
        if not do_edit:
            fields["replace_content"] = None
        return RunRequest.model_validate(fields)


class RunItemReply(BaseModel):
    """The answer: the seed's three fields, and the judge's result."""

    model_config = ConfigDict(extra="forbid")

    datapoint: dict[str, Any] = Field(description="the request as it was received")
    test_output: str = Field(description="per-test outcomes, then the tail of the output")
    edited_file: str = Field(description="the file the tests ran on")
    result: RunResult


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    workspaces: int = Field(description="workspaces serving now")
    wanted: int = Field(description="workspaces asked for")
    busy: int
    queued: int
    repos: dict[str, str] = Field(description="served repositories: name -> archive SHA-256")
    pids: list[int] = Field(description="the workspaces' processes")
    test_timeout_s: float


def field_error(field: str, message: str, status: int = 422) -> HTTPException:
    """An error in FastAPI's shape, naming the body field it is about (its message cut
    short: a request's field may be megabytes, and an error never echoes it)."""
    return HTTPException(status, detail=[{"type": "value_error", "loc": ["body", field],
                                          "msg": _short(message)}])


def _short(text: str, limit: int = ERROR_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class Guard:
    """ASGI middleware: every answer of 400 or more is counted in ``errors`` (whichever part
    of the app refused the request), and a body larger than ``limit`` bytes is answered 413
    before the app sees it (by its ``Content-Length``, or as it arrives when chunked: the
    body is read here, at most ``limit`` bytes, and handed on whole)."""

    def __init__(self, app: Any, limit: int, metrics: Metrics) -> None:
        self.app, self.limit, self.metrics = app, limit, metrics

    async def __call__(self, scope: dict[str, Any], receive: Callable[[], Any],
                       send: Callable[[dict[str, Any]], Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self.metrics.errors.labels(str(message["status"])).inc()
            await send(message)

        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._too_large(sending)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(sending)
                return
            if not message.get("more_body", False):
                break
        whole = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Any:
            return whole.pop() if whole else await receive()

        await self.app(scope, replay, sending)

    async def _too_large(self, send: Callable[[dict[str, Any]], Any]) -> None:
        body = json.dumps({"detail": f"the request is larger than this service's limit of "
                                     f"{self.limit} bytes (--max-request-mb)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


# -- the workspaces ----------------------------------------------------------------------------
def _workspace_main(conn: Connection, scratch: str) -> None:
    """A workspace's process: check the items it is sent, one at a time."""
    os.environ["TMPDIR"] = scratch  # run_item makes each item's scratch in here
    tempfile.tempdir = None
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the service is gone
            return
        repo, request, options = job
        try:
            engine = None if options.engine == "local" else containers.engine(options.engine)
            reply: tuple[str, Any] = ("ok", run_item(
                repo, request, options.limits, options.sandbox, options.max_processes,
                engine=engine).model_dump(mode="json"))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}")
        conn.send(reply)


class CheckOptions(BaseModel):
    """How every item is checked: what a local check of the ``repo`` kind applies."""

    model_config = ConfigDict(extra="forbid")

    limits: RunLimits = Field(default_factory=RunLimits)
    sandbox: Literal["auto", "required", "off"] = "auto"
    max_processes: int = Field(256, ge=1)
    engine: Literal["local", "podman", "apptainer"] = Field(
        "local", description="where the tests run: the sandbox here, or a container")


class WorkspaceError(RuntimeError):
    """A workspace that cannot go on (its process died or hung, its folder stays dirty)."""


class Workspace:
    def __init__(self, number: int, root: Path) -> None:
        self.number = number
        self.dir = Path(tempfile.mkdtemp(prefix=f"ws{number}-", dir=root))
        context = multiprocessing.get_context("spawn")  # a clean process: no threads of ours
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_workspace_main, args=(child, str(self.dir)),
                                       name=f"kbtool-sandbox-ws{number}", daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        return self.process.pid or 0

    def run(self, repo: Repository, request: RunRequest, options: CheckOptions) -> RunResult:
        limits = options.limits
        try:
            self._conn.send((repo, request, options))
            if not self._conn.poll(limits.timeout_s + _HARD_MARGIN_S):
                # Killed, so its reset fails: a late answer must never reach another item.
                self.process.kill()
                raise WorkspaceError(f"workspace {self.number} gave no answer in "
                                     f"{limits.timeout_s + _HARD_MARGIN_S:g} s")
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise WorkspaceError(f"workspace {self.number}'s process died "
                                 f"(exit code {self.process.exitcode}): {exc}") from None
        if status != "ok":
            raise WorkspaceError(f"workspace {self.number}: {value}")
        return RunResult.model_validate(value)

    def reset(self) -> None:
        """Ready for the next item: the folder empty, the process alive; else raise."""
        for leftover in list(self.dir.iterdir()):
            _remove(leftover)
        left = [p.name for p in self.dir.iterdir()]
        if left:
            raise WorkspaceError(f"workspace {self.number}: {', '.join(left[:3])} stays in "
                                 f"{self.dir}")
        if not self.process.is_alive():
            raise WorkspaceError(f"workspace {self.number}'s process is gone (exit code "
                                 f"{self.process.exitcode})")

    def close(self) -> None:
        self._conn.close()
        self.process.kill()
        self.process.join(5)
        _remove(self.dir)


def _remove(path: Path) -> None:
    """Remove a file or tree, read-only parts too; what cannot go stays (reset checks)."""
    def writable(func: Any, name: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), stat.S_IRWXU)
            os.chmod(name, stat.S_IRWXU)
            func(name)

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=writable)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.items = Counter("kbtool_sandbox_items", "Items checked, by verdict", ["status"],
                             registry=r)
        self.errors = Counter("kbtool_sandbox_errors", "Requests answered with an error, by "
                              "HTTP status", ["code"], registry=r)
        self.item_seconds = Histogram("kbtool_sandbox_item_seconds", "Wall time of a check",
                                      registry=r, buckets=(.25, .5, 1, 2, 5, 10, 30, 60, 120))
        self.wait_seconds = Histogram("kbtool_sandbox_queue_seconds", "Wait for a workspace",
                                      registry=r, buckets=(.01, .1, .5, 1, 5, 30, 120, 600))
        self.queued = Gauge("kbtool_sandbox_queued", "Requests waiting for a workspace",
                            registry=r)
        self.busy = Gauge("kbtool_sandbox_busy", "Workspaces checking an item", registry=r)
        self.workspaces = Gauge("kbtool_sandbox_workspaces", "Workspaces serving", registry=r)
        self.replaced = Counter("kbtool_sandbox_workspaces_replaced", "Workspaces replaced "
                                "after a failed reset", registry=r)


class Pool:
    """N workspaces; requests wait in line for a free one (first come, first served)."""

    def __init__(self, size: int, root: Path, metrics: Metrics) -> None:
        self.size = size
        self.root = root
        self.metrics = metrics
        self.all: dict[int, Workspace] = {}
        self._free: asyncio.Queue[Workspace] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._threads = ThreadPoolExecutor(size, thread_name_prefix="kbtool-sandbox")
        self._lock = threading.Lock()
        self._numbers = iter(range(1 << 30))
        self.queued = self.busy = 0
        self._closed = False
        metrics.queued.set_function(lambda: self.queued)
        metrics.busy.set_function(lambda: self.busy)
        for workspace in self._threads.map(lambda _: self._new(), range(size)):
            if workspace is not None:
                self._free.put_nowait(workspace)
        if not self.all:
            raise RuntimeError(f"no workspace could be started in {root}")

    def _new(self) -> Workspace | None:
        with self._lock:
            number = next(self._numbers)
        try:
            workspace = Workspace(number, self.root)
        except Exception as exc:
            log.error("could not start a workspace: %s", exc)
            return None
        with self._lock:
            self.all[number] = workspace
            self.metrics.workspaces.set(len(self.all))
        return workspace

    async def check(self, repo: Repository, request: RunRequest,
                    options: CheckOptions) -> RunResult:
        waited = time.monotonic()
        self.queued += 1  # only the event loop's thread counts these
        try:
            workspace = await self._free.get()
        finally:
            self.queued -= 1
        self.metrics.wait_seconds.observe(time.monotonic() - waited)
        # The thread hands the workspace (or its replacement) back itself, so it is never
        # lost, even when this request is cancelled while its item runs.
        return await asyncio.wrap_future(self._threads.submit(
            self._run, workspace, repo, request, options))

    def _run(self, workspace: Workspace, repo: Repository, request: RunRequest,
             options: CheckOptions) -> RunResult:
        with self._lock:
            self.busy += 1
        started = time.monotonic()
        try:
            if not workspace.process.is_alive():  # died while free: the item gets a new one
                workspace = self._replace(workspace, "its process is gone") or workspace
            return workspace.run(repo, request, options)
        except WorkspaceError as exc:  # never the candidate's fault: the client retries
            log.warning("%s", exc)
            return RunResult(status="infrastructure", total=len(request.tests),
                             infrastructure_error=str(exc),
                             outcomes=[TestOutcome(test=t, outcome="not_run")
                                       for t in request.tests])
        finally:
            self.metrics.item_seconds.observe(time.monotonic() - started)
            with self._lock:
                self.busy -= 1
            self._give_back(workspace)

    def _give_back(self, workspace: Workspace) -> None:
        try:
            workspace.reset()
            back: Workspace | None = workspace
        except (WorkspaceError, OSError) as exc:
            back = self._replace(workspace, str(exc))
        if back is not None:
            self._loop.call_soon_threadsafe(self._free.put_nowait, back)

    def _replace(self, workspace: Workspace, why: str) -> Workspace | None:
        with self._lock:
            self.all.pop(workspace.number, None)
        workspace.close()
        if self._closed:  # the service is stopping: the item's failure is that, nothing more
            return None
        log.warning("replacing workspace %d: %s", workspace.number, why)
        self.metrics.replaced.inc()
        return self._new()

    def close(self) -> None:
        self._closed = True
        self._threads.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            workspaces = list(self.all.values())
            self.all.clear()
        for workspace in workspaces:
            workspace.close()


# -- the app -------------------------------------------------------------------------------------
class ServiceSettings(BaseModel):
    """What one service serves, and how."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    repos: dict[str, Repository]
    workspaces: int = Field(ge=1)
    checks: CheckOptions = Field(default_factory=lambda: CheckOptions())
    token: str | None = None
    scratch: Path | None = Field(None, description="where workspaces live (a temp dir)")
    max_request_bytes: int = Field(MAX_REQUEST_BYTES, ge=1,
                                   description="larger request bodies are answered 413")


def check_options(config: Config) -> CheckOptions:
    """How a local check with ``config`` would check an item (limits, sandbox, engine); a
    container engine that cannot be reached is refused now, not at the first item."""
    own = config.section(RepoSettings)
    if own.repo_engine == "podman":
        containers.podman_url()
    elif own.repo_engine == "apptainer" and containers.apptainer_binary() is None:
        raise UsageError("repo_engine=apptainer: no apptainer (or singularity) on PATH")
    limits = RunLimits(timeout_s=own.test_timeout_s, memory_mb=config.memory_limit_mb,
                       output_tail_chars=config.output_tail_chars)
    return CheckOptions(limits=limits, sandbox=config.sandbox,
                        max_processes=config.max_processes, engine=own.repo_engine)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def create_app(settings: ServiceSettings, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The service's ASGI app; its pool starts with the app (then ``on_ready`` is called)
    and stops with it."""
    metrics = Metrics()
    state: dict[str, Pool] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with tempfile.TemporaryDirectory(prefix="kbtool-sandbox-", dir=settings.scratch) as root:
            # Started before the first request is taken: blocking the loop is harmless here.
            pool = state["pool"] = Pool(settings.workspaces, Path(root), metrics)
            if on_ready is not None:
                on_ready()
            try:
                yield
            finally:
                await asyncio.to_thread(pool.close)

    app = FastAPI(title="kbtool sandbox service", version=__version__, lifespan=lifespan)

    def authorized(credentials: Annotated[HTTPAuthorizationCredentials | None,
                                          Depends(_BEARER)]) -> None:
        if settings.token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, detail="a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})

    def repo_for(item: RunItem) -> Repository:
        if item.repo is None:
            repo = _matching(settings.repos, item)
        elif item.repo not in settings.repos:
            raise field_error("repo", f"{item.repo!r} is not served here (served: "
                                      f"{', '.join(settings.repos)})")
        else:
            repo = settings.repos[item.repo]
        if item.repo_sha256 is not None and item.repo_sha256 != repo.spec.sha256:
            raise field_error("repo_sha256", f"this service serves {repo.spec.requirement} "
                                             f"with archive {repo.spec.sha256}")
        return repo

    @app.post("/run_item", response_model=RunItemReply, dependencies=[Depends(authorized)])
    async def run(item: RunItem, do_edit: Annotated[bool, Query()] = True) -> RunItemReply:
        repo = repo_for(item)
        request = item.request(do_edit)
        try:
            edited = request.edited_text(repo)  # the path and the lines, checked
        except RequestError as exc:
            raise field_error(exc.field, str(exc)) from None
        result = await state["pool"].check(repo, request, settings.checks)
        metrics.items.labels(result.status).inc()
        return RunItemReply(datapoint=item.model_dump(mode="json", exclude_none=True),
                            test_output=result.report(settings.checks.limits.output_tail_chars),
                            edited_file=edited,
                            result=result.model_copy(update={"edited_file": None}))

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        pool = state["pool"]
        serving = len(pool.all)
        return Health(status="ok" if serving == pool.size else "degraded", version=__version__,
                      workspaces=serving, wanted=pool.size, busy=pool.busy,
                      queued=pool.queued,
                      repos={n: r.spec.sha256 or "" for n, r in settings.repos.items()},
                      pids=[w.pid for w in list(pool.all.values())],
                      test_timeout_s=settings.checks.limits.timeout_s)

    @app.get("/metrics", dependencies=[Depends(authorized)])
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry),
                                 media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without the ``input`` it would echo (the whole body, when a field
        is missing)."""
        return JSONResponse(status_code=422, content={"detail": [
            {"type": e.get("type", "value_error"), "loc": list(e.get("loc", ())),
             "msg": _short(str(e.get("msg", "")))} for e in exc.errors()]})

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> PlainTextResponse:
        log.error("%s %s failed: %s: %s", request.method, request.url.path,
                  type(exc).__name__, _short(str(exc)))
        # Answered outside the middleware (Guard), so counted here.
        metrics.errors.labels("500").inc()
        return PlainTextResponse(_short(f"{type(exc).__name__}: {exc}"), status_code=500)

    app.add_middleware(Guard, limit=settings.max_request_bytes, metrics=metrics)
    return app


def _matching(repos: dict[str, Repository], item: RunItem) -> Repository:
    """The served repository a request without ``repo`` is about (the seed's client names
    none): the one that has its ``file_path`` and, among several, its tests' files."""
    having = {name: repo for name, repo in repos.items()
              if os.path.isfile(repo.src / item.file_path)}
    if not having:
        raise field_error("file_path", f"{item.file_path} is a file of no served repository "
                                       f"(served: {', '.join(repos)})")
    tested = {name: repo for name, repo in having.items()
              if all(test_file(repo, t) is not None for t in item.tests)}
    if len(having) > 1 and tested:
        having = tested
    if len(having) > 1:
        what = f"{item.file_path} and its tests" if tested else item.file_path
        raise field_error("repo", f"{', '.join(having)} all have {what}: name one")
    return next(iter(having.values()))

