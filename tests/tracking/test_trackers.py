"""One run logged to Weights & Biases (offline) and MLflow (its file store) at once, read
back with each library's own reader (``wandb leet inspect``, ``MlflowClient``); its
exported data set; the ``.env`` file's keys, which reach the libraries but never a file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kbtool.config import load_config
from kbtool.runs.provenance import task_hash
from kbtool.runs.store import read_events
from kbtool.task import catalog
from tests.helpers import run_kbtool

wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed "
                            "(pip install 'kbtool[wandb]')")
mlflow = pytest.importorskip("mlflow", reason="the mlflow extra is not installed "
                             "(pip install 'kbtool[mlflow]')")

GOOD = "```python\nimport torch\nimport torch.nn as nn\n\nclass ModelNew(nn.Module):\n" \
       "    def forward(self, x):\n        return torch.clamp_min(x, 0.0)\n```\n"
WRONG = GOOD.replace("clamp_min(x, 0.0)", "clamp_min(x, 0.5)")
SECRETS = {"WANDB_API_KEY": "sekrit-wandb-0123456789abcdef0123456789abcdef01234567",
           "OPENAI_API_KEY": "sekrit-openai-9f8e7d6c5b4a"}
TRACKER_ENV = ("WANDB_", "MLFLOW_", "OPENAI_API_KEY", "KBTOOL_ENV_FILE")


def kbtool(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in ``cwd`` with no W&B, MLflow or provider settings of the caller's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(TRACKER_ENV)}
    return subprocess.run([sys.executable, "-m", "kbtool", *args], capture_output=True,
                          text=True, cwd=cwd, env={**base, **env}, timeout=600)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A run with tracker=wandb,mlflow.  WANDB_MODE=offline comes from the .env file only:
    were it not read, W&B would ask its server for the (fake) key and the run would fail."""
    home = tmp_path_factory.mktemp("tracked")
    (home / ".env").write_text("WANDB_MODE=offline\n" +
                               "".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    script = home / "transcript.yaml"
    script.write_text(yaml.safe_dump({"label": "t", "default": {"ideas": "1. a\n2. b\n"},
                                      "tasks": {"builtin/1/2_ReLU": {
                                          "generate": [WRONG, GOOD], "fix": [GOOD],
                                          "improve": [GOOD]}}}))
    env = {"WANDB_CONFIG_DIR": str(home / "wandb-config"),
           "WANDB_DATA_DIR": str(home / "wandb-data"), "WANDB_CACHE_DIR": str(home / "wandb-cache"),
           "MLFLOW_TRACKING_URI": (home / "mlruns").as_uri()}
    proc = kbtool(home, "run", "builtin/1/2", "run_dir=run", f"replay_path={script}",
                  "tracker=wandb,mlflow", "tracker_project=kbtool-test", "--config-profile",
                  "quick", "baselines=[eager]", "num_samples=2", "num_phases=2",
                  "max_fix_attempts=1", **env)
    assert proc.returncode == 0, proc.stderr
    run = home / "run"
    assert (run / "tasks" / "builtin_1_2_ReLU").is_dir()  # a relative run_dir= holds them
    return {"home": home, "run": run, "env": env,
            "evals": [e for e in read_events(run) if e["type"] == "eval"],
            "summary": json.loads((run / "summary.json").read_text())}


def wandb_records(run_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json",
                           str(run_dir / "wandb")], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_wandb_offline_run_holds_settings_evaluations_summary_and_figures(
        tracked: dict[str, Any]) -> None:
    records = wandb_records(tracked["run"], tracked["env"])
    by_type: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_type.setdefault(record["type"], []).append(record[record["type"]])
    (run,) = by_type["run"]
    assert run["project"] == "kbtool-test" and run["display_name"] == "run"
    config = run["config"]["update"]
    assert config["num_samples"] == 2 and config["tracker"] == ["wandb", "mlflow"]
    assert config["kernelbench"]["correctness_trials"] == 2
    history = [h["item"] for h in by_type["history"]]
    evals = tracked["evals"]
    assert [h["_step"] for h in history] == list(range(1, len(evals) + 1))
    assert [(h["task"], h["status"], h["sample"]) for h in history] == \
        [(e["task"], e["status"], e["sample"]) for e in evals]
    for item, event in zip(history, evals, strict=True):
        assert item["candidate_hash"] == sha256(tracked["run"] / event["path"])
        assert item["correct"] == (event["status"] == "ok")
    summary: dict[str, Any] = {}
    for update in by_type["summary"]:
        summary.update(update.get("update", {}))
    task = tracked["summary"]["tasks"]["builtin/1/2_ReLU"]
    assert summary["tasks_correct"] == 1 and summary["n_tasks"] == 1
    assert summary["task/builtin/1/2_ReLU/speedup/eager"] == pytest.approx(task["speedup"]["eager"])
    assert "fast_p/eager/1.0" in summary
    (artifact,) = by_type["artifact"]
    assert artifact["type"] == "kbtool-report"
    paths = {c["path"] for c in artifact["manifest"]["contents"]}
    assert {"figures/fast_p.png", "figures/geomean_speedup_per_phase.pdf", "report.json",
            "evaluations.jsonl"} <= paths
    assert by_type["exit"][0]["exit_code"] == 0


def test_mlflow_file_store_holds_the_same_run(tracked: dict[str, Any]) -> None:
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks it of readers too
    client = MlflowClient(tracking_uri=tracked["env"]["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("kbtool-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.params["num_samples"] == "2"
    assert run.data.params["kernelbench.correctness_trials"] == "2"
    assert run.data.tags["kbtool.run_dir"] == str(tracked["run"].resolve())
    evals = tracked["evals"]
    correct = client.get_metric_history(run.info.run_id, "correct")
    assert sorted((m.step, m.value) for m in correct) == \
        [(i, float(e["status"] == "ok")) for i, e in enumerate(evals, 1)]
    task = tracked["summary"]["tasks"]["builtin/1/2_ReLU"]
    assert run.data.metrics["task/builtin/1/2_ReLU/speedup/eager"] == \
        pytest.approx(task["speedup"]["eager"])
    assert run.data.metrics["tasks_correct"] == 1.0
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/fast_p.png", "figures/best_runtime_per_phase.pdf"} <= figures
    local = Path(client.download_artifacts(run.info.run_id, "evaluations.jsonl",
                                           str(tracked["home"] / "downloaded")))
    rows = [json.loads(line) for line in local.read_text().splitlines()]
    assert [r["sample"] for r in rows] == [e["sample"] for e in evals]
    report = json.loads(Path(client.download_artifacts(
        run.info.run_id, "report.json", str(tracked["home"] / "downloaded"))).read_text())
    assert report["statuses"]["tasks_correct"] == 1


def test_env_file_values_are_never_written(tracked: dict[str, Any]) -> None:
    home: Path = tracked["home"]
    leaks = [str(path.relative_to(home)) for path in home.rglob("*") if path.is_file()
             and path.name != ".env" and any(v.encode() in path.read_bytes()
                                               for v in SECRETS.values())]
    assert leaks == []
    assert len(list(home.rglob("*"))) > 50  # the search looked through real output


def test_the_run_exported_with_task_and_candidate_hashes(tracked: dict[str, Any]) -> None:
    datasets = pytest.importorskip("datasets", reason="the hf extra is not installed")
    out = tracked["home"] / "export"
    proc = run_kbtool("report", str(tracked["run"]), "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = datasets.load_dataset("parquet", data_files=str(out / "results.parquet"))["train"]
    expected = task_hash(catalog.resolve("builtin/1/2", load_config({})))
    listed = json.loads((tracked["run"] / "tasks.json").read_text())
    assert listed[0]["hash"] == expected
    assert set(rows["task_hash"]) == {expected} and len(rows) == len(tracked["evals"])
    for row in rows:
        assert row["candidate_hash"] == sha256(tracked["run"] / row["candidate"])
        assert row["device"] == "cpu" and row["driver_version"] is None
        assert row["torch_version"] and row["kbtool_version"] and row["machine"]


def test_unknown_tracker_stops_before_the_run_dir(tmp_path: Path) -> None:
    proc = kbtool(tmp_path, "run", "builtin/1/2", "run_dir=run", "tracker=wandbb")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "kbtool: error: unknown tracker 'wandbb' (did you mean 'wandb'?)"
    assert not (tmp_path / "run").exists()


def test_eval_says_it_logs_to_no_tracker(tmp_path: Path) -> None:
    """`tracker=` is for runs; `kbtool eval` (predictions too) says it ignores it."""
    preds = tmp_path / "preds.jsonl"
    preds.write_text("")
    proc = run_kbtool("eval", "--predictions", str(preds), "tracker=mlflow",
                      f"run_dir={tmp_path / 'run'}")
    assert "tracker= logs `kbtool run`s only" in proc.stderr, proc.stderr
