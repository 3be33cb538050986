"""A task's versions on this machine: their source trees, the human patch, a venv.

A version is a release or a commit.  Source archives of releases come from PyPI by pip and
are cached by content hash through the repo plugin's cache (``kbtool_plugins.repo.
repository``: pinned, unpacked safely, compiled, read-only); commits come from a clone of
their git repository (``gitrepo``: a tree per commit, named by its hash).  Everything else
lives under ``<cache_dir>/perf`` and is made by :func:`prepare`, in kbtool's own process (it
needs the network and a writable cache); the isolated check only reads it, through
:func:`locate`, which never downloads or asks git::

    index/<package>-<version>.json    the archive hash of an unpinned release, once fetched
    git/...                           clones, commits' trees and parents (``gitrepo``)
    human/<key>/tree, .../human.diff  the baseline tree with the human patch, compiled
                 .../omitted.json     the version and metadata lines left out of the patch
    venvs/<key>/                      the baseline (the release, or the commit's tree
                                      installed by pip) with its test requirements (the
                                      agent's and the human's patch both run in it; none
                                      for a task with container images)

A worker on another node finds the same paths from the same task and cache (``kbtool perf
prepare`` fills a cache for workers without network).
"""

from __future__ import annotations

import compileall
import difflib
import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kbtool.config import Config
from kbtool.errors import RunError, UsageError
from kbtool.task.model import TaskRefused
from kbtool.util.files import write_atomic
from kbtool_plugins.perf import gitrepo
from kbtool_plugins.perf.settings import PerfPayload
from kbtool_plugins.repo import repository
from kbtool_plugins.repo.repository import RepoSpec

PIP_TIMEOUT_S = 600
# Names that are never the package's source, wherever they are (pytest collects them).
TEST_NAMES = ("tests", "test", "testing", "conftest.py")


def perf_root(config: Config) -> Path:
    return Path(config.cache_dir).expanduser() / "perf"


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                              cwd=cwd)
    except subprocess.TimeoutExpired:
        raise RunError(f"{what}: no answer within {PIP_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines()
                 if ln.strip() and not ln.startswith("WARNING")]
        raise RunError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")


# -- source archives and trees (the repo plugin's cache: fetched by pip, pinned by hash) ------

def _index(root: Path, package: str, version: str) -> Path:
    return root / "index" / f"{package.lower()}-{version}.json"


def release_spec(root: Path, payload: PerfPayload, version: str) -> RepoSpec:
    """The release as the repo plugin's cache names it; its hash is the task's pin, else
    the one recorded when it was first fetched here."""
    sha = payload.sha256.get(version)
    index = _index(root, payload.package, version)
    if sha is None and index.is_file():
        sha = str(json.loads(index.read_text())["sha256"])
    return RepoSpec(name=payload.package.lower(), requirement=f"{payload.package}=={version}",
                    sha256=sha, import_name=payload.module)


def fetch_tree(config: Config, payload: PerfPayload, version: str) -> tuple[str, Path, Path]:
    """``(sha256, archive-free source tree, cache entry)`` of a release, fetched once."""
    root = perf_root(config)
    repo = repository.fetch(release_spec(root, payload, version), Path(config.cache_dir))
    sha = repo.spec.sha256
    assert sha is not None
    if version not in payload.sha256:
        write_atomic(_index(root, payload.package, version), json.dumps({"sha256": sha}))
    return sha, repo.src, repo.root


def find_tree(config: Config, payload: PerfPayload, version: str) -> tuple[str, Path] | None:
    spec = release_spec(perf_root(config), payload, version)
    repo = repository.find(spec, Path(config.cache_dir))
    return None if repo is None or spec.sha256 is None else (spec.sha256, repo.src)


def package_dir(tree: Path, module: str, name: str | None = None) -> tuple[str, str]:
    """``(import root, package path)`` relative to a source tree: ``("src",
    "src/packaging")`` or ``("", "idna")``, or a single-module file ``("", "six.py")``;
    ``name``: the version's, for the error."""
    for root in ("src", ""):
        base = tree / root if root else tree
        if (base / module / "__init__.py").is_file():
            return root, str(Path(root) / module) if root else module
        if (base / f"{module}.py").is_file():
            return root, str(Path(root) / f"{module}.py") if root else f"{module}.py"
    raise RunError(f"no module {module!r} in {name or tree.name} (looked in src/ and the top "
                   "folder)")


def copy_tree(source: Path, dest: Path) -> None:
    """A writable copy of a (read-only) cached tree, with its files' times, so that its
    byte-compiled files stay valid."""
    shutil.copytree(source, dest, symlinks=True)
    for base, dirnames, filenames in os.walk(dest):
        for name in [*dirnames, *filenames]:
            path = os.path.join(base, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | 0o200)
    os.chmod(dest, stat.S_IMODE(os.stat(dest).st_mode) | 0o200)


