"""The ``perf`` settings section, the task payload and the result details."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kbtool.config import Section
from kbtool.timing.compare import StopRule


class PerfSettings(Section):
    """``perf:`` in the config; the keys listed in ``flat_keys`` also at the top level."""

    name: ClassVar[str] = "perf"
    flat_keys: ClassVar[tuple[str, ...]] = ("perf_tasks_dir", "perf_engine")
    local_keys: ClassVar[tuple[str, ...]] = ("perf_tasks_dir",)

    perf_tasks_dir: Path | None = Field(
        None, description="a folder of more perf task files (*.yaml) for the perf source")
    perf_engine: Literal["local", "podman", "apptainer"] = Field(
        "local", description="where the workloads and the package's tests run: kbtool's "
        "sandbox here, or a fresh container per run (the judge stays outside)")
    clock: Literal["cpu", "wall"] = Field(
        "cpu", description="what the verdict times: each run's CPU time inside its timed "
        "region (read by the judge; a busy machine's descheduling leaves it, so intervals "
        "narrow several times faster), or the judge's wall clock (the work waits for I/O); "
        "both are reported")
    min_rounds: int = Field(8, ge=3, description="timing rounds before the interval may stop it")
    max_rounds: int = Field(30, ge=3, description="timing rounds at most")
    target_rel_ci: float = Field(
        0.05, gt=0, description="stop when every ratio's interval is within +-this (log scale)")
    max_timing_s: float = Field(
        120.0, gt=0, description="time cap of the interleaved timing (also kept within "
        "timeout_s)")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence of the intervals")
    outlier_k: float = Field(1.5, ge=0, description="IQR fence of per-round ratios (0: none)")
    equivalence_seeds: int = Field(
        2, ge=1, description="fresh inputs per workload checked before timing")
    run_timeout_s: float = Field(120.0, gt=0, description="time limit of one workload process")
    test_timeout_s: float = Field(600.0, gt=0, description="time limit of the package's tests")
    run_tests: bool = Field(True, description="run the package's own tests on the patch")
    moved_work_fraction: float = Field(
        0.3, gt=0, description="reject when the untimed phases (import, setup) grow by more "
        "than this share of the time the patch saves inside the timed region")
    moved_work_floor_ms: float = Field(
        15.0, ge=0, description="... and by more than this many milliseconds (both read "
        "from the CPU time of the runs' untimed phases, as the lower end of an interval)")
    overfit_ratio: float = Field(
        1.15, gt=1, description="flag overfits_workload when the agent-vs-human ratio on the "
        "visible workloads is significantly more than this times the one on hidden ones")
    progress_s: float = Field(
        10.0, ge=0, description="a progress line at most this often while timing (0: none)")

    def stop_rule(self) -> StopRule:
        return StopRule(min_rounds=self.min_rounds, max_rounds=max(self.max_rounds,
                                                                  self.min_rounds),
                        target_rel_ci=self.target_rel_ci, max_s=self.max_timing_s,
                        confidence=self.confidence, outlier_k=self.outlier_k)


class Workload(BaseModel):
    """A GSO-shaped workload file: ``load()`` (import the library, untimed), ``setup(seed)``
    (plain inputs, untimed), ``experiment(api, data)`` and ``store_result(result)`` (timed,
    in a fresh process), ``check_equivalence(reference, current)`` (in the judge, on JSON)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = Field(None, description="relative to the task file's folder")
    source: str | None = Field(None, description="the file's text (a packed task)")
    params: dict[str, Any] = Field(
        default_factory=dict, description="module-level names of the file replaced by these "
        "(JSON) values before setup(seed): the same generator with other sizes or vocabularies")

    @model_validator(mode="after")
    def _one(self) -> Workload:
        if (self.file is None) == (self.source is None):
            raise ValueError(f"workload {self.name}: give exactly one of file and source")
        return self


class Thresholds(BaseModel):
    """GSO's: opt_base needs a geometric-mean speedup >= ``opt_base``; opt_commit also a
    harmonic mean of agent-vs-human ratios > ``opt_commit``."""

    model_config = ConfigDict(extra="forbid")
    opt_base: float = 1.2
    opt_commit: float = 0.95


# A commit as a task file names it: git's full hash (SHA-1, or SHA-256 repositories).
FULL_HASH = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class ArmImages(BaseModel):
    """A container image per arm (``perf_engine=podman|apptainer``): each holds the
    package's tree at ``image_tree``, built (compiled extensions and all); the agent's patch
    runs in the baseline's image, its changed files bound over that tree."""

    model_config = ConfigDict(extra="forbid")
    baseline: str = Field(min_length=1, description="the baseline's image")
    human: str = Field(min_length=1, description="the human version's image")
    main: str | None = Field(None, min_length=1, description="main's image (with main)")


