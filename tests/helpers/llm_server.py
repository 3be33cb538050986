"""A real OpenAI-compatible chat server for tests: scripted replies, latency and failures.

In a test::

    with LLMServer(replies=["first", "second"], latency=0.1) as server:
        server.script("429", "hang")          # the next two requests fail, then replies again
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        ...
        assert server.max_active <= 2
        assert [r.completed for r in server.requests] == [False, False, True]

From another process (tests that SIGKILL a kbtool run and resume it against the same
server)::

    python -m tests.helpers.llm_server --port-file PORT --log LOG.jsonl --latency 0.2 \
        --reply-file replies.json --script 429,ok,500

or, from Python, ``with ServerProcess(tmp_path, latency=0.2, replies=[...]) as proc:``
(``proc.base_url``, ``proc.completed()`` reads the log).

Requests go to ``POST /v1/chat/completions`` (or ``/chat/completions``).  A request whose
``Authorization`` header is missing, ``Bearer bad``, or (when ``api_key`` is set) any other
key than ``api_key``, gets 401.  Script actions, consumed one per request before replying:

``ok``       the next scripted reply (what happens when the script is empty)
``NNN``      that HTTP status with an OpenAI-style error body ("429", "500", "401", ...)
``hang``     answer nothing for ``hang_s`` seconds (longer than the client's time-out)
``garbage``  200 with a body that is not JSON
``empty``    200 with ``"choices": []``
``null``     200 with ``"content": null``
``quota``    429 with code ``insufficient_quota`` (OpenAI's "out of credit": not worth retrying)

Usage in replies: prompt_tokens = words in all messages, completion_tokens = words in the
reply.  ``max_prompt_words``: a longer prompt gets OpenAI's 400 "maximum context length".
Every request is recorded (``server.requests``) with its body, its key (sha256 of
the canonical JSON body), the action taken, start and end times and whether a reply was
given (``completed``: an "ok" answer to a client still connected after the latency).  The
record is settled, and logged, just before the reply's bytes go out, so a test that has the
reply in hand can read it; a client killed in that instant leaves a logged request whose
answer it never saw, as with a real API.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

Reply = Callable[[dict[str, Any]], str]
REPO_ROOT = Path(__file__).resolve().parents[2]
CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")


def request_key(body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON body."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def prompt_words(body: dict[str, Any]) -> int:
    words = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            words += len(content.split())
        elif isinstance(content, list):  # content parts
            words += sum(len(str(part.get("text", "")).split())
                         for part in content if isinstance(part, dict))
    return words


@dataclass
class Record:
    path: str
    body: Any                  # the parsed JSON body (or the raw text if it was not JSON)
    key: str
    action: str                # "ok", "429", "hang", "garbage", ...
    start: float               # time.time() when the request was read
    end: float | None = None   # when the reply was sent (or the request abandoned)
    status: int | None = None
    reply: str | None = None
    completed: bool = False    # an "ok" reply went to a client that was still connected
    authorization: str | None = None


class LLMServer:
    """An OpenAI-compatible chat server on 127.0.0.1 in a daemon thread."""

    def __init__(self, replies: Reply | Sequence[str] | str | None = None,
                 latency: float | Sequence[float] | Callable[[dict[str, Any]], float] = 0.0,
                 script: Iterable[str] = (), hang_s: float = 30.0, api_key: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, log: Path | None = None,
                 max_prompt_words: int | None = None) -> None:
        self._reply = _reply_fn(replies)
        self.max_prompt_words = max_prompt_words
        self._latency = _latency_fn(latency)
        self.hang_s = hang_s
        self.api_key = api_key
        self.log = Path(log) if log else None
        self.requests: list[Record] = []
        self.active = 0
        self.max_active = 0
        self._actions: deque[str] = deque(_check_actions(list(script)))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._counter = itertools.count()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.app = self
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL / api_base should be."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *actions: str) -> None:
        """Queue actions for the next requests (after any already queued)."""
        _check_actions(actions)
        with self._lock:
            self._actions.extend(actions)

    def set_replies(self, replies: Reply | Sequence[str] | str | None) -> None:
        self._reply = _reply_fn(replies)

    def set_latency(self, latency: float | Sequence[float] | Callable[[dict[str, Any]], float]) -> None:
        self._latency = _latency_fn(latency)

    def reset(self) -> None:
        """Forget the recorded requests, the peak concurrency and queued actions."""
        with self._lock:
            self.requests.clear()
            self.max_active = self.active
            self._actions.clear()

    def start(self) -> LLMServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="llm-server", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes hanging and sleeping handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- views -----------------------------------------------------------------------------
    def completed(self) -> list[Record]:
        with self._lock:
            return [r for r in self.requests if r.completed]

    def keys(self) -> list[str]:
        with self._lock:
            return [r.key for r in self.requests]

    # -- handling (called from handler threads) ----------------------------------------------
    def _begin(self, record: Record) -> tuple[int, str]:
        with self._lock:
            index = next(self._counter)
            self.requests.append(record)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            if record.action == "":
                record.action = self._actions.popleft() if self._actions else "ok"
            return index, record.action

    def _end(self, record: Record) -> None:
        with self._lock:
            self.active -= 1
            record.end = time.time()
            if record.completed and self.log is not None:
                with self.log.open("a") as handle:
                    handle.write(json.dumps(asdict(record)) + "\n")

    def _sleep(self, seconds: float) -> bool:
        """Sleep; False if the server is closing."""
        return not self._stop.wait(seconds) if seconds > 0 else not self._stop.is_set()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False   # never wait for hanging handlers on close
    allow_reuse_address = True
    app: LLMServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        app = self.server.app
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        key = request_key(body) if isinstance(body, dict) else hashlib.sha256(raw).hexdigest()
        auth = self.headers.get("Authorization")
        record = Record(path=path, body=body, key=key, action="", start=time.time(),
                        authorization=auth)
        if path not in CHAT_PATHS:
            record.action = "404"
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            record.action = "400"
        elif not auth or auth == "Bearer bad" or (app.api_key and auth != f"Bearer {app.api_key}"):
            record.action = "401"
        index, action = app._begin(record)
        answer = None
        try:
            answer = self._answer(app, record, index, action, body)
        finally:
            # Book-keeping before the client can read the reply: a test reads it at once.
            app._end(record)
        if answer is None:  # hang, or the client left
            self.close_connection = True
            return
        try:
            self._send(*answer)
        except OSError:  # the client went away while we wrote
            record.completed = False
            self.close_connection = True

    def _answer(self, app: LLMServer, record: Record, index: int, action: str,
                body: Any) -> tuple[int, Any] | None:
        """(status, JSON payload or raw bytes) to send, or None to send nothing."""
        if action == "hang":
            app._sleep(app.hang_s)
            return None
        if action == "quota":
            record.status = 429
            return 429, {"error": {"message": "You exceeded your current quota",
                                   "type": "insufficient_quota", "param": None,
                                   "code": "insufficient_quota"}}
        if action.isdigit():
            record.status = status = int(action)
            kind = {401: "authentication_error", 404: "not_found_error",
                    429: "rate_limit_error"}.get(status, "server_error" if status >= 500
                                                 else "invalid_request_error")
            return status, _error(f"scripted {status}", kind)
        words = prompt_words(body)
        if app.max_prompt_words is not None and words > app.max_prompt_words:
            record.status = 400  # what OpenAI answers a prompt longer than the context
            return 400, _error(f"This model's maximum context length is "
                               f"{app.max_prompt_words} tokens. However, your messages "
                               f"resulted in {words} tokens.", "invalid_request_error")
        if not app._sleep(app._latency(index, body)) or self._client_gone():
            return None
        record.status = 200
        if action == "garbage":
            return 200, b'{"id": "chatcmpl-garbage", "choices": [ {oops'
        text = app._reply(body) if action == "ok" else ""
        choices: list[dict[str, Any]] = []
        if action != "empty":
            choices = [{"index": 0, "finish_reason": "stop", "logprobs": None,
                        "message": {"role": "assistant",
                                    "content": None if action == "null" else text}}]
        usage = {"prompt_tokens": prompt_words(body), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if action == "ok":
            record.reply, record.completed = text, True
        return 200, {"id": f"chatcmpl-{index}", "object": "chat.completion",
                     "created": int(time.time()), "model": body.get("model", "test-model"),
                     "choices": choices, "usage": usage}

    def _client_gone(self) -> bool:
        """True if the client closed the connection (e.g. it was killed) while we waited."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        elif self.path.rstrip("/") == "/health":  # as vLLM's: what `kbtool serve` polls
            self._send(200, {})
        else:
            self._send(404, _error("not found", "invalid_request_error"))

    def _send(self, status: int, payload: Any) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


