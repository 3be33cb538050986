"""Commit tasks whose arms run in container images (``image: {baseline, human}``), through
Podman (and Apptainer where it is installed): a package that needs a build (its module
``_native`` is made by the build, never committed), images made here from a local root
folder (this machine's system Python, its libraries and pytest: no registry), one per
commit, tagged by the commit's hash as the seed's are.  The package cannot run from its git
tree: a verdict proves the runs used the images, and the agent's patch reached the
baseline's image as files bound over its tree."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kbtool.sandbox.containers import apptainer_binary
from tests.helpers import run_kbtool
from tests.perf.test_commits import QUICK, WORKLOAD, make_repo
from tests.repo.test_containers import podman_socket  # noqa: F401  (a fixture)

SYSTEM_PYTHON = Path("/usr/bin/python3")
# pytest and what it imports, from the Python running these tests (pure Python).
PYTEST = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "py")


def _libraries(binary: Path) -> set[Path]:
    found = set()
    for line in subprocess.run(["ldd", str(binary)], capture_output=True,
                               text=True).stdout.splitlines():
        match = re.search(r"(/\S+) \(0x", line)
        if match:
            found.add(Path(match.group(1)))
    return found


def python_rootfs(root: Path) -> None:
    """A root folder with this machine's system Python, its standard library, the shared
    libraries it and its extension modules load, and pytest; what Podman and Apptainer
    mount on."""
    if not SYSTEM_PYTHON.exists() or shutil.which("ldd") is None:
        pytest.skip(f"no {SYSTEM_PYTHON} (or no ldd) to make an image's root folder from")
    exe = Path(os.path.realpath(SYSTEM_PYTHON))
    paths = json.loads(subprocess.run(
        [str(exe), "-c", "import json, sys, sysconfig; print(json.dumps([sys.version_info[:2],"
         " sysconfig.get_paths()['stdlib']]))"], capture_output=True, text=True).stdout)
    version, stdlib = tuple(paths[0]), Path(paths[1])
    if version != tuple(sys.version_info[:2]):
        pytest.skip(f"{exe} is Python {version}, these tests run {sys.version_info[:2]} (the "
                    "image gets this Python's pytest)")
    for name in ("bin", "lib", "lib64", "sbin"):  # a merged /usr, as the host's
        if os.path.islink(f"/{name}"):
            link = os.readlink(f"/{name}")
            (root / link.lstrip("/")).mkdir(parents=True, exist_ok=True)
            (root / name).symlink_to(link)
    for folder in ("tmp", "dev", "proc", "sys", "etc", "var/tmp", "usr/bin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in ("hosts", "localtime", "resolv.conf", "passwd", "group"):
        (root / "etc" / name).touch()
    shutil.copy2(exe, root / str(exe).lstrip("/"))
    (root / "usr/bin/python3").unlink(missing_ok=True)
    (root / "usr/bin/python3").symlink_to(exe.name)
    shutil.copytree(stdlib, root / str(stdlib).lstrip("/"), symlinks=True,
                    ignore=shutil.ignore_patterns("test", "__pycache__"))
    libraries: set[Path] = set()
    for binary in [exe, *(stdlib / "lib-dynload").glob("*.so")]:
        libraries |= _libraries(binary)
    for library in libraries:
        target = root / str(library).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, target)  # with its mode: the loader must be executable
    site = Path(sys.modules["pytest"].__file__ or "").parent.parent
    dist = root / "usr/lib/python3/dist-packages"
    dist.mkdir(parents=True)
    for path in site.iterdir():
        name = path.name.split("-")[0].removesuffix(".py")
        if name in PYTEST and (path.suffix in (".py", ".dist-info") or path.is_dir()):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, dist / path.name)


def native_build(tree: Path) -> None:
    """The package's build: what makes ``_native`` (``build.py``, as a compiled extension's
    build would)."""
    subprocess.run([sys.executable, "build.py"], cwd=tree, check=True)


@dataclass
class Images:
    repo: Path
    commits: dict[str, str]
    out: Path
    cache: Path
    tag: str
    env: dict[str, str]

    def settings(self, engine: str = "podman") -> list[str]:
        return [f"perf_tasks_dir={self.out}", f"cache_dir={self.cache}", f"perf_engine={engine}"]

    def task(self, key: str) -> str:
        return f"perf/uniq-{self.commits[key][:10]}"


def arm_root(rootfs: Path, tree: Path, into: Path) -> Path:
    """The root folder of one arm's image: the Python root with the built tree at
    /testbed."""
    shutil.copytree(rootfs, into, symlinks=True, copy_function=os.link)
    shutil.copytree(tree, into / "testbed", symlinks=True)
    native_build(into / "testbed")
    return into


def export(repo: Path, commit: str, into: Path) -> Path:
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(repo), "archive", commit], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def build_tasks(images: Images, lines: str, baseline: str, human: str,
                out: Path | None = None) -> subprocess.CompletedProcess[str]:
    work = images.out.parent / "work"
    work.mkdir(exist_ok=True)
    (work / "unique_ints.py").write_text(WORKLOAD)
    (work / "commits.txt").write_text(lines)
    return run_kbtool("perf", "build", str(work / "commits.txt"), "--repo", str(images.repo),
                      "--out", str(out or images.out), "--workload",
                      str(work / "unique_ints.py"), "--hidden-workload",
                      f'{work / "unique_ints.py"}:{{"N": 5000, "SPREAD": 4000}}', "--tests",
                      "tests", "--image-baseline", baseline, "--image-human", human,
                      f"cache_dir={images.cache}", env=images.env)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The repository and the Python root folder the images are made of."""
    tmp = tmp_path_factory.mktemp("images")
    commits = make_repo(tmp / "uniq", native=True)
    python_rootfs(tmp / "rootfs")
    return Images(tmp / "uniq", commits, tmp / "tasks", tmp / "cache",
                  f"localhost/kbtool-test-perf-{uuid.uuid4().hex[:8]}", {})


