"""The ``slurm`` scheduler and the built-in site profiles (``hpc/*.yaml``).

Submission is ``sbatch --parsable SCRIPT``; status is one batched query per tick:
``sacct -j ID,ID --parsable2 --noheader -o JobID,State,ExitCode``, and where accounting is
disabled (no slurmdbd) or sacct fails, ``squeue`` for queued/running jobs and one
``scontrol -o show job`` for the recently finished ones.  Transient failures (slurmctld
busy or restarting) are retried with back-off.  Submitted jobs are recorded by
``kbtool.cluster.jobs`` so ``kbtool jobs`` knows them.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.errors import RunError, UsageError
from kbtool.plugin.hookspecs import Register, hookimpl

if TYPE_CHECKING:
    import tenacity

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}
NOT_TRANSIENT = ("accounting storage is disabled", "invalid job id", "not found")


def hpc_dir() -> Path | None:
    """The built-in profiles: ``hpc/`` beside the package in a checkout, or ``kbtool_hpc``
    when installed from a wheel."""
    here = Path(__file__).resolve().parent.parent / "hpc"
    if here.is_dir():
        return here
    import importlib.util

    spec = importlib.util.find_spec("kbtool_hpc")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return None


@hookimpl
def register_site_profiles(register: Register) -> None:
    directory = hpc_dir()
    if directory is not None:
        for path in sorted(directory.glob("*.yaml")):
            register(path.stem, path)


@hookimpl
def register_schedulers(register: Register) -> None:
    register("slurm", Slurm)


# --- job records ----------------------------------------------------------------------

def log_path(pattern: str, name: str, job_id: str, task: str | None) -> str:
    out = pattern.replace("%x", name).replace("%A", job_id).replace("%j", job_id)
    return out.replace("%a", task if task is not None else "*")


# --- running Slurm commands -----------------------------------------------------------

Runner = Callable[[list[str]], subprocess.CompletedProcess]


def _run(argv: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(argv, 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(argv, 124, "", f"{argv[0]}: timed out")


class Slurm:
    name = "slurm"

    def __init__(self, runner: Runner | None = None, retries: int = 3, backoff_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.runner = runner or _run
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep

    def call(self, argv: list[str]) -> subprocess.CompletedProcess:
        """Run a Slurm command, retrying transient failures with exponential back-off."""
        import tenacity

        def transient(proc: subprocess.CompletedProcess) -> bool:
            if proc.returncode in (0, 127):  # done, or no such command: retrying cannot help
                return False
            return not any(s in (proc.stderr or "").lower() for s in NOT_TRANSIENT)

        def last_answer(state: tenacity.RetryCallState) -> subprocess.CompletedProcess:
            assert state.outcome is not None
            return state.outcome.result()  # retries spent: the caller reads the failure

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff_s),
            retry=tenacity.retry_if_result(transient), sleep=self.sleep,
            retry_error_callback=last_answer)
        return retrying(self.runner, argv)

    def job_table(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
        return job_table(self, records)

    @staticmethod
    def log_path(pattern: str, name: str, job_id: str, task: str | None) -> str:
        return log_path(pattern, name, job_id, task)

    def submit(self, script: Path) -> str:
        proc = self.call(["sbatch", "--parsable", str(script)])
        if proc.returncode != 0:
            raise RunError(f"sbatch failed: {(proc.stderr or proc.stdout).strip()}")
        job_id = proc.stdout.strip().split(";")[0]
        if not re.fullmatch(r"\d+", job_id):
            raise RunError(f"sbatch printed no job id: {proc.stdout.strip()!r}")
        return job_id

    def cancel(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        proc = self.call(["scancel", *job_ids])
        if proc.returncode != 0:
            raise RunError(f"scancel failed: {(proc.stderr or proc.stdout).strip()}")

    # status: {job id: {task id or "": {"state": S, "exit": "0:0", "stdout": path?}}}
    def states(self, job_ids: list[str]) -> tuple[dict[str, dict[str, dict[str, str]]], str]:
        """States of every job and array task in one batched query; the source used."""
        out: dict[str, dict[str, dict[str, str]]] = {j: {} for j in job_ids}
        if not job_ids:
            return out, "none"
        proc = self.call(["sacct", "-j", ",".join(job_ids), "--parsable2", "--noheader",
                          "-o", "JobID,State,ExitCode"])
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) < 3 or "." in parts[0]:
                    continue  # job steps (123.batch) are not jobs
                job, task = _split_id(parts[0])
                if job in out:
                    out[job][task] = {"state": parts[1].split()[0], "exit": parts[2]}
            if all(out.values()):
                return out, "sacct"
        source = "squeue"
        proc = self.call(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T"])
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) < 2:
                    continue
                for job, task in _expand(parts[0]):
                    if job in out:
                        out[job][task] = {"state": parts[1], "exit": ""}
        elif proc.returncode == 127:
            raise UsageError("squeue not found: is this a Slurm login node?")
        missing = [j for j in job_ids if not out[j] or _has_pending_range(out[j])]
        if missing:
            source = "squeue+scontrol"
            proc = self.call(["scontrol", "-o", "show", "job"])
            if proc.returncode == 0:
                for line in proc.stdout.splitlines():
                    info = dict(re.findall(r"(\w+)=(\S*)", line))
                    job = info.get("ArrayJobId") or info.get("JobId", "")
                    if job not in missing:
                        continue
                    task = info.get("ArrayTaskId", "") if info.get("ArrayJobId") else ""
                    if "-" in task or "," in task or "%" in task:  # pending task range
                        task = ""
                    if task:
                        out[job].pop("", None)
                    out[job][task] = {"state": info.get("JobState", "UNKNOWN"),
                                      "exit": info.get("ExitCode", ""),
                                      "stdout": info.get("StdOut", "")}
        for job in job_ids:
            if not out[job]:
                out[job][""] = {"state": "UNKNOWN", "exit": ""}  # gone, no accounting
        return out, source


def _split_id(text: str) -> tuple[str, str]:
    job, _, task = text.partition("_")
    return job, task.strip("[]")


def _expand(text: str) -> list[tuple[str, str]]:
    job, task = _split_id(text)
    return [(job, task)]


def _has_pending_range(tasks: dict[str, dict[str, str]]) -> bool:
    return any(re.search(r"[-,%]", t) for t in tasks)


def summarize(tasks: dict[str, dict[str, str]]) -> str:
    """One state for a job: the worst of its tasks' (FAILED > ... > RUNNING > COMPLETED)."""
    states = [t["state"] for t in tasks.values()]
    for state in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "TIMEOUT", "BOOT_FAIL", "CANCELLED",
                  "RUNNING", "PENDING", "COMPLETING", "CONFIGURING", "UNKNOWN"):
        if state in states:
            return state
    return states[0] if states else "UNKNOWN"


def job_table(slurm: Slurm, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """One row per recorded job: its state, its tasks' states and log paths."""
    states, source = slurm.states([r["id"] for r in records])
    rows = []
    for r in records:
        tasks = states.get(r["id"], {})
        state = summarize(tasks)
        task_rows = []
        for task, info in sorted(tasks.items()):
            path = info.get("stdout") or log_path(r.get("log", ""), r.get("name", ""), r["id"],
                                                   task or None)
            task_rows.append({"task": task, "state": info["state"], "exit": info.get("exit", ""),
                              "log": path})
        rows.append({"id": r["id"], "name": r.get("name"), "kind": r.get("kind"),
                     "profile": r.get("profile"), "state": state,
                     "done": bool(tasks) and all(t["state"].split()[0] in TERMINAL
                                                 for t in tasks.values()),
                     "tasks": task_rows, "script": r.get("script"),
                     "log": log_path(r.get("log", ""), r.get("name", ""), r["id"], None)})
    return rows, source