def _compile(tree: Path) -> None:
    compileall.compile_dir(str(tree), quiet=2, workers=1)


# -- the human patch --------------------------------------------------------------------------

def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None


def file_diff(path: str, old: str | None, new: str | None) -> str:
    """A git-style unified diff of one text file (``None``: absent)."""
    a = (old or "").splitlines(keepends=True)
    b = (new or "").splitlines(keepends=True)
    body = []
    for line in difflib.unified_diff(a, b, f"a/{path}" if old is not None else "/dev/null",
                                     f"b/{path}" if new is not None else "/dev/null", n=3):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        body.append(line)
    head = f"diff --git a/{path} b/{path}\n"
    if old is None:
        head += "new file mode 100644\n"
    elif new is None:
        head += "deleted file mode 100644\n"
    return head + "".join(body) if body else ""


def source_files(tree: Path, package: str) -> dict[str, Path]:
    """The package's source files in a tree (relative path -> file), tests left out."""
    base = tree / package
    files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
    return {str(p.relative_to(tree)): p for p in files
            if "__pycache__" not in p.parts and p.suffix != ".pyc"
            and not is_test_path(str(p.relative_to(tree)))}


def is_test_path(rel: str) -> bool:
    parts = Path(rel).parts
    name = parts[-1] if parts else ""
    return any(p in TEST_NAMES for p in parts) or name.startswith("test_") or \
        name.endswith("_test.py")


# Assignments of a release's version or metadata (``__version__ = "26.0"``).  A release bumps
# them, and a test of the module's version against the installed metadata then fails in the
# baseline's venv: they are not the improvement and must not decide correctness.
_METADATA = re.compile(
    r"^\s*(?:__version__|__version_info__|__version_tuple__|version|VERSION|version_info|"
    r"version_tuple|__date__|__release_date__|__commit_id__|commit_id|__author__|"
    r"__copyright__|__license__|__email__|__status__)\s*(?::[^=]*)?=(?!=)")
# Bumped when what the human patch leaves out changes: prepared trees are made anew.
_HUMAN_RULES = "metadata-1"