ACTIONS = ("ok", "hang", "garbage", "empty", "null", "quota")


def _check_actions(actions: Sequence[str]) -> Sequence[str]:
    for action in actions:
        if action not in ACTIONS and not (action.isdigit() and 100 <= int(action) <= 599):
            raise ValueError(f"unknown server action {action!r}: use an HTTP status or one of {ACTIONS}")
    return actions


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _reply_fn(replies: Reply | Sequence[str] | str | None) -> Reply:
    if replies is None:
        counter = itertools.count(1)
        return lambda body: f"reply {next(counter)}"
    if callable(replies):
        return replies
    if isinstance(replies, str):
        return lambda body: replies
    if not replies:
        raise ValueError("replies must not be empty")
    cycle = itertools.cycle(list(replies))
    lock = threading.Lock()

    def next_reply(body: dict[str, Any]) -> str:
        with lock:
            return next(cycle)

    return next_reply


def _latency_fn(latency: float | Sequence[float] | Callable[[dict[str, Any]], float]
                ) -> Callable[[int, dict[str, Any]], float]:
    if callable(latency):
        return lambda index, body: float(latency(body))
    if isinstance(latency, (int, float)):
        return lambda index, body: float(latency)
    values = [float(v) for v in latency] or [0.0]
    return lambda index, body: values[index % len(values)]


