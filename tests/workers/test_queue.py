"""The shared-directory queue and `kbtool worker`: atomic claims, leases, faults."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kbtool.task.model import Task
from kbtool.workers.jobqueue import Job, JobResult, Queue, new_job_id
from tests.helpers import REPO, SOLUTIONS, run_kbtool

RELU = (REPO / "tasks" / "kernelbench" / "level1" / "2_ReLU.py").read_text()
SLOW_OK = ("import time\nimport torch\nimport torch.nn as nn\ntime.sleep({delay})\n\n"
           "class ModelNew(nn.Module):\n    def forward(self, x):\n"
           "        return torch.clamp_min(x, 0.0)\n")


def job(solution: str = "", **config: object) -> Job:
    task = Task(id="builtin/1/2_ReLU", source="builtin", name="2_ReLU",
                payload={"problem": RELU})
    return Job(id=new_job_id(), task=task, candidate=solution, config=config)


@pytest.fixture()
def queue(tmp_path: Path) -> Queue:
    return Queue(tmp_path / "in", tmp_path / "out", lease_s=0.5, max_attempts=3)


def test_submit_claim_finish(queue: Queue) -> None:
    submitted = [queue.submit(job()) for _ in range(3)]
    claimed = [queue.claim("w1") for _ in range(4)]
    assert sorted(j.id for j in claimed if j) == sorted(submitted)
    assert claimed[-1] is None
    first = JobResult(id=submitted[0], worker="w1", ok=True, result={"status": "ok"})
    assert queue.finish(submitted[0], first)
    again = JobResult(id=submitted[0], worker="w2", ok=True, result={"status": "other"})
    assert not queue.finish(submitted[0], again)  # idempotent: the first result stays
    assert queue.result(submitted[0]).worker == "w1"
    assert queue.depth() == {"pending": 0, "claimed": 2, "bad": 0}


def test_concurrent_claims_take_each_job_once(queue: Queue) -> None:
    ids = {queue.submit(job()) for _ in range(200)}
    taken: list[str] = []
    lock = threading.Lock()

    def drain(name: str) -> None:
        while (claimed := queue.claim(name)) is not None:
            with lock:
                taken.append(claimed.id)

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == sorted(ids)


def test_malformed_and_half_written_files(queue: Queue) -> None:
    pending = queue.input_dir / "pending"
    (pending / "garbage.json").write_text("{not json")
    (pending / "wrong-schema.json").write_text(json.dumps({"schema_version": 99, "id": "x"}))
    (pending / ".half-written.tmp").write_text('{"id": "half')
    good = queue.submit(job())
    assert queue.claim("w").id == good
    assert queue.claim("w") is None
    bad = {p.name for p in (queue.input_dir / "bad").iterdir()}
    assert bad == {"garbage.json", "garbage.json.reason", "wrong-schema.json",
                   "wrong-schema.json.reason"}
    assert "ValidationError" in (queue.input_dir / "bad" / "garbage.json.reason").read_text()
    assert (pending / ".half-written.tmp").exists()  # never taken for a job


def test_expired_leases_requeue_then_fail(queue: Queue) -> None:
    job_id = queue.submit(job())
    for attempt in (1, 2):
        assert queue.claim(f"dead{attempt}").id == job_id
        time.sleep(0.6)
        assert queue.recover_expired("janitor") == 1
        assert queue.attempts(job_id) == attempt
    assert queue.claim("dead3").id == job_id
    time.sleep(0.6)
    queue.recover_expired("janitor")
    result = queue.result(job_id)
    assert result is not None and not result.ok and "3 times" in result.error
    assert queue.claim("w") is None


def test_a_renewed_lease_does_not_expire(queue: Queue) -> None:
    job_id = queue.submit(job())
    queue.claim("alive")
    for _ in range(4):
        time.sleep(0.2)
        queue.renew(job_id, "alive")
        assert queue.recover_expired("janitor") == 0


def _worker(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kbtool", "worker", "serve", f"worker_input_dir={tmp_path / 'in'}",
         f"worker_output_dir={tmp_path / 'out'}", "--config-profile", "quick", "lease_s=1.5",
         "worker_poll_s=0.1", "correctness_trials=1", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        env={**os.environ})


def test_eval_through_the_queue_prints_the_local_json(tmp_path: Path) -> None:
    worker = _worker(tmp_path, "--idle-exit", "60")
    try:
        args = ["eval", "builtin/1/2", "--solution", str(SOLUTIONS / "level1_2_ReLU_torch.py"),
                "--json", "--config-profile", "quick"]
        remote = run_kbtool(*args, f"worker_input_dir={tmp_path / 'in'}",
                            f"worker_output_dir={tmp_path / 'out'}")
        local = run_kbtool(*args)
        assert remote.returncode == 0, remote.stderr
        remote_json, local_json = json.loads(remote.stdout), json.loads(local.stdout)
        assert set(remote_json) == set(local_json)
        assert remote_json["status"] == "ok" and remote_json["task"] == "builtin/1/2_ReLU"
        assert remote_json["solution"] == local_json["solution"]
        status = run_kbtool("worker", "status", str(tmp_path / "in"), "--output-dir",
                            str(tmp_path / "out"), "--json")
        info = json.loads(status.stdout)
        assert info["workers_alive"] == 1 and info["jobs_done"] >= 1
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def test_sigterm_drains_the_current_job(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "in", tmp_path / "out", lease_s=1.5)
    first = queue.submit(job(SLOW_OK.format(delay=2)))
    second = queue.submit(job(SLOW_OK.format(delay=0)))
    worker = _worker(tmp_path)
    deadline = time.monotonic() + 60
    while queue.depth()["claimed"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0
    finished = [j for j in (first, second) if queue.result(j) is not None]
    assert len(finished) == 1  # the running job finished; no new one was taken
    assert queue.depth()["pending"] == 1


def test_killed_workers_lose_no_job(tmp_path: Path) -> None:
    """SIGKILL one worker at random points, again and again, while another serves the same
    queue: every job ends with exactly one result."""
    queue = Queue(tmp_path / "in", tmp_path / "out", lease_s=1.5)
    rng = random.Random(7)
    ids = [queue.submit(job(SLOW_OK.format(delay=rng.choice([0.2, 0.5, 1.0]))))
           for _ in range(8)]
    steady = _worker(tmp_path)
    victim = _worker(tmp_path)
    try:
        deadline = time.monotonic() + 300
        kills = 0
        while sum(queue.result(j) is not None for j in ids) < len(ids):
            assert time.monotonic() < deadline, queue.depth()
            if kills < 4:
                time.sleep(rng.uniform(0.5, 3.0))
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                kills += 1
                victim = _worker(tmp_path)
            else:
                time.sleep(0.2)
    finally:
        for proc in (steady, victim):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    results = sorted(p.name for p in queue.output_dir.iterdir())
    assert results == sorted(f"{j}.json" for j in ids)  # one file each, nothing else
    for job_id in ids:
        reply = queue.result(job_id)
        assert reply.ok and reply.result["status"] == "ok", reply


def test_search_evaluates_through_the_queue(tmp_path: Path) -> None:
    worker = _worker(tmp_path, "--idle-exit", "120")
    try:
        run_dir = tmp_path / "run"
        proc = run_kbtool("run", "builtin/1/2", f"run_dir={run_dir}", "num_samples=2",
                          "num_phases=1", "max_fix_attempts=1", "--config-profile", "quick",
                          "baselines=[eager]", f"worker_input_dir={tmp_path / 'in'}",
                          f"worker_output_dir={tmp_path / 'out'}")
        assert proc.returncode == 0, proc.stderr
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["tasks"]["builtin/1/2_ReLU"]["correct"]
        # baseline and every candidate went through the worker
        assert len(list((tmp_path / "out").glob("*.json"))) == \
            1 + summary["totals"]["evaluations"]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def test_workers_with_dotted_names_are_recovered(queue: Queue) -> None:
    job_id = queue.submit(job())
    assert queue.claim("node1.cluster.local-123").id == job_id
    time.sleep(0.6)
    assert queue.recover_expired("janitor") == 1
    assert queue.claim("w").id == job_id


def test_job_slots_compile_side_by_side_and_take_turns_on_the_device(tmp_path: Path) -> None:
    """Two slots: the 2 s 'compilations' (module-level sleeps) overlap, while correctness
    and timing wait for the device lock."""
    queue = Queue(tmp_path / "in", tmp_path / "out", lease_s=1.5)
    ids = [queue.submit(job(SLOW_OK.format(delay=2.0))) for _ in range(2)]
    worker = _worker(tmp_path, "eval_workers=2", "--max-jobs", "2")
    try:
        assert worker.wait(180) == 0, worker.stderr.read()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    results = [queue.result(j).result for j in ids]
    assert all(r["status"] == "ok" for r in results), results
    loads = [r["stage_s"]["load"] for r in results]
    assert all(load >= 2.0 for load in loads)
    finished = sorted(queue.result(j).finished for j in ids)
    started = min(queue.result(j).finished - sum(r["stage_s"].values())
                  for j, r in zip(ids, results, strict=True))
    serial = sum(sum(r["stage_s"].values()) - r["stage_s"]["device_wait"] for r in results)
    assert finished[-1] - started < serial - 1.0  # one after the other would take `serial`
    assert all("device_wait" in r["stage_s"] for r in results)


def test_device_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    from kbtool.config import load_config
    from kbtool.sandbox import devicelock

    config = load_config({"cache_dir": str(tmp_path), "device": "cpu"})
    devicelock.prepare(config)
    script = ("import sys, time\nfrom kbtool.sandbox import devicelock\nfrom kbtool.config import "
              f"load_config\nc = load_config({{'cache_dir': {str(tmp_path)!r}, 'device': 'cpu'}})\n"
              "devicelock.acquire(c)\nprint('held', flush=True)\ntime.sleep(float(sys.argv[1]))\n")
    holder = subprocess.Popen([sys.executable, "-c", script, "30"], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    waiter = subprocess.Popen([sys.executable, "-c", script, "0"], stdout=subprocess.PIPE,
                              text=True)
    time.sleep(1.5)
    assert waiter.poll() is None  # blocked behind the holder
    holder.kill()  # however the holder ends, the kernel releases the lock
    holder.wait()
    assert waiter.stdout.readline().strip() == "held"
    assert waiter.wait(30) == 0


def _serving(queue: Queue, worker: subprocess.Popen[bytes]) -> None:
    """Until the worker's first heartbeat: it is up and serving."""
    deadline = time.monotonic() + 60
    while not list(queue.workers()):
        assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _stopped_with_one_line(worker: subprocess.Popen[bytes]) -> str:
    try:
        code = worker.wait(60)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    stderr = worker.stderr.read().decode() if worker.stderr else ""
    assert code == 1, stderr
    lines = stderr.strip().splitlines()  # the worker's "serving" line, then the error
    assert "Traceback" not in stderr and sum("error" in line for line in lines) == 1, stderr
    return lines[-1]


def test_a_worker_whose_queue_folder_vanishes_stops_with_one_line(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "in", tmp_path / "out", lease_s=1.5)
    worker = _worker(tmp_path)
    _serving(queue, worker)
    shutil.rmtree(tmp_path / "in")  # an unmounted share, a cleaned scratch
    line = _stopped_with_one_line(worker)
    assert line.startswith("kbtool: error: worker ")
    assert f"the queue folder {tmp_path / 'in' / 'pending'} is gone" in line
    assert "stopped after 0 jobs" in line


def test_a_job_running_when_the_queue_vanishes_still_stores_its_result(tmp_path: Path) -> None:
    queue = Queue(tmp_path / "in", tmp_path / "out", lease_s=1.5)
    job_id = queue.submit(job(SLOW_OK.format(delay=2)))
    worker = _worker(tmp_path)
    deadline = time.monotonic() + 60
    while queue.depth()["claimed"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shutil.rmtree(tmp_path / "in")  # lease renewals and heartbeats now fail
    line = _stopped_with_one_line(worker)
    assert "is gone" in line and "stopped after 1 job " in line
    reply = JobResult.model_validate_json((tmp_path / "out" / f"{job_id}.json").read_text())
    assert reply.ok and reply.result["status"] == "ok"