def strip_metadata(old: str, new: str) -> tuple[str, list[str]]:
    """``new`` with every change that only touches version or metadata assignments (and
    blank lines beside them) reverted to ``old``; the new lines that were left out."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    kept: list[str] = []
    omitted: list[str] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        changed = [*a[i1:i2], *b[j1:j2]]
        if tag != "equal" and any(_METADATA.match(x) for x in changed) and \
                all(_METADATA.match(x) or not x.strip() for x in changed):
            kept += a[i1:i2]
            omitted += [x.rstrip("\n") for x in b[j1:j2] if x.strip()]
        else:
            kept += b[j1:j2]
    return "".join(kept), omitted


def tree_diff(old_tree: Path, new_tree: Path, package: str) -> tuple[str, list[str]]:
    """The source diff of the package between two trees (tests, docs and the rest of the
    archive left out; files that are not UTF-8 text are skipped; version and metadata
    assignments left out: :func:`strip_metadata`), and the lines left out
    (``path: line``)."""
    old, new = source_files(old_tree, package), source_files(new_tree, package)
    parts = []
    omitted: list[str] = []
    for rel in sorted(set(old) | set(new)):
        a = _text(old[rel]) if rel in old else None
        b = _text(new[rel]) if rel in new else None
        if (rel in old and a is None) or (rel in new and b is None):
            continue
        if a is not None and b is not None:
            b, left_out = strip_metadata(a, b)
            omitted += [f"{rel}: {line.strip()}" for line in left_out]
        if a != b:
            parts.append(file_diff(rel, a, b))
    return "".join(parts), omitted


# -- venvs ----------------------------------------------------------------------------------------

def venv_key(sha: str, requirements: list[str]) -> str:
    return _key(sha, sys.version, str(Path(sys.executable).resolve()), *sorted(requirements))


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def make_venv(root: Path, sha: str, requirement: str, requirements: list[str],
              source: Path | None = None) -> Path:
    """A venv with the baseline installed (a release by its requirement, or the tree
    ``source`` of a commit; its dependencies resolved by pip; runs import the version's
    tree, put first on the path) and the test requirements; made once per (version,
    Python, requirements) and reused."""
    venv = root / "venvs" / venv_key(sha, requirements)
    if (venv / ".kbtool-ready").is_file():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    # A venv's scripts name its path: build it where it stays, and mark it ready last.
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], f"python -m venv {venv}")
    with tempfile.TemporaryDirectory(dir=venv.parent, prefix=".src-") as tmp:
        target = requirement
        if source is not None:  # pip builds in the tree it is given: a copy, not the cache's
            copy_tree(source, Path(tmp) / "src")
            target = str(Path(tmp) / "src")
        _run([sys.executable, "-m", "pip", "--python", str(venv_python(venv)), "install",
              "--quiet", target, *requirements],
             f"pip install {requirement} {' '.join(requirements)}")
    (venv / ".kbtool-ready").write_text(json.dumps({"release": requirement,
                                                    "requirements": requirements}))
    return venv


# -- a task's versions: releases or commits -------------------------------------------------

@dataclass(frozen=True)
class Source:
    """One version's source tree: ``key`` names it in the cache (the archive's SHA-256, or
    the commit's hash), ``name`` in results (a version, or the commit's hash)."""

    key: str
    tree: Path
    name: str


def _commit_of(payload: PerfPayload, arm: str) -> str | None:
    return {"human": payload.commit, "main": payload.main,
            "baseline": payload.baseline_commit}[arm]


def _release_of(payload: PerfPayload, arm: str) -> str | None:
    return {"human": payload.human, "main": payload.main, "baseline": payload.baseline}[arm]


def _clone(config: Config, payload: PerfPayload, task_dir: Path | None,
           commit: str) -> gitrepo.Clone:
    """The cache's clone of the task's repository, holding ``commit`` (fetched if not)."""
    assert payload.repo is not None
    repo = gitrepo.clone(perf_root(config) / "git", gitrepo.location(payload.repo, task_dir))
    if not repo.has(commit):
        repo.fetch()
        if not repo.has(commit):
            raise UsageError(f"commit {commit} is not in {repo.url}")
    return repo


def baseline_commit(config: Config, payload: PerfPayload, task_dir: Path | None,
                    fetch: bool = True) -> str | None:
    """A commit task's baseline: ``baseline_commit``, else the commit's first parent (asked
    of the clone once, then recorded; without ``fetch`` only the record: None)."""
    if payload.baseline_commit is not None:
        return payload.baseline_commit
    assert payload.commit is not None
    parent = gitrepo.parent_of(perf_root(config) / "git", payload.commit)
    if parent is None and fetch:
        repo = _clone(config, payload, task_dir, payload.commit)
        parent = repo.info(payload.commit)["parent"]
        if parent is None:
            raise UsageError(f"commit {payload.commit[:12]} of {repo.url} has no parent: "
                             "name the baseline (baseline_commit)")
    return parent


def fetch_source(config: Config, payload: PerfPayload, task_dir: Path | None,
                 arm: str) -> Source:
    """The tree of a task's version (``baseline``, ``human``, ``main``), fetched once."""
    if not payload.from_git:
        version = _release_of(payload, arm)
        assert version is not None
        sha, tree, _ = fetch_tree(config, payload, version)
        return Source(sha, tree, version)
    commit = baseline_commit(config, payload, task_dir) if arm == "baseline" else \
        _commit_of(payload, arm)
    assert commit is not None
    tree = gitrepo.tree_dir(perf_root(config) / "git", commit)
    if not tree.is_dir():
        tree = _clone(config, payload, task_dir, commit).tree(commit)
    return Source(commit, tree, commit)


def find_source(config: Config, payload: PerfPayload, arm: str) -> Source | None:
    """The tree of a task's version if it is in the cache (never fetches)."""
    if not payload.from_git:
        version = _release_of(payload, arm)
        assert version is not None
        found = find_tree(config, payload, version)
        return None if found is None else Source(found[0], found[1], version)
    commit = baseline_commit(config, payload, None, fetch=False) if arm == "baseline" else \
        _commit_of(payload, arm)
    if commit is None:
        return None
    tree = gitrepo.tree_dir(perf_root(config) / "git", commit)
    return Source(commit, tree, commit) if tree.is_dir() else None


def _has_human_version(payload: PerfPayload) -> bool:
    """The human version is a tree of its own (a release or a commit), not a patch."""
    return payload.from_git or payload.human is not None


# -- the whole task -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Prepared:
    """Where a task's versions are on this machine.  The human patch runs in the baseline's
    venv, as any agent's patch does: the human arm is the human patch as a candidate."""

    baseline_tree: Path
    human_tree: Path
    human_patch: Path
    baseline_python: Path | None   # None: the task runs in its container images
    import_root: str        # "src" or "" (relative to a tree)
    package_path: str       # "src/packaging", "idna" or "six.py"
    main_tree: Path | None = None   # the baseline tree with the later version's source
    baseline_name: str = ""         # the release, or the commit's hash
    human_name: str = "patch"

    @property
    def omitted(self) -> list[str]:
        """The version and metadata lines left out of the human patch."""
        path = self.human_patch.with_name("omitted.json")
        return list(json.loads(path.read_text())) if path.is_file() else []


def _human_key(base_sha: str, human_sha: str | None, patch_text: str | None) -> str:
    return _key(base_sha, human_sha or "", hashlib.sha256((patch_text or "").encode()).hexdigest(),
                _HUMAN_RULES if human_sha else "")