@pytest.fixture(scope="module")
def images(source: Images, podman_socket: str) -> Iterator[Images]:  # noqa: F811
    """A Podman image per commit (tagged by its hash) and the tasks naming them."""
    found = dataclasses.replace(source, env={"CONTAINER_HOST": podman_socket})
    repo, commits, tag, tmp = found.repo, found.commits, found.tag, found.out.parent
    rootfs = tmp / "rootfs"
    made = []
    try:
        for key in ("docs", "speedup"):
            root = arm_root(rootfs, export(repo, commits[key], tmp / "trees" / key),
                            tmp / "roots" / key)
            name = f"{tag}:{commits[key][:12]}"
            tar = subprocess.run(["tar", "-C", str(root), "-c", "."], check=True,
                                 capture_output=True).stdout
            subprocess.run(["podman", "import", "-q", "-", name], input=tar, check=True,
                           capture_output=True)
            made.append(name)
        proc = build_tasks(found, f"{commits['speedup'][:8]}\n", f"{tag}:{{baseline:.12}}",
                           f"{tag}:{{commit:.12}}")
        assert proc.returncode == 0, proc.stderr
        yield found
    finally:
        for name in made:
            subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def test_the_task_names_an_image_per_arm(images: Images) -> None:
    speedup = images.commits["speedup"]
    data = yaml.safe_load((images.out / f"uniq-{speedup[:10]}.yaml").read_text())
    assert data["image"] == {"baseline": f"{images.tag}:{images.commits['docs'][:12]}",
                             "human": f"{images.tag}:{speedup[:12]}"}


