"""Repositories from PyPI source archives: fetched by pip, cached by content hash, read-only.

A :class:`RepoSpec` names one release (``django==5.2.19``), the archive's SHA-256, the
repository's own test runner and what its tests need.  :func:`fetch` downloads the source
archive with ``pip download``, checks its hash, unpacks it, installs the test dependencies
beside it (``pip install --target``), compiles it (so no test run pays for that) and makes
the tree read-only; the entry is named after the archive's hash, so two specs of one release
share it and an edited archive can never pass for the pristine one.  Nothing edits a cached
tree afterwards: every check runs in a workspace made from it (``runner``).

Cache layout (``cache_dir/repos``)::

    <name>-<sha256[:16]>-<deps hash[:8]>/
        src/        the unpacked archive (read-only)
        deps/       the test dependencies (read-only)
        repo.json   the spec, with the archive's hash
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from kbtool.errors import RunError

log = logging.getLogger(__name__)

RUNNERS = ("django", "pytest")
_READY = "repo.json"


class RepoSpec(BaseModel):
    """One release of a repository with a test suite, and how its tests run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="short name, used in task ids: 'django'")
    requirement: str = Field(description="pip requirement naming one release: 'django==5.2.19'")
    sha256: str | None = Field(None, description="the source archive's SHA-256 (checked)")
    runner: Literal["django", "pytest"] = Field(
        "pytest", description="the repository's own test runner: django (tests/runtests.py) "
                              "or pytest")
    deps: tuple[str, ...] = Field((), description="pip requirements of its test run")
    import_name: str | None = Field(
        None, description="its top-level package; removed from deps/ when a dependency "
                          "pulls in another release of it")
    source_root: str = Field(".", description="the folder its package is imported from "
                                              "('src' for a src layout)")
    test_root: str = Field("tests", description="the folder of its tests")

    def deps_key(self) -> str:
        return hashlib.sha256(json.dumps(sorted(self.deps)).encode()).hexdigest()[:8]


class Repository(BaseModel):
    """A fetched repository: the pristine tree and its test dependencies."""

    model_config = ConfigDict(frozen=True)

    spec: RepoSpec
    root: Path = Field(description="the cache entry")

    @property
    def src(self) -> Path:
        """The pristine tree (read-only): the unpacked source archive."""
        return self.root / "src"

    @property
    def deps(self) -> Path:
        return self.root / "deps"

    def python_path(self, tree: Path | None = None) -> list[Path]:
        """What the test process imports from: the package's folder in ``tree`` (the
        workspace; the pristine tree by default), then the test dependencies."""
        return [(tree or self.src) / self.spec.source_root, self.deps]

    def file(self, rel: str) -> Path:
        return self.src / rel


def _entry_name(spec: RepoSpec, sha256: str) -> str:
    return f"{spec.name}-{sha256[:16]}-{spec.deps_key()}"


def cache_root(cache_dir: Path) -> Path:
    return cache_dir / "repos"


def find(spec: RepoSpec, cache_dir: Path) -> Repository | None:
    """The cached repository of ``spec`` if it was fetched (``spec.sha256`` must be known:
    an unpinned spec is only found by fetching it)."""
    if spec.sha256 is None:
        return None
    root = cache_root(cache_dir) / _entry_name(spec, spec.sha256)
    if not (root / _READY).is_file():
        return None
    return Repository(spec=spec, root=root)


def fetch(spec: RepoSpec, cache_dir: Path) -> Repository:
    """The repository of ``spec``, downloaded and set up once (safe to call concurrently,
    also from several processes)."""
    found = find(spec, cache_dir)
    if found is not None:
        return found
    import compileall  # here: listing tasks imports this module, and needs none of these

    import filelock

    root = cache_root(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        archive = _download(spec, Path(tmp))
        sha256 = _sha256(archive)
        if spec.sha256 is not None and sha256 != spec.sha256:
            raise RunError(f"the source archive of {spec.requirement} has SHA-256 {sha256}, "
                           f"not the {spec.sha256} its data set names")
        pinned = spec.model_copy(update={"sha256": sha256})
        entry = root / _entry_name(pinned, sha256)
        with filelock.FileLock(str(entry) + ".lock"):
            if (entry / _READY).is_file():
                return Repository(spec=pinned, root=entry)
            _make_writable(entry)
            shutil.rmtree(entry, ignore_errors=True)  # a half-made entry of a crashed fetch
            staging = Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
            try:
                _unpack(archive, staging / "src")
                _install_deps(pinned, staging / "deps")
                # Compiled once here: test runs never write bytecode, and still import fast.
                compileall.compile_dir(str(staging), quiet=2, workers=0)
                (staging / _READY).write_text(pinned.model_dump_json(indent=1))
                _make_read_only(staging)
                os.rename(staging, entry)
            except BaseException:
                _make_writable(staging)
                shutil.rmtree(staging, ignore_errors=True)
                raise
    log.info("fetched %s into %s", spec.requirement, entry)
    return Repository(spec=pinned, root=entry)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


def _download(spec: RepoSpec, into: Path) -> Path:
    proc = _pip("download", "--no-deps", "--no-binary", ":all:", "-d", str(into),
                spec.requirement)
    archives = [p for p in into.iterdir() if p.name.endswith((".tar.gz", ".zip", ".tar.bz2"))]
    if proc.returncode != 0 or len(archives) != 1:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise RunError(f"pip could not download the source archive of {spec.requirement}: "
                       f"{tail[0]}")
    return archives[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(archive: Path, dest: Path) -> None:
    """Unpack the archive's single top folder as ``dest``, owned by this user (the
    workspace's overlay can only copy up files whose owner maps into its namespace)."""
    import tarfile
    import zipfile

    work = dest.parent / ".unpack"
    work.mkdir()
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                if name.startswith("/") or ".." in Path(name).parts:
                    raise RunError(f"{archive.name}: unsafe path {name!r}")
            zipped.extractall(work)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")  # no owners, no links out, no devices
    tops = list(work.iterdir())
    if len(tops) != 1 or not tops[0].is_dir():
        raise RunError(f"{archive.name} does not hold one top folder")
    tops[0].rename(dest)
    work.rmdir()


def _install_deps(spec: RepoSpec, target: Path) -> None:
    target.mkdir()
    if not spec.deps:
        return
    proc = _pip("install", "--quiet", "--no-input", "--target", str(target), *spec.deps)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
        raise RunError(f"pip could not install the test dependencies of {spec.name} "
                       f"({' '.join(spec.deps)}): {tail[0]}")
    if spec.import_name:  # a dependency's copy of the package would be a second one
        for path in target.iterdir():
            dist = path.name.split("-")[0].replace("_", "-").lower()
            if path.name == spec.import_name or (
                    path.suffix == ".dist-info" and dist == spec.import_name.replace("_", "-")):
                shutil.rmtree(path)


def _make_read_only(root: Path) -> None:
    for base, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                mode = os.stat(path).st_mode
                os.chmod(path, stat.S_IMODE(mode) & ~0o222)
        for name in dirnames:
            path = os.path.join(base, name)
            os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)
    os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) & ~0o222)


def _make_writable(root: Path) -> None:
    """Undo ``_make_read_only`` (to remove a cache entry)."""
    if not root.exists():
        return
    os.chmod(root, stat.S_IMODE(os.stat(root).st_mode) | 0o200)
    for base, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o200)


def remove(repo: Repository) -> None:
    """Delete a cache entry (its tree is read-only)."""
    _make_writable(repo.root)
    shutil.rmtree(repo.root)
