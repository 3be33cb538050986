"""A small repository with a unittest suite behind Django's command line (``tests/runtests.py``),
set up in a kbtool cache as ``repository.fetch`` leaves one, with a data set of items on it;
and ``kbtool sandbox serve`` over it in a subprocess.  Used by the tests and by
``bench/sandbox_service.py --smoke`` (so: no pytest here)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from kbtool.llm.serve import port_is_free
from tests.helpers import REPO

TEXT = '''"""Small text helpers."""


def shout(word):
    """The word in capitals, with a bang."""
    return word.upper() + "!"


def count_vowels(text):
    """How many vowels ``text`` has."""
    total = 0
    for ch in text.lower():
        if ch in "aeiou":
            total += 1
    return total
'''

TESTS = '''import os
import unittest

import mini
from mini.text import count_vowels, shout

HERE = os.path.dirname(os.path.abspath(__file__))


class ShoutTests(unittest.TestCase):
    def test_shout(self):
        self.assertEqual(shout("hey"), "HEY!")

    def test_empty(self):
        self.assertEqual(shout(""), "!")


class VowelTests(unittest.TestCase):
    def test_count(self):
        self.assertEqual(count_vowels("Banana"), 3)

    def test_none(self):
        self.assertEqual(count_vowels("xyz"), 0)


class CleanTests(unittest.TestCase):
    """Nothing an earlier item did is here."""

    def test_clean(self):
        self.assertFalse(os.path.exists(os.path.join(HERE, "..", "mini", "evil.py")))
        self.assertFalse(hasattr(mini, "PWNED"))
        with open(os.path.join(HERE, "..", "mini", "__init__.py")) as handle:
            self.assertEqual(handle.read(), "")
'''

RUNTESTS = '''"""The suite's runner, with Django's command line."""
import sys
import unittest

names = [a for a in sys.argv[1:] if not a.startswith("-") and not a.isdigit()]
result = unittest.TextTestRunner(verbosity=0).run(
    unittest.defaultTestLoader.loadTestsFromNames(names))
sys.exit(not result.wasSuccessful())
'''

FILES = {"mini/__init__.py": "", "mini/text.py": TEXT, "tests/test_text.py": TESTS,
         "tests/runtests.py": RUNTESTS}
SHOUT_TESTS = ["test_text.ShoutTests.test_shout", "test_text.ShoutTests.test_empty"]
VOWEL_TESTS = ["test_text.VowelTests.test_count", "test_text.VowelTests.test_none"]
CLEAN_TEST = "test_text.CleanTests.test_clean"


@dataclass
class Mini:
    cache_dir: Path
    data: Path           # the data set folder (repo_data=[...])
    spec: dict[str, str]

    def settings(self) -> list[str]:
        return [f"cache_dir={self.cache_dir}", f"repo_data=[{self.data}]"]


def item(task: str, name: str, tests: list[str], **more: object) -> dict[str, object]:
    """A RepoItem of a module-level function of mini/text.py."""
    lines = TEXT.splitlines(keepends=True)
    node = next(n for n in ast.parse(TEXT).body if isinstance(n, ast.FunctionDef) and
                n.name == name)
    body_start = node.body[0].lineno
    return {"task": task, "file_path": "mini/text.py", "method_name": name,
            "declaration": "".join(lines[node.lineno - 1:body_start - 1]),
            "docstring": ast.get_docstring(node),
            "body": "".join(lines[body_start - 1:node.end_lineno]),
            "original": "".join(lines[node.lineno - 1:node.end_lineno]), "indent": "",
            "decorator_line": node.lineno, "start_line": node.lineno,
            "body_start_line": body_start, "end_line": node.end_lineno, "tests": tests,
            "file_sha256": hashlib.sha256(TEXT.encode()).hexdigest(), **more}


def make_mini(root: Path, package: str = "mini", name: str | None = None,
              cache: Path | None = None) -> Mini:
    """The repository (its package named ``package``: another one than ``mini`` is the same
    repository under another name) cached in ``cache`` (default ``root/cache``), and a
    data set of it named ``name`` (default: the package's)."""
    files = {rel.replace("mini", package): text.replace("mini", package)
             for rel, text in FILES.items()}
    name = name or package
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    spec = {"name": name, "requirement": f"{name}==1.0", "sha256": digest, "runner": "django",
            "test_root": "tests"}
    deps_key = hashlib.sha256(json.dumps([]).encode()).hexdigest()[:8]
    cache = cache or root / "cache"
    entry = cache / "repos" / f"{name}-{digest[:16]}-{deps_key}"
    for rel, text in files.items():
        (entry / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (entry / "src" / rel).write_text(text)
    (entry / "deps").mkdir()
    (entry / "repo.json").write_text(json.dumps(spec))
    for base, dirs, names in os.walk(entry / "src"):  # pristine: read-only, as fetched
        for file in names:
            os.chmod(os.path.join(base, file), 0o444)
        for folder in dirs:
            os.chmod(os.path.join(base, folder), 0o555)
    data = root / "data"
    data.mkdir()
    (data / "repo.yaml").write_text(yaml.safe_dump(spec))
    buggy = str(item("", "count_vowels", [])["original"]).replace("total += 1", "total += 2")
    items = [item("method_gen", "shout", SHOUT_TESTS),
             item("repair", "count_vowels", VOWEL_TESTS, buggy_method=buggy,
                  bug="total += 1 -> total += 2", failing_output="AssertionError: 6 != 3")]
    for it in items:
        it["file_path"] = f"{package}/text.py"
    (data / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    (data / "files.json").write_text(json.dumps({f"{package}/text.py": TEXT}))
    return Mini(cache, data, spec)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """``kbtool sandbox serve`` in a subprocess; ``restart()`` on the same port."""

    def __init__(self, mini: Mini, workspaces: int = 2, port: int | None = None,
                 extra: tuple[str, ...] = (), env: dict[str, str] | None = None,
                 repo: str = "mini", log_dir: Path | None = None) -> None:
        self.port = port or free_port()
        self.args = [sys.executable, "-m", "kbtool", "sandbox", "serve", "--port", str(self.port),
                     "--workspaces", str(workspaces), "--repo", repo, *mini.settings(), *extra]
        self.env = {**os.environ, **(env or {})}
        # Its output goes to a file: a pipe nobody reads could fill up and stop it.
        self.log = (log_dir or mini.cache_dir.parent) / f"service-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Service:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, cwd=REPO, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the service did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def wait_port_free(self) -> None:
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
