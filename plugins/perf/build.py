"""``kbtool perf build``: perf tasks from a file of commits of one git repository.

ISO-Bench's and GSO's tasks are commits, not releases: a list of benchmarkable commit hashes
of one repository (one a line, as the seed's runners take them), each commit the human
version and its first parent the baseline.  Each commit becomes one task file naming the
repository and both full hashes; the workloads, tests and the rest every task shares come
from the command's options or a template (a partial task file).  Everything is checked
before anything is written: a hash that names no commit, or several, is one line and exit 2.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kbtool.config import Config
from kbtool.errors import RunError, UsageError, invalid
from kbtool.util.files import write_atomic
from kbtool_plugins.perf import gitrepo, releases
from kbtool_plugins.perf.patching import patch_paths
from kbtool_plugins.perf.settings import PerfPayload

# What a template may not set: each task's own.
_PER_COMMIT = ("repo", "commit", "baseline_commit", "baseline", "human", "human_patch",
               "human_patch_file", "sha256", "name", "number")


@dataclass
class Built:
    """One task made from one commit."""

    line: int
    name: str
    data: dict[str, Any]
    subject: str
    files: list[str]      # the package's files the human diff changes
    omitted: list[str]    # version and metadata lines left out of it


def read_commits(path: Path) -> list[tuple[int, str]]:
    """``(line number, hash)`` of each commit line: the first word; blank lines and ``#``
    comments skipped."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"commits file {path}: {exc.strerror or exc}") from None
    found = [(number, line.split()[0]) for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not found:
        raise UsageError(f"commits file {path}: no commit hashes in it (one a line)")
    return found


def workload_entry(spec: str, hidden: bool) -> dict[str, Any]:
    """``FILE`` or ``FILE:{json params}`` as a workload entry (its file as given)."""
    file, params = spec, None
    if ":" in spec and spec.split(":", 1)[1].lstrip().startswith("{"):
        file, raw = spec.split(":", 1)
        try:
            params = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"--hidden-workload {spec}: params are not JSON ({exc})") from None
    entry: dict[str, Any] = {"name": re.sub(r"\W", "_", Path(file).stem), "file": file}
    if params:
        if not hidden:
            raise UsageError(f"--workload {spec}: params belong to hidden workloads")
        entry["params"] = params
    return entry


def _copy_workloads(entries: list[dict[str, Any]], base: Path, out: Path,
                    copied: dict[str, Path]) -> None:
    """Each workload's file copied into ``out/workloads`` and named relative to ``out``."""
    for entry in entries:
        if "file" not in entry:
            continue
        source = (base / entry["file"]).resolve()
        if not source.is_file():
            raise UsageError(f"workload {entry.get('name')}: no file {source}")
        rel = f"workloads/{source.name}"
        if copied.get(rel, source) != source:
            raise UsageError(f"two workload files are named {source.name} ({copied[rel]} and "
                             f"{source}): rename one")
        copied[rel] = source
        entry["file"] = rel


