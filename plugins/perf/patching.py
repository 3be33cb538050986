"""A candidate patch applied to a copy of the baseline's source tree.

The ladder (GSO's, without partial ``--reject`` application): ``git apply``; then ``git
apply --recount --ignore-whitespace`` (LLM diffs often miscount hunk lines or re-indent
context); then ``patch --fuzz=5``.  Each rung starts from a fresh copy.  What a patch may
change is decided afterwards, from the tree itself (not from the patch's headers, which a
patch can word as it likes): only files of the package's source, never a test, a link, or
anything outside the package (workloads, build files, ``sitecustomize.py``, ``.pth``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_PATH_LINE = re.compile(r"^(?:\+\+\+|---) (\S+)")
_GIT_LINE = re.compile(r"^diff --git (\S+) (\S+)")
APPLY_TIMEOUT_S = 60


@dataclass
class Applied:
    method: str | None = None                       # the rung that applied
    error: str | None = None                        # why none did
    tried: list[str] = field(default_factory=list)


def patch_paths(text: str) -> list[str]:
    """The paths a unified diff names (``/dev/null`` left out), as written."""
    found: list[str] = []
    for line in text.splitlines():
        match = _GIT_LINE.match(line)
        names = list(match.groups()) if match else []
        match = _PATH_LINE.match(line)
        if match:
            names.append(match.group(1))
        found += [n for n in names if n != "/dev/null" and n not in found]
    return found


def strip_level(text: str) -> int:
    """1 when every path has git's ``a/``/``b/`` prefix, else 0."""
    paths = patch_paths(text)
    return 1 if paths and all(p.startswith(("a/", "b/")) for p in paths) else 0


def _attempt(argv: list[str], patch: bytes, cwd: Path) -> str | None:
    try:
        # No repository above the tree may be found: git would apply relative to its root.
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}
        proc = subprocess.run(argv, input=patch, capture_output=True, cwd=cwd, env=env,
                              timeout=APPLY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"{argv[0]} took longer than {APPLY_TIMEOUT_S} s"
    except FileNotFoundError:
        return f"{argv[0]} is not installed"
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit {proc.returncode}"


def apply_patch(text: str, tree: Path) -> Applied:
    """Apply ``text`` to ``tree`` in place (``tree`` is a disposable copy; on failure it is
    left as it was).  An empty patch is the null candidate: nothing changes."""
    applied = Applied()
    if not text.strip():
        applied.method = "empty"
        return applied
    level = strip_level(text)
    data = text.encode()
    rungs = [
        ("git apply", ["git", "apply", f"-p{level}", "--whitespace=nowarn", "-"]),
        ("git apply --recount --ignore-whitespace",
         ["git", "apply", f"-p{level}", "--recount", "--ignore-whitespace",
          "--whitespace=nowarn", "-"]),
        ("patch --fuzz=5", ["patch", f"-p{level}", "--fuzz=5", "--forward", "--batch",
                            "--no-backup-if-mismatch", "--reject-file=/dev/null",
                            "--silent"]),
    ]
    pristine = tree.parent / f".{tree.name}-pristine"
    shutil.copytree(tree, pristine, symlinks=True)
    try:
        for name, argv in rungs:
            error = _attempt(argv, data, tree)
            applied.tried.append(name)
            if error is None:
                applied.method, applied.error = name, None
                return applied
            applied.error = f"{name}: {error}"
            shutil.rmtree(tree)
            shutil.copytree(pristine, tree, symlinks=True)
        applied.error = f"the patch does not apply ({applied.error})"
        return applied
    finally:
        shutil.rmtree(pristine, ignore_errors=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under ``root``: relative path -> content hash (or link target)."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            found[rel] = f"link:{os.readlink(path)}" if path.is_symlink() else _digest(path)
    return found


def changed_files(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def refusal(changed: list[str], after: dict[str, str], package: str) -> str | None:
    """Why a patch that changed ``changed`` is refused (None: it is not)."""
    from kbtool_plugins.perf.releases import is_test_path

    for rel in changed:
        if "__pycache__" in Path(rel).parts:
            continue
        inside = rel == package or rel.startswith(package.rstrip("/") + "/")
        if not inside:
            return (f"it changes {rel}, outside the package's source ({package}/): a patch "
                    "may not touch the tests, the workloads or the build")
        if is_test_path(rel):
            return f"it changes {rel}, a test file"
        if after.get(rel, "").startswith("link:"):
            return f"it makes {rel} a symbolic link"
        if Path(rel).suffix in (".pth", ".so"):
            return f"it adds {rel}, which Python could load without an import of its source"
    return None