class PerfPayload(BaseModel):
    """One performance task: a package, two versions (two releases, a release and a patch,
    or a commit of a git repository and its parent), workloads and the package's tests."""

    model_config = ConfigDict(extra="forbid")
    description: str = ""
    package: str = Field(description="the project's name (its PyPI name for releases)")
    module: str = Field(description="the import name of the package's top-level module")
    baseline: str | None = Field(None, description="the release before the improvement")
    human: str | None = Field(None, description="the release with the improvement")
    human_patch_file: str | None = Field(
        None, description="or the improvement as a patch file (relative to the task file)")
    human_patch: str | None = Field(None, description="the patch's text (a packed task)")
    repo: str | None = Field(
        None, description="a git repository (a URL, or a local clone: a path relative to the "
        "task file's folder): the task is its commit, the baseline the commit's parent")
    commit: str | None = Field(None, description="the commit with the improvement (its "
                               "full hash)")
    baseline_commit: str | None = Field(
        None, description="the commit before it (full hash; default: commit's first parent)")
    main: str | None = Field(None, description="a later release (GSO's main), or with repo a "
                             "later commit (full hash): timed beside the others for "
                             "opt_main, its source applied as a patch")
    sha256: dict[str, str] = Field(default_factory=dict,
                                   description="version -> sha256 of its source archive")
    image: ArmImages | None = Field(
        None, description="a container image per arm, for packages that need a build "
        "(perf_engine=podman|apptainer)")
    image_tree: str = Field("/testbed", description="where each image holds the package's "
                            "tree, built")
    image_python: str = Field("python3", description="the images' Python (a name on their "
                              "PATH or a path)")
    workloads: list[Workload] = Field(min_length=1, description="shown to the agent")
    hidden_workloads: list[Workload] = Field(
        default_factory=list, description="never shown to the agent: scored, and compared "
        "with the visible ones (overfits_workload)")
    tests: list[str] = Field(default_factory=list,
                             description="pytest arguments, relative to the source tree")
    prompt_files: list[str] = Field(default_factory=list, description="source files shown to "
                                    "the agent, relative to the source tree")
    test_requirements: list[str] = Field(default_factory=lambda: ["pytest"])
    negative_control: bool = Field(False, description="the human's claimed gain does not "
                                   "reproduce: expected to come out uncalibrated")
    thresholds: Thresholds = Field(default_factory=Thresholds)

    @model_validator(mode="after")
    def _human(self) -> PerfPayload:
        if self.repo is not None:
            self._commits()
        else:
            for key in ("commit", "baseline_commit"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} needs repo (the git repository it is a commit of)")
            if not self.baseline:
                raise ValueError("a perf task needs baseline (a release), or repo and commit")
            given = [x for x in (self.human, self.human_patch_file, self.human_patch) if x]
            if not given:
                raise ValueError("a perf task needs human (a release) or human_patch_file")
            if self.human and (self.human_patch_file or self.human_patch):
                raise ValueError("give human (a release) or a human patch, not both")
        if self.image is not None:
            if self.main is not None and self.image.main is None:
                raise ValueError("image: the task names main: give image.main too")
            if not self.image_tree.startswith("/"):
                raise ValueError(f"image_tree {self.image_tree!r}: an absolute path in the "
                                 "images")
        names = [w.name for w in (*self.workloads, *self.hidden_workloads)]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"workload names must be distinct: {', '.join(twice)}")
        return self

    def _commits(self) -> None:
        """A commit task: full hashes only (``kbtool perf build`` resolves short ones)."""
        for key in ("baseline", "human", "human_patch_file", "human_patch"):
            if getattr(self, key):
                raise ValueError(f"{key}: a task of a git repository (repo) takes commit and "
                                 "baseline_commit, not releases or patches")
        if self.sha256:
            raise ValueError("sha256: a commit's hash pins its tree; give no sha256")
        if self.commit is None:
            raise ValueError("repo needs commit (the full hash of the improving commit)")
        for key in ("commit", "baseline_commit", "main"):
            value = getattr(self, key)
            if value is not None and not FULL_HASH.fullmatch(value):
                raise ValueError(f"{key} {value!r} is not a full commit hash (40 hex digits; "
                                 "`kbtool perf build` resolves short ones)")

    @property
    def from_git(self) -> bool:
        return self.repo is not None

    def all_workloads(self) -> list[Workload]:
        return [*self.workloads, *self.hidden_workloads]


Outcome = Literal[
    "empty_patch",            # nothing to apply: the baseline itself (status ok)
    "does_not_apply",         # no rung of the ladder applied it (compile_error)
    "does_not_compile",       # applied; a changed module has a syntax error (compile_error)
    "refused",                # changes what it may not, or adds forbidden code (rejected)
    "wrong_results",          # a workload's results differ from the baseline's (incorrect)
    "tests_failed",           # the package's own tests fail (incorrect)
    "run_failed",             # a run of the patched code raised or died (runtime_error)
    "timed_out",              # a run or the tests ran out of time (timeout)
    "rejected",               # broke a rule at run time: moved work, files, processes
    "timed",                  # correct and timed (status ok)
]


