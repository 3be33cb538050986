"""``kbtool report`` on a predictions run of perf tasks whose verdicts are set by the test
(the live checks of test_patches.py cannot choose whether a task comes out calibrated):
Opt@K per model over the model's first K predictions, calibration from every model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbtool.predictions.judge import prediction_key
from kbtool.predictions.model import PredictionRecord, PredictionsManifest
from kbtool.runs.layout import RunLayout
from tests.helpers import run_kbtool
from tests.perf.test_report import result
from tests.predictions import expected_pass_at_k

OPT = {"opt_base": True, "opt_commit": True}
# Per task, the predictions in the order they were read: (model, verdict).
PREDICTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "perf/a": [("modelA", result("perf/a", speedup=2.0, **OPT)),
               ("modelB", result("perf/a", "incorrect")),
               ("modelA", result("perf/a", speedup=1.05)),
               ("modelC", result("perf/a", "compile_error")),   # timed none of its own
               ("modelB", result("perf/a", speedup=2.5, **OPT))],
    "perf/b": [("modelA", result("perf/b", speedup=1.0)),
               ("modelC", result("perf/b", speedup=1.9, **OPT))],  # modelB sent nothing
    "perf/d": [("modelA", result("perf/d", speedup=1.4, human=1.0, calibrated=False,
                                 opt_base=True))],
}


def write_run(root: Path) -> list[dict[str, Any]]:
    """The run directory ``kbtool eval --predictions`` would have written; the rows its
    ``--json`` would have printed."""
    layout = RunLayout(root)
    rows = []
    for task, predictions in PREDICTIONS.items():
        samples: dict[str, int] = {}
        for agent, (model, verdict) in enumerate(predictions):
            sample = samples[model] = samples.get(model, -1) + 1
            step = layout.step_dir(task, 0, agent, 0)
            step.mkdir(parents=True)
            patch = f"{model} {sample}\n"
            (step / "candidate.diff").write_text(patch)
            (step / "eval.json").write_text(json.dumps(verdict))
            record = PredictionRecord(instance_id=task, task=task, model=model, sample=sample,
                                      key=prediction_key(task, model, patch), source="test")
            layout.prediction(step).write_text(record.model_dump_json())
            rows.append({"task": task, "model": model, "sample": sample,
                         "status": verdict["status"]})
    layout.tasks.write_text(json.dumps([{"id": t, "kind": "perf", "labels": {}}
                                        for t in PREDICTIONS]))
    layout.predictions.write_text(PredictionsManifest(
        models=["modelA", "modelB", "modelC"], eval_settings="{}").model_dump_json())
    return rows


def test_opt_at_k_and_pass_at_k_per_model(tmp_path: Path) -> None:
    rows = write_run(tmp_path)
    proc = run_kbtool("report", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert list(runs) == [f"{tmp_path} [{m}]" for m in ("modelA", "modelB", "modelC")]
    opt = {label.split(" [")[-1][:-1]: rep["kinds"]["perf"] for label, rep in runs.items()}
    # Two calibrated tasks; perf/d is not, whoever's view it is.
    for model, expected in {"modelA": {"1": 0.5, "2": 0.5},      # perf/a at its 1st
                            "modelB": {"1": 0.0, "2": 0.5},      # perf/a at its 2nd
                            "modelC": {"1": 0.5}}.items():       # perf/b; perf/a counts 0
        assert opt[model]["scored_tasks"] == 2 and opt[model]["uncalibrated"] == ["perf/d"]
        for k, share in expected.items():
            assert opt[model]["opt_at_k"]["opt_base"][k] == pytest.approx(share), (model, k)
    for label, report in runs.items():
        model = label.split(" [")[-1][:-1]
        mine = [r for r in rows if r["model"] == model]
        assert report["statuses"]["total_candidates"] == len(mine)
        for k in report["predictions"]["k"]:
            assert report["predictions"]["pass_at_k"][str(k)] == pytest.approx(
                expected_pass_at_k(mine, list(PREDICTIONS), k))
    table = run_kbtool("report", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert f"run {tmp_path} [modelB]" in table.stdout and "perf: Opt@K over 2 calibrated" \
        in table.stdout
