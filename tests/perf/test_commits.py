"""Perf tasks from a git repository's history (``repo:``, ``commit:``): a real repository
made here (a small package, several commits, one a real speedup: a quadratic loop replaced
by a dict), turned into task files by ``kbtool perf build``, prepared once, and then checked
and judged with the repository gone (offline).  Bad hashes are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_kbtool

PACKAGE = '''{native}__version__ = "{version}"


def unique(items):
    """The items without repeats, in their first order."""
{body}
'''
SLOW = '''    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen'''
FAST = "    return list(dict.fromkeys(items))"
# The same work, said another way: no improvement (the negative control of the file).
PLAIN = '''    seen = []
    for item in items:
        if seen.count(item) == 0:
            seen.append(item)
    return seen'''
PYPROJECT = '''[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "uniq"
version = "{version}"
'''
TEST = '''from uniq import unique


def test_unique():
    assert unique([3, 1, 3, 2, 1]) == [3, 1, 2]
    assert unique([]) == []
'''
WORKLOAD = '''import random

N = 6000
SPREAD = 3000


def load():
    import uniq
    return uniq


def setup(seed):
    rng = random.Random(seed)
    return [rng.randrange(SPREAD) for _ in range(N)]


def experiment(api, data):
    return api.unique(data)


def store_result(result):
    return result


def check_equivalence(reference, current):
    assert reference == current
'''
QUICK = ["perf.min_rounds=4", "perf.max_rounds=6", "perf.equivalence_seeds=1"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


# With native=True the package needs a build: it imports _native, which build.py makes (as
# a compiled extension's build would) and git ignores.
BUILD = 'from pathlib import Path\n\nPath("src/uniq/_native.py").write_text("TAG = 1\\n")\n'
NATIVE = "from ._native import TAG  # made by build.py, never committed\n\n"


def make_repo(path: Path, native: bool = False) -> dict[str, str]:
    """A git repository of the package ``uniq``; its commits by what they do."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.org")
    git(path, "config", "user.name", "A developer")
    init = "src/uniq/__init__.py"
    head = NATIVE if native else ""
    first = {"pyproject.toml": PYPROJECT.format(version="1.0"), "tests/test_uniq.py": TEST,
             init: PACKAGE.format(native=head, version="1.0", body=SLOW)}
    if native:
        first.update({"build.py": BUILD, ".gitignore": "src/uniq/_native.py\n"})
    return {
        "root": commit(path, "uniq 1.0", first),
        "docs": commit(path, "docs: a readme", {"README.md": "# uniq\n"}),
        "speedup": commit(path, "perf: unique through a dict", {
            init: PACKAGE.format(native=head, version="1.0", body=FAST)}),
        "release": commit(path, "release 1.1", {
            "pyproject.toml": PYPROJECT.format(version="1.1"),
            init: PACKAGE.format(native=head, version="1.1", body=FAST)}),
        "plain": commit(path, "style: count instead of in", {
            init: PACKAGE.format(native=head, version="1.1", body=PLAIN)}),
    }


@dataclass
class Built:
    repo: Path
    commits: dict[str, str]
    out: Path
    cache: Path
    build: subprocess.CompletedProcess[str]

    def settings(self) -> list[str]:
        return [f"perf_tasks_dir={self.out}", f"cache_dir={self.cache}"]

    def task(self, key: str) -> str:
        return f"perf/uniq-{self.commits[key][:10]}"