class Interval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    estimate: float
    low: float
    high: float


class WorkloadResult(BaseModel):
    """One workload's figures: medians (ms) and ratios with their intervals."""

    model_config = ConfigDict(extra="forbid")
    name: str
    baseline_ms: float
    human_ms: float
    agent_ms: float
    speedup: float
    speedup_ci: list[float]
    human_speedup: float
    human_speedup_ci: list[float]
    agent_vs_human: float
    agent_vs_human_ci: list[float]
    significant: bool
    mann_whitney_p: float = Field(description="one-sided, unpaired (SWE-Perf's test)")
    hidden: bool = Field(False, description="a hidden workload (never shown to the agent)")


class MeanStats(BaseModel):
    """GSO's summary of per-workload speedups (``opt_stats``): the ratio of the arithmetic
    mean times, the geometric mean, its geometric standard deviation, the harmonic mean and
    the share of workloads slowed down."""

    model_config = ConfigDict(extra="forbid")
    am: float = Field(description="mean time of the reference / mean time of the candidate")
    gm: float = Field(description="geometric mean of the per-workload speedups")
    gsd: float | None = Field(description="geometric standard deviation (ddof=1; null for one "
                              "workload)")
    hm: float = Field(description="harmonic mean of the per-workload speedups")
    slowed: float = Field(description="share of workloads whose speedup is below 1")


class PerfDetails(BaseModel):
    """What a perf check adds to a result (top-level fields of ``kbtool eval --json``)."""

    model_config = ConfigDict(extra="forbid")
    # speedup, its interval (speedup_ci) and significant are core result fields.
    human_speedup: float | None = Field(None, description="baseline / human time")
    human_speedup_ci: list[float] | None = None
    agent_vs_human: float | None = Field(None, description="human / agent time")
    agent_vs_human_ci: list[float] | None = None
    human_significant: bool = False
    calibrated: bool = Field(False, description="the human release was significantly faster "
                             "than the baseline in this very measurement")
    opt_base: bool = Field(False, description="GSO: geomean speedup >= threshold, significant")
    opt_commit: bool = Field(False, description="GSO: opt_base and hmean vs human > threshold")
    opt_main: bool | None = Field(None, description="GSO: opt_base and hmean vs the task's "
                                  "main release > threshold (null: the task names no main, "
                                  "or main's results differ)")
    main_speedup: float | None = Field(None, description="baseline / main time (scored "
                                       "workloads)")
    outcome: Outcome | None = Field(None, description="what became of the patch, finer than "
                                    "status (GSO's report flags)")
    verdict: Literal["faster", "slower", "inconclusive"] | None = Field(
        None, description="the speedup's interval above 1, below 1, or across it")
    scored_on: Literal["hidden", "visible"] | None = Field(
        None, description="the workloads speedup, opt_base and opt_commit come from: the "
        "hidden ones when the task has any")
    clock: str | None = Field(None, description="cpu or wall: what the ratios time")
    wall_speedup: float | None = Field(None, description="the speedup on the judge's wall "
                                       "clock (with clock=cpu: a cross-check)")
    wall_speedup_ci: list[float] | None = None
    visible_speedup: float | None = Field(None, description="geomean speedup on the visible "
                                          "workloads")
    visible_speedup_ci: list[float] | None = None
    hidden_speedup: float | None = Field(None, description="... on the hidden workloads")
    hidden_speedup_ci: list[float] | None = None
    overfit: float | None = Field(None, description="agent-vs-human on the visible workloads "
                                  "over agent-vs-human on the hidden ones (1: no overfitting)")
    overfit_ci: list[float] | None = None
    gso: dict[str, MeanStats] = Field(
        default_factory=dict, description="patch_base, commit_base, patch_commit (and "
        "patch_main): GSO's mean speedups over the scored workloads")
    workloads: list[WorkloadResult] = Field(default_factory=list)
    rounds: int = 0
    stop_reason: str | None = None
    patch_method: str | None = Field(None, description="the rung of the ladder that applied")
    patch_files: list[str] = Field(default_factory=list)
    tests: str | None = Field(None, description="the package's tests: a summary line")
    tests_passed: int | None = None
    tests_failed: int | None = Field(None, description="failed and errors")
    test_pass_rate: float | None = Field(None, description="passed / (passed + failed)")
    moved_out_ms: float | None = Field(
        None, description="agent's extra ms in the untimed phases (import, setup), vs the "
        "baseline's")
    engine: str | None = Field(None, description="where the runs and the package's tests "
                               "ran: local, podman or apptainer (perf_engine)")
    package: str | None = None
    baseline_version: str | None = None
    human_version: str | None = None