def test_a_commit_task_is_checked_and_judged_in_its_images(images: Images,
                                                           tmp_path: Path) -> None:
    task = images.task("speedup")
    check = run_kbtool("tasks", "check", task, *images.settings(), env=images.env,
                       timeout=900)
    assert check.returncode == 0, check.stderr
    assert "the package's tests pass on the human (1 passed" in check.stdout, check.stdout
    # Nothing was installed on this machine: the package runs only in its images (its
    # _native module is the build's).
    assert not (images.cache / "perf" / "venvs").exists()

    shown = run_kbtool("tasks", "show", task, "--json", *images.settings(), env=images.env)
    human = tmp_path / "human.diff"
    human.write_text(json.loads(shown.stdout)["human_patch"])
    proc = run_kbtool("eval", task, "--solution", str(human), "--json", *images.settings(),
                      *QUICK, env=images.env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["outcome"] == "timed", result["error"]
    assert result["engine"] == "podman" and result["tests_passed"] == 1
    assert result["speedup"] > 3 and result["significant"] is True, result
    assert result["calibrated"] is True

    empty = tmp_path / "empty.diff"
    empty.write_text("")
    proc = run_kbtool("eval", task, "--solution", str(empty), "--json", *images.settings(),
                      *QUICK, env=images.env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["outcome"] == "empty_patch", result["error"]
    assert result["opt_base"] is False and result["human_speedup"] > 3


def test_images_need_an_engine_the_images_and_whole_files(images: Images,
                                                          tmp_path: Path) -> None:
    task = images.task("speedup")
    empty = tmp_path / "empty.diff"
    empty.write_text("")
    local = run_kbtool("eval", task, "--solution", str(empty), *images.settings("local"),
                       env=images.env)
    assert local.returncode == 2 and local.stderr.strip() == (
        f"kbtool: error: task {task}: the task runs in container images (image:): set "
        "perf_engine=podman or perf_engine=apptainer"), local.stderr

    other = tmp_path / "other"
    proc = build_tasks(images, f"{images.commits['speedup']}\n", f"{images.tag}:{{baseline:.12}}",
                       f"{images.tag}:not-built", out=other)
    assert proc.returncode == 0, proc.stderr
    missing = run_kbtool("eval", task, "--solution", str(empty), f"perf_tasks_dir={other}",
                         f"cache_dir={images.cache}", "perf_engine=podman", env=images.env)
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"kbtool: error: perf_engine=podman: no image {images.tag}:not-built on this "
        "machine (build, load or pull it)"), missing.stderr

    removes = tmp_path / "removes.diff"
    text = subprocess.run(["git", "-C", str(images.repo), "show",
                           f"{images.commits['docs']}:src/uniq/__init__.py"], check=True,
                          capture_output=True, text=True).stdout
    removes.write_text("diff --git a/src/uniq/__init__.py b/src/uniq/__init__.py\n"
                       "deleted file mode 100644\n--- a/src/uniq/__init__.py\n+++ /dev/null\n"
                       f"@@ -1,{len(text.splitlines())} +0,0 @@\n"
                       + "".join(f"-{line}\n" for line in text.splitlines()))
    proc = run_kbtool("eval", task, "--solution", str(removes), "--json", *images.settings(),
                      env=images.env)
    result = json.loads(proc.stdout)
    assert result["status"] == "rejected" and result["outcome"] == "refused", result
    assert "it removes src/uniq/__init__.py; in a task with container images a patch may " \
           "change and add files" in result["error"]


def test_apptainer_runs_the_arms_in_image_folders(source: Images, tmp_path: Path) -> None:
    """The same task with Apptainer: each arm's image is a folder (a sandbox image)."""
    if apptainer_binary() is None:
        pytest.skip("neither apptainer nor singularity is installed here (CI: bash "
                    ".ci/setup-apptainer.sh)")
    images = source
    rootfs = images.out.parent / "rootfs"
    folders = tmp_path / "images"
    for key in ("docs", "speedup"):
        commit = images.commits[key]
        arm_root(rootfs, export(images.repo, commit, tmp_path / "trees" / key),
                 folders / commit[:12])
    out = tmp_path / "tasks"
    proc = build_tasks(images, f"{images.commits['speedup']}\n", f"{folders}/{{baseline:.12}}",
                       f"{folders}/{{commit:.12}}", out=out)
    assert proc.returncode == 0, proc.stderr
    shown = run_kbtool("tasks", "show", images.task("speedup"), "--json",
                       f"perf_tasks_dir={out}", f"cache_dir={images.cache}",
                       "perf_engine=apptainer")
    assert shown.returncode == 0, shown.stderr
    human = tmp_path / "human.diff"
    human.write_text(json.loads(shown.stdout)["human_patch"])
    proc = run_kbtool("eval", images.task("speedup"), "--solution", str(human), "--json",
                      f"perf_tasks_dir={out}", f"cache_dir={images.cache}",
                      "perf_engine=apptainer", *QUICK)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["engine"] == "apptainer", result["error"]
    assert result["speedup"] > 3 and result["significant"] is True, result