# -- another process ---------------------------------------------------------------------------
class ServerProcess:
    """``python -m tests.helpers.llm_server`` in a subprocess; ``completed()`` reads its log."""

    def __init__(self, workdir: Path, replies: Sequence[str] | str | None = None,
                 latency: float = 0.0, script: Sequence[str] = (), hang_s: float = 30.0,
                 api_key: str | None = None) -> None:
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port_file = workdir / "llm_server.port"
        self.log = workdir / "llm_server.jsonl"
        self.port_file.unlink(missing_ok=True)
        args = [sys.executable, "-m", "tests.helpers.llm_server", "--port-file", str(self.port_file),
                "--log", str(self.log), "--latency", str(latency), "--hang-s", str(hang_s)]
        if replies is not None:
            reply_file = workdir / "llm_server_replies.json"
            reply_file.write_text(json.dumps([replies] if isinstance(replies, str) else list(replies)))
            args += ["--reply-file", str(reply_file)]
        if script:
            args += ["--script", ",".join(script)]
        if api_key:
            args += ["--api-key", api_key]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 20.0) -> ServerProcess:
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT)
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"llm_server exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("llm_server did not start")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def completed(self) -> list[dict[str, Any]]:
        """The completed requests logged so far (one dict per ``Record``)."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _load_replies(path: Path) -> list[str] | str:
    """A JSON list of strings (cycled) or a JSON string; any other file is one reply."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, str) or (isinstance(data, list) and data and all(isinstance(x, str) for x in data)):
        return data
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.helpers.llm_server",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, help="write the port here once listening")
    parser.add_argument("--log", type=Path, help="append each completed request as a JSON line")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    parser.add_argument("--reply-file", type=Path,
                        help="JSON list of replies (cycled) or a file whose text is the reply")
    parser.add_argument("--script", default="", help="comma-separated actions: 429,500,hang,...")
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--api-key", default=None, help="the only key accepted")
    args = parser.parse_args(argv)
    replies = _load_replies(args.reply_file) if args.reply_file else None
    script = [a.strip() for a in args.script.split(",") if a.strip()]
    server = LLMServer(replies=replies, latency=args.latency, script=script, hang_s=args.hang_s,
                       api_key=args.api_key, host=args.host, port=args.port, log=args.log)
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(server.port))
        os.replace(tmp, args.port_file)  # readers never see a partial port
    print(f"llm_server listening on {server.base_url}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server._httpd.serve_forever(poll_interval=0.05)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server._stop.set()
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
