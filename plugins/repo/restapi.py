"""The ``restapi`` evaluation backend: repository checks sent to a sandbox service.

``eval_backend=restapi sandbox_url=http://HOST:PORT`` makes ``kbtool eval`` and ``kbtool run``
check repository candidates through a running ``kbtool sandbox serve`` (``service``) instead
of on this machine.  The candidate becomes its edit here, as in the local check (a
candidate of the wrong shape is a ``compile_error`` without a request); the service runs the
item's tests with the same runner and this side turns its result into the verdict with the
kind's own rule (``kind.verdict``), so a check gives the same verdict either way.

Requests are retried (tenacity, exponential back-off up to 2 s apart) while the service does not answer or
answers 502/503/504, for up to ``queue_wait_s``: a service that is restarted meanwhile
loses nothing.  A result the service calls ``infrastructure`` is asked again, as locally,
``infra_retries`` times.  ``KBTOOL_SANDBOX_TOKEN`` is sent as the bearer token.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import httpx
import tenacity

from kbtool.config import Config
from kbtool.errors import RunError, UsageError
from kbtool.evaluation.evaluator import default_details, split_check
from kbtool.evaluation.result import EvalResult, TimingStats
from kbtool.task.catalog import kind_of
from kbtool.task.model import Task
from kbtool_plugins.repo.candidate import CandidateError, edit_for
from kbtool_plugins.repo.kind import item_of, settings, verdict
from kbtool_plugins.repo.service import TOKEN_ENV, Health, RunItemReply

log = logging.getLogger(__name__)

CONNECT_S = 10.0
HEALTH_PATIENCE_S = 30.0  # at start: a wrong URL fails soon, a starting service is waited for
_RETRY_STATUS = {502, 503, 504}


class Unavailable(Exception):
    """The service answered that it cannot serve now (502, 503, 504)."""


class RestApiBackend:
    """Checks repository tasks through ``kbtool sandbox serve`` at ``sandbox_url``."""

    def __init__(self, config: Config) -> None:
        if not config.sandbox_url:
            raise UsageError("eval_backend=restapi needs sandbox_url=http://HOST:PORT (a "
                             "running `kbtool sandbox serve`)")
        self.config = config
        self.url = config.sandbox_url.rstrip("/")
        token = os.environ.get(TOKEN_ENV)
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx.Timeout(config.queue_wait_s, connect=CONNECT_S, pool=None),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
        self._idx = itertools.count()
        try:
            health = Health.model_validate(self._send("GET", "/health", min(
                HEALTH_PATIENCE_S, config.queue_wait_s)).json())
        except BaseException:
            self.client.close()
            raise
        wanted = settings(config).test_timeout_s
        if health.test_timeout_s != wanted:  # its limits apply: say so rather than surprise
            log.warning("the sandbox service at %s runs tests with test_timeout_s=%g, not the "
                        "%g set here; its limits apply", self.url, health.test_timeout_s, wanted)
        self.env: dict[str, Any] = {"device": "cpu", "device_name": f"sandbox service {self.url}",
                                    "service_version": health.version,
                                    "workspaces": health.workspaces, "repos": health.repos,
                                    "test_timeout_s": health.test_timeout_s}

    # -- HTTP ---------------------------------------------------------------------------------
    def _send(self, method: str, path: str, patience_s: float,
              body: dict[str, Any] | None = None) -> httpx.Response:
        """One request, retried while the service is away or unavailable; a one-line error
        for an answer that no retry can change."""
        def once() -> httpx.Response:
            response = self.client.request(method, path, json=body)
            if response.status_code in _RETRY_STATUS:
                raise Unavailable(f"HTTP {response.status_code}")
            return response

        def note(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.info("sandbox service %s: %s; retrying (attempt %d)", self.url,
                     exc, state.attempt_number)

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(patience_s),
            wait=tenacity.wait_exponential(multiplier=0.25, max=2.0) + tenacity.wait_random(0, 0.25),
            retry=tenacity.retry_if_exception_type((httpx.TransportError, Unavailable)),
            before_sleep=note, reraise=True)
        try:
            response = retrying(once)
        except (httpx.TransportError, Unavailable) as exc:
            raise RunError(f"the sandbox service at {self.url} did not answer {path} within "
                           f"{patience_s:g} s ({type(exc).__name__}: {exc})") from None
        if response.status_code == 401:
            raise UsageError(f"the sandbox service at {self.url} wants a bearer token: set "
                             f"{TOKEN_ENV}")
        if response.status_code in (413, 422):
            raise UsageError(f"the sandbox service at {self.url} refused the request: "
                             f"{_detail(response)}")
        if response.status_code != 200:
            raise RunError(f"the sandbox service at {self.url} answered {path} with HTTP "
                           f"{response.status_code}: {_detail(response)}")
        return response

    # -- the backend ------------------------------------------------------------------------------
    def _refuse_kind(self, task: Task) -> None:
        if task.kind != "repo":
            raise UsageError(f"eval_backend=restapi checks repository tasks; {task.id} is a "
                             f"{task.kind!r} task")

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        self._refuse_kind(task)
        return {}

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        raise UsageError(f"{task.id}: repository tasks are judged by their tests, not timed")

    def baseline_result(self, task: Task, mode: str | None = None,
                        config: Config | None = None) -> EvalResult:
        raise UsageError(f"{task.id}: repository tasks are judged by their tests, not timed")

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        self._refuse_kind(task)
        config = config or self.config
        if not solution.is_file():
            raise UsageError(f"solution file not found: {solution}")
        item = item_of(task)
        fields: dict[str, Any] = {"task_type": item.task, "tests_total": len(item.tests)}
        sandbox: list[str] = []
        started = time.monotonic()
        try:
            edit = edit_for(item, solution.read_text())
        except CandidateError as exc:
            fields.update(status="compile_error", error=str(exc))
        else:
            body = {"idx": next(self._idx), "dp_id": task.id, "file_path": item.file_path,
                    "replace_content": edit.text, "start_line": edit.start_line,
                    "end_line": edit.end_line, "method_name": item.method_name,
                    "tests": item.tests, "repo": item.spec.name, "repo_sha256": item.spec.sha256}
            for _ in range(settings(config).infra_retries + 1):
                reply = RunItemReply.model_validate(
                    self._send("POST", "/run_item", config.queue_wait_s, body).json())
                if reply.result.status != "infrastructure":
                    break
            fields.update(verdict(reply.result))
            sandbox = reply.result.sandbox
        kind = kind_of(task)
        core, checked = split_check(kind, task, fields)
        result = EvalResult(task=task.id, kind=task.kind, solution=str(solution),
                            device=self.env["device"], env=self.env, sandbox=sandbox,
                            stage_s={"service": round(time.monotonic() - started, 3)},
                            **core, **{**default_details(kind, {}), **checked})
        if sandbox and not any(item.startswith("no network") for item in sandbox):
            result.flags.append("unsandboxed")  # as a local check reports it
            result.findings.append(f"unsandboxed: {', '.join(sandbox)}")
        return result

    def close(self) -> None:
        self.client.close()


def _detail(response: httpx.Response) -> str:
    """An error answer in one line: FastAPI's ``detail`` (the fields it names) or the text."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text.strip().splitlines()[0][:300] if response.text.strip() else "?"
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}"
                         for d in detail if isinstance(d, dict))
    return str(detail)[:300]