def human_patch_text(payload: PerfPayload, task_dir: Path | None) -> str | None:
    """A task's human patch given as a file or inline (None: it is a release)."""
    if payload.human_patch is not None:
        return payload.human_patch
    if payload.human_patch_file is None:
        return None
    if task_dir is None:
        raise UsageError(f"human_patch_file {payload.human_patch_file}: the task has no folder")
    path = task_dir / payload.human_patch_file
    if not path.is_file():
        raise UsageError(f"human patch file not found: {path}")
    return path.read_text()


def prepare(payload: PerfPayload, config: Config, task_dir: Path | None) -> Prepared:
    """Make everything the task needs here (downloads, clones, trees, the human patch,
    venvs)."""
    root = perf_root(config)
    root.mkdir(parents=True, exist_ok=True)
    (root / "locks").mkdir(exist_ok=True)
    from filelock import FileLock  # here: listing tasks needs none of it

    with FileLock(root / "locks" / f"{payload.package.lower()}.lock", timeout=3600):
        base = fetch_source(config, payload, task_dir, "baseline")
        _, package = package_dir(base.tree, payload.module, base.name)
        if payload.image is None:  # an image holds its own built package
            if payload.from_git:
                make_venv(root, base.key, f"{payload.repo}@{base.key}",
                          payload.test_requirements, base.tree)
            else:
                make_venv(root, base.key, f"{payload.package}=={payload.baseline}",
                          payload.test_requirements)
        human_key = None
        patch_text = human_patch_text(payload, task_dir)
        omitted: list[str] = []
        if _has_human_version(payload):
            human = fetch_source(config, payload, task_dir, "human")
            human_key = human.key
            patch_text, omitted = tree_diff(base.tree, human.tree, package)
        assert patch_text is not None
        _patched_tree(root / "human" / _human_key(base.key, human_key,
                                                  human_patch_text(payload, task_dir)),
                      base.tree, patch_text, omitted, f"the human patch of {payload.package}")
        if payload.main is not None:
            main = fetch_source(config, payload, task_dir, "main")
            main_patch, omitted = tree_diff(base.tree, main.tree, package)
            _patched_tree(root / "human" / _human_key(base.key, main.key, None), base.tree,
                          main_patch, omitted, f"{payload.package} {payload.main}")
    return locate(payload, config, task_dir)


def _patched_tree(folder: Path, base_tree: Path, patch_text: str, omitted: list[str],
                  what: str) -> None:
    """``folder/tree``: a compiled copy of ``base_tree`` with ``patch_text`` applied (the
    human patch, or the later release's source as one), made once."""
    from kbtool_plugins.perf.patching import apply_patch

    if (folder / "tree").is_dir():
        return
    folder.parent.mkdir(exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    try:
        copy_tree(base_tree, staged / "tree")
        applied = apply_patch(patch_text, staged / "tree")
        if applied.error:
            raise RunError(f"{what} does not apply to {base_tree.parent.name}: "
                           f"{applied.error}")
        _compile(staged / "tree")
        (staged / "human.diff").write_text(patch_text)
        (staged / "omitted.json").write_text(json.dumps(omitted))
        staged.rename(folder)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def locate(payload: PerfPayload, config: Config, task_dir: Path | None) -> Prepared:
    """The prepared paths (never downloads); ``TaskRefused`` when something is missing."""
    root = perf_root(config)
    what = "commits" if payload.from_git else "releases"
    hint = (f"its {what} are not prepared in this cache (run `kbtool perf prepare` with this "
            f"cache_dir where {'its repository' if payload.from_git else 'PyPI'} is "
            f"reachable): {root}")
    base = find_source(config, payload, "baseline")
    human = find_source(config, payload, "human") if _has_human_version(payload) else None
    if base is None or (_has_human_version(payload) and human is None):
        raise TaskRefused(hint)
    folder = root / "human" / _human_key(base.key, human.key if human else None,
                                         human_patch_text(payload, task_dir))
    needed = [folder / "tree", folder / "human.diff"]
    python = None
    if payload.image is None:
        base_venv = root / "venvs" / venv_key(base.key, payload.test_requirements)
        needed.append(base_venv / ".kbtool-ready")
        python = venv_python(base_venv)
    main_tree = None
    if payload.main is not None:
        main = find_source(config, payload, "main")
        if main is None:
            raise TaskRefused(hint)
        main_tree = root / "human" / _human_key(base.key, main.key, None) / "tree"
        needed.append(main_tree)
    if not all(p.exists() for p in needed):
        raise TaskRefused(hint)
    import_root, package = package_dir(base.tree, payload.module)
    return Prepared(base.tree, folder / "tree", folder / "human.diff", python, import_root,
                    package, main_tree, base.name, human.name if human else "patch")
