"""Commits of git repositories, for perf tasks of a repository's history (``repo:``).

A repository is cloned once into the cache (a bare mirror: every branch and tag), and
fetched again only when a commit asked for is not in it; a commit's tree is checked out
once into a folder of its own, named by its full hash, read-only and compiled.  All of this
happens where the network is (``TaskKind.prepare``, ``kbtool perf prepare``, ``kbtool perf
build``); afterwards nothing here touches the clone: the trees are found by hash::

    git/<name>-<key>.git        the mirror clone of one repository (its URL or path: key)
    git/commits/<hash>.json     a commit's first parent and subject, once resolved
    git/trees/<hash>/tree       the commit's tree (every file git tracks, as committed)
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kbtool.errors import RunError, UsageError
from kbtool.util.files import write_atomic
from kbtool_plugins.repo.repository import _make_read_only, _make_writable

GIT_TIMEOUT_S = 1800   # a first clone of a large repository
_HEX = re.compile(r"[0-9a-fA-F]{4,64}")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^[^/:]+@[^/:]+:")  # scheme:// or user@host:


def is_url(repo: str) -> bool:
    return bool(_URL.match(repo))


def location(repo: str, task_dir: Path | None) -> str:
    """A task's ``repo`` as git is given it: a URL as it is, a local path made absolute
    (relative to the task file's folder)."""
    if is_url(repo):
        return repo
    path = Path(repo).expanduser()
    if not path.is_absolute():
        path = (task_dir or Path.cwd()) / path
    return str(path.resolve())


def _git(args: list[str], git_dir: Path | None = None, what: str = "git",
         env: dict[str, str] | None = None) -> str:
    argv = ["git", *([f"--git-dir={git_dir}"] if git_dir else []), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    except FileNotFoundError:
        raise RunError("git is not installed") from None
    except subprocess.TimeoutExpired:
        raise RunError(f"{what}: no answer within {GIT_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()
                 and not ln.startswith("hint:")]
        raise RunError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


@dataclass(frozen=True)
class Clone:
    """The cache's clone of one repository."""

    root: Path      # <perf cache>/git
    url: str        # what it was cloned from
    path: Path      # the bare clone

    def has(self, rev: str) -> bool:
        try:
            _git(["cat-file", "-e", f"{rev}^{{commit}}"], self.path)
        except RunError:
            return False
        return True

    def fetch(self) -> None:
        _git(["fetch", "--quiet", "--prune", "--tags", "origin"], self.path,
             f"git fetch {self.url}")

    def resolve(self, rev: str) -> str:
        """The full hash of the commit ``rev`` names (a hash, or its first 4+ digits);
        a ``UsageError`` in one line when it names none, or several."""
        if not _HEX.fullmatch(rev):
            raise UsageError(f"{rev!r} is not a commit hash (4 to 64 hex digits)")
        if not self.has(rev):
            self.fetch()  # perhaps newer than the clone
        candidates = [h for h in _git(["rev-parse", "--disambiguate=" + rev.lower()],
                                      self.path).split() if self.has(h)] \
            if len(rev) < 40 else [rev.lower()] if self.has(rev) else []
        if not candidates:
            raise UsageError(f"{rev} is not a commit of {self.url}")
        if len(candidates) > 1:
            raise UsageError(f"{rev} is ambiguous in {self.url}: it begins "
                             f"{', '.join(sorted(c[:12] for c in candidates))}; give more "
                             "digits")
        return candidates[0]

    def info(self, commit: str) -> dict[str, str | None]:
        """A commit's first parent (None for a root commit) and subject, recorded once."""
        path = self.root / "commits" / f"{commit}.json"
        if not path.is_file():
            fields = _git(["log", "-1", "--format=%P%n%s", commit], self.path).split("\n")
            parents = fields[0].split()
            write_atomic(path, json.dumps({"parent": parents[0] if parents else None,
                                           "subject": fields[1] if len(fields) > 1 else ""}))
        data = json.loads(path.read_text())
        return {"parent": data["parent"], "subject": data["subject"]}

    def tree(self, commit: str) -> Path:
        """The commit's tree, checked out once (read-only, compiled)."""
        entry = tree_dir(self.root, commit)
        if entry.is_dir():
            return entry
        entry.parent.mkdir(parents=True, exist_ok=True)
        from filelock import FileLock  # here: listing tasks needs none of it

        with FileLock(str(entry.parent) + ".lock", timeout=3600):
            if entry.is_dir():
                return entry
            staged = Path(tempfile.mkdtemp(dir=entry.parent.parent, prefix=".tree-"))
            try:
                # An index of its own, every tracked file: ``git archive`` would leave out
                # what .gitattributes marks export-ignore (tests, often).
                env = {"GIT_INDEX_FILE": str(staged / "index"),
                       "GIT_WORK_TREE": str(staged / "tree")}
                (staged / "tree").mkdir()
                _git(["read-tree", commit], self.path, f"git read-tree {commit}", env)
                _git(["checkout-index", "--all", "--force"], self.path,
                     f"git checkout-index {commit}", env)
                (staged / "index").unlink()
                compileall.compile_dir(str(staged / "tree"), quiet=2, workers=1)
                _make_read_only(staged / "tree")
                staged.rename(entry.parent)
            except BaseException:
                _make_writable(staged)
                shutil.rmtree(staged, ignore_errors=True)
                raise
        return entry


def tree_dir(root: Path, commit: str) -> Path:
    return root / "trees" / commit / "tree"


def parent_of(root: Path, commit: str) -> str | None:
    """A commit's recorded first parent (None: not resolved here yet, or a root commit)."""
    path = root / "commits" / f"{commit}.json"
    return json.loads(path.read_text())["parent"] if path.is_file() else None


def clone(root: Path, url: str) -> Clone:
    """The cache's clone of ``url`` (a URL or an absolute path), made once."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", url.rstrip("/").rsplit("/", 1)[-1])
    name = name.removesuffix(".git")[:40] or "repo"
    path = root / f"{name}-{hashlib.sha256(url.encode()).hexdigest()[:12]}.git"
    found = Clone(root, url, path)
    if (path / "HEAD").is_file():
        return found
    if not is_url(url) and not Path(url).exists():
        raise UsageError(f"repository {url} is not there (give a clone's folder or a git URL)")
    root.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock  # here: listing tasks needs none of it

    with FileLock(str(path) + ".lock", timeout=GIT_TIMEOUT_S):
        if (path / "HEAD").is_file():
            return found
        staged = Path(tempfile.mkdtemp(dir=root, prefix=".clone-"))
        try:
            _git(["clone", "--quiet", "--mirror", "--", url, str(staged / "repo.git")],
                 what=f"git clone {url}")
            (staged / "repo.git").rename(path)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return found