def build(tmp: Path, repo: Path, lines: str, *extra: str,
          cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    (tmp / "work").mkdir(exist_ok=True)
    workload = tmp / "work" / "unique_ints.py"
    workload.write_text(WORKLOAD)
    commits = tmp / "work" / "commits.txt"
    commits.write_text(lines)
    return run_kbtool("perf", "build", str(commits), "--repo", str(repo), "--out",
                      str(tmp / "tasks"), "--workload", str(workload), "--hidden-workload",
                      f'{workload}:{{"N": 5000, "SPREAD": 4000}}', "--tests", "tests",
                      f"cache_dir={cache or tmp / 'cache'}", *extra)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The speedup and the negative control built into tasks from short hashes, prepared,
    and then the repository moved away: everything after runs from the cache."""
    tmp = tmp_path_factory.mktemp("commits")
    repo = tmp / "uniq"
    commits = make_repo(repo)
    lines = (f"# benchmarkable commits of uniq\n{commits['speedup'][:7]}\n\n"
             f"{commits['plain'][:9]}  style\n")
    proc = build(tmp, repo, lines)
    assert proc.returncode == 0, proc.stderr
    found = Built(repo, commits, tmp / "tasks", tmp / "cache", proc)
    tasks = [found.task("speedup"), found.task("plain")]
    prepared = run_kbtool("perf", "prepare", *tasks, *found.settings())
    if prepared.returncode != 0 and "pip install" in prepared.stderr:
        pytest.skip(f"cannot install the package's tree (PyPI unreachable?): {prepared.stderr}")
    assert prepared.returncode == 0, prepared.stderr
    repo.rename(tmp / "gone")  # offline from here on: no clone, no fetch
    return found


def test_a_commits_file_becomes_task_files(built: Built) -> None:
    speedup, plain = built.commits["speedup"], built.commits["plain"]
    out = built.build.stdout
    assert f"perf/uniq-{speedup[:10]}: {built.commits['docs'][:12]} -> {speedup[:12]} " \
           "changes src/uniq/__init__.py: perf: unique through a dict" in out, out
    assert "2 task files written to" in out
    text = (built.out / f"uniq-{speedup[:10]}.yaml").read_text()
    assert text.startswith("# perf: unique through a dict\n")
    data = yaml.safe_load(text)
    # Full hashes only: the short ones of the commits file were resolved.
    assert data["commit"] == speedup and data["baseline_commit"] == built.commits["docs"]
    assert data["repo"] == str(built.repo) and data["number"] == 1
    assert data["module"] == "uniq" and data["package"] == "uniq"
    assert data["prompt_files"] == ["src/uniq/__init__.py"] and data["tests"] == ["tests"]
    assert data["workloads"] == [{"name": "unique_ints", "file": "workloads/unique_ints.py"}]
    assert data["hidden_workloads"] == [{"name": "unique_ints_2",
                                         "file": "workloads/unique_ints.py",
                                         "params": {"N": 5000, "SPREAD": 4000}}]
    assert (built.out / "workloads" / "unique_ints.py").read_text() == WORKLOAD
    other = yaml.safe_load((built.out / f"uniq-{plain[:10]}.yaml").read_text())
    assert other["baseline_commit"] == built.commits["release"] and other["number"] == 2


def test_the_human_diff_is_the_commit_without_its_version_lines(built: Built) -> None:
    """The human patch of the plain commit's parent, the release, would have held its
    version bump; a commit's own diff is the package's source between the two trees."""
    shown = run_kbtool("tasks", "show", built.task("speedup"), "--json", *built.settings())
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    patch = data["human_patch"]
    assert patch.startswith("diff --git a/src/uniq/__init__.py b/src/uniq/__init__.py\n")
    assert "+    return list(dict.fromkeys(items))" in patch and "README" not in patch
    assert data["baseline_version"] == built.commits["docs"]
    assert data["human_version"] == built.commits["speedup"]


def test_a_commit_task_is_checked_and_judged_offline(built: Built, tmp_path: Path) -> None:
    task = built.task("speedup")
    check = run_kbtool("tasks", "check", task, *built.settings(), timeout=900)
    assert check.returncode == 0, check.stderr
    assert "the package's tests pass on the baseline" in check.stdout
    assert "hidden workload unique_ints_2: runs on the baseline" in check.stdout

    shown = json.loads(run_kbtool("tasks", "show", task, "--json", *built.settings()).stdout)
    human = tmp_path / "human.diff"
    human.write_text(shown["human_patch"])
    proc = run_kbtool("eval", task, "--solution", str(human), "--json", *built.settings(),
                      *QUICK)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["outcome"] == "timed", result["error"]
    assert result["speedup"] > 3 and result["significant"] is True, result
    assert result["calibrated"] is True and result["opt_base"] is True
    assert result["human_version"] == built.commits["speedup"]
    assert result["tests_passed"] == 1

    empty = tmp_path / "empty.diff"
    empty.write_text("")
    proc = run_kbtool("eval", task, "--solution", str(empty), "--json", *built.settings(),
                      *QUICK)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["outcome"] == "empty_patch", result["error"]
    # Not an optimisation; at 3-4 rounds its estimate alone may stray (1.21 once, quiet).
    assert result["opt_base"] is False and result["speedup_ci"][0] < 1.2, result
    assert result["calibrated"] is True and result["human_speedup"] > 3


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_bad_hashes_are_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    repo = tmp_path / "uniq"
    commits = make_repo(repo)
    said = {lines: one_line(build(tmp_path, repo, lines)) for lines in (
        f"{commits['speedup']}\ndeadbeef\n", "zz-top\n", f"{commits['root'][:8]}\n",
        f"{commits['docs']}\n", f"{commits['speedup'][:8]}\n{commits['speedup']}\n")}
    assert not (tmp_path / "tasks").exists()
    lines = list(said.values())
    assert lines[0].endswith(f"commits.txt line 2: deadbeef is not a commit of {repo}")
    assert lines[1].endswith("line 1: 'zz-top' is not a commit hash (4 to 64 hex digits)")
    assert lines[2].endswith(f"line 1: {commits['root'][:8]} has no parent (a repository's "
                             "first commit)")
    assert lines[3].endswith(f"line 1: commit {commits['docs'][:12]} changes none of "
                             "src/uniq's source (only tests, docs, build files or version "
                             "lines): it is no improvement of the package")
    assert lines[4].endswith(f"line 2: {commits['speedup']} is the commit of line 1 again")
    missing = one_line(build(tmp_path, tmp_path / "nowhere", f"{commits['speedup']}\n"))
    assert missing == (f"kbtool: error: repository {tmp_path / 'nowhere'} is not there (give "
                       "a clone's folder or a git URL)")


def test_an_ambiguous_short_hash_is_refused(tmp_path: Path) -> None:
    """Commits are made until two share their first four digits; that prefix names both."""
    repo = tmp_path / "uniq"
    make_repo(repo)
    seen: dict[str, str] = {}
    head = git(repo, "rev-parse", "HEAD")
    tree = git(repo, "rev-parse", "HEAD^{tree}")
    while True:
        head = git(repo, "commit-tree", tree, "-p", head, "-m", f"empty {len(seen)}")
        if head[:4] in seen:
            break
        seen[head[:4]] = head
    git(repo, "update-ref", "refs/heads/main", head)
    line = one_line(build(tmp_path, repo, f"{head[:4]}\n"))
    both = ", ".join(sorted([head[:12], seen[head[:4]][:12]]))
    assert line.endswith(f"line 1: {head[:4]} is ambiguous in {repo}: it begins {both}; give "
                         "more digits"), line


def test_a_task_file_names_full_hashes_and_may_leave_the_baseline_out(tmp_path: Path) -> None:
    """A task file written by hand: a short hash is refused in one line; without
    baseline_commit the baseline is the commit's first parent, resolved at prepare; main is
    a later commit, timed as a fourth arm."""
    repo = tmp_path / "uniq"
    commits = make_repo(repo)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "unique_ints.py").write_text(WORKLOAD)
    base = {"package": "uniq", "module": "uniq", "repo": "../uniq",
            "workloads": [{"name": "w", "file": "unique_ints.py"}]}
    (tasks / "short.yaml").write_text(yaml.safe_dump({**base, "commit": commits["speedup"][:12]}))
    settings = [f"perf_tasks_dir={tasks}", f"cache_dir={tmp_path / 'cache'}"]
    line = one_line(run_kbtool("tasks", "list", "source=perf", *settings))
    assert line == (f"kbtool: error: perf task {tasks / 'short.yaml'}: task: Value error, "
                    f"commit '{commits['speedup'][:12]}' is not a full commit hash (40 hex "
                    "digits; `kbtool perf build` resolves short ones)"), line
    (tasks / "short.yaml").write_text(yaml.safe_dump({**base, "commit": commits["speedup"],
                                                      "main": commits["plain"],
                                                      "tests": ["tests"]}))
    shown = run_kbtool("tasks", "show", "perf/short", "--json", *settings)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["baseline_version"] == commits["docs"]          # the first parent
    assert data["human_patch_files"] == ["src/uniq/__init__.py"]
    assert data["repo"] == "../uniq"                             # relative to the task file
    check = run_kbtool("tasks", "check", "perf/short", *settings, timeout=900)
    # Only that the task has no hidden workloads; main's results agree with the baseline's.
    assert check.returncode == 2 and "main" not in check.stderr, check.stderr
    assert check.stderr.count("PROBLEM") == 1 and "no hidden_workloads" in check.stderr