def _unique_names(entries: list[dict[str, Any]]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        name = entry["name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            entry["name"] = f"{name}_{seen[name]}"


def _module(tree: Path, package: str | None) -> str:
    """The import name when none is given: the project's name if the tree holds it, else
    the one package in ``src/`` or the top folder."""
    if package:
        guess = re.sub(r"[-.]+", "_", package).lower()
        try:
            releases.package_dir(tree, guess)
            return guess
        except RunError:
            pass
    found = sorted({p.parent.name for root in (tree / "src", tree)
                    for p in root.glob("*/__init__.py")
                    if p.parent.name not in releases.TEST_NAMES and
                    not p.parent.name.startswith((".", "_"))})
    if len(found) != 1:
        raise UsageError("give --module (the package's import name): "
                         + (f"the tree holds {', '.join(found)}" if found else
                            "no package found in src/ or the top folder"))
    return found[0]


def _template(path: Path | None) -> tuple[dict[str, Any], Path]:
    if path is None:
        return {}, Path.cwd()
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"template {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"template {path}: not a mapping")
    mine = sorted(set(data) & set(_PER_COMMIT))
    if mine:
        raise UsageError(f"template {path}: {', '.join(mine)} belong to each commit's task, "
                         "not to the template")
    return data, path.resolve().parent


def _formatted(image: dict[str, Any], commit: str, baseline: str) -> dict[str, Any]:
    """Image names with ``{commit}`` and ``{baseline}`` (the full hashes; ``{commit:.12}``
    takes 12 digits) filled in."""
    try:
        return {arm: ref.format(commit=commit, baseline=baseline) if isinstance(ref, str)
                else ref for arm, ref in image.items()}
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(f"image: {exc} in an image name (it may use {{commit}} and "
                         "{baseline})") from None


def build(config: Config, commits_file: Path, repo: str, out: Path,
          options: dict[str, Any], template: Path | None = None,
          name: str | None = None) -> list[Built]:
    """Task files in ``out``, one per commit of ``commits_file``; ``options``: task fields
    every task gets (over the template's)."""
    commits = read_commits(commits_file)
    base, base_dir = _template(template)
    shared = {**base, **{k: v for k, v in options.items() if v not in (None, [], {})}}
    copied: dict[str, Path] = {}
    for kind in ("workloads", "hidden_workloads"):
        entries = []
        for given, folder in ((base.get(kind) or [], base_dir), (options.get(kind) or [],
                                                                 Path.cwd())):
            if not isinstance(given, list) or not all(isinstance(e, dict) for e in given):
                raise UsageError(f"{kind}: a list of workloads (name, file, params)")
            mine = [dict(e) for e in given]
            _copy_workloads(mine, folder, out, copied)
            entries += mine
        if entries:
            shared[kind] = entries
    _unique_names([*shared.get("workloads", []), *shared.get("hidden_workloads", [])])

    url = gitrepo.location(repo, Path.cwd())
    clone = gitrepo.clone(releases.perf_root(config) / "git", url)
    resolved: dict[str, int] = {}
    built: list[Built] = []
    for number, rev in commits:
        where = f"{commits_file} line {number}"
        try:
            commit = clone.resolve(rev)
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
        if commit in resolved:
            raise UsageError(f"{where}: {rev} is the commit of line {resolved[commit]} again")
        resolved[commit] = number
        info = clone.info(commit)
        parent = info["parent"]
        if parent is None:
            raise UsageError(f"{where}: {rev} has no parent (a repository's first commit)")
        base_tree, human_tree = clone.tree(parent), clone.tree(commit)
        module = shared.get("module") or _module(base_tree, shared.get("package"))
        package = shared.get("package") or module
        try:
            _, package_path = releases.package_dir(base_tree, module, f"the tree of {parent[:12]}")
            releases.package_dir(human_tree, module, f"the tree of {commit[:12]}")
        except RunError as exc:
            raise UsageError(f"{where}: {exc}") from None
        diff, omitted = releases.tree_diff(base_tree, human_tree, package_path)
        if not diff.strip():
            raise UsageError(f"{where}: commit {commit[:12]} changes none of {package_path}'s "
                             "source (only tests, docs, build files or version lines): it "
                             "is no improvement of the package")
        files = sorted({p[2:] for p in patch_paths(diff) if p.startswith(("a/", "b/"))})
        data: dict[str, Any] = {"package": package, "module": module, "repo": url,
                                "commit": commit, "baseline_commit": parent, **shared}
        data.update(package=package, module=module)
        if "prompt_files" not in shared:
            data["prompt_files"] = [f for f in files if (base_tree / f).is_file()]
        if isinstance(data.get("image"), dict):
            data["image"] = _formatted(data["image"], commit, parent)
        prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", name or package).strip("-").lower()
        task_name = f"{prefix}-{commit[:10]}"
        try:
            PerfPayload.model_validate(data)
        except ValidationError as exc:
            raise UsageError(f"{where}: the task is invalid: {invalid(exc, 'task')}") from None
        built.append(Built(number, task_name, data, str(info["subject"]), files, omitted))

    for rel, source in copied.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / rel)
    for index, task in enumerate(built, 1):
        head = (f"# {task.subject}\n# built by `kbtool perf build` from {commits_file.name} "
                f"line {task.line}\n")
        body = yaml.safe_dump({"name": task.name, "number": index, **task.data},
                              sort_keys=False, width=100, allow_unicode=True)
        write_atomic(out / f"{task.name}.yaml", head + body)
    return built
