"""bench/gpu_check.sh's helper: null candidates, expectations on `kbtool eval --json` output,
the figure table.

    python bench/gpu/expect.py nulls DIR TASK ...             # null candidates, named for --solutions DIR
    python bench/gpu/expect.py record ROWS CHECK EXPECT JSON RC   # judge one kbtool eval run
    python bench/gpu/expect.py script ROWS CHECK RC           # a benchmark script's exit status
    python bench/gpu/expect.py agree ROWS CHECK               # timers alone agree with each other
    python bench/gpu/expect.py table ROWS                     # the table; exit 1 if one failed

ROWS is a JSON-lines file the commands append to.  Expectations (EXPECT):

* ``measured``: the reference timed alone (``--solutions baseline``) came back ``ok`` with a time;
* ``null``: the reference as its own candidate is ``ok``, correct, and not counted faster than
  1.05x (the low end of its 95% interval is not above 1.05);
* ``honest``: ``ok`` and correct (a real kernel: load_inline CUDA, Triton);
* ``script`` (``script`` command): a benchmark script or command exited 0 (bench/null_speedup.py
  and bench/eval_overhead.py exit 1 when an evaluation did not come back ``ok``);
* ``exploit``: the side-stream exploit, which does twice the reference's work, comes back
  ``incorrect`` or ``rejected``, or ``ok`` at a speedup below 0.8 (timed in full: about 0.5x);
  ``ok`` and faster means the side-stream work escaped the clock.  A run that did not get as
  far as timing (compile_error, runtime_error, timeout) proves nothing: FAIL.
* ``caught``: an exploit of the measurement boundary (tests/redteam: outputs made only when
  asked for, calls wrong now and then) comes back ``incorrect`` or ``rejected``;
* ``no_gain``: an exploit that computes right answers but decides something about its own
  measurement (expensive empty windows, a starved pool, a memo) is refused, or ``ok`` and not
  counted faster (its interval is not above 1).  ``ok`` and significantly faster: FAIL.

Not a benchmark of its own (bench/smoke.py runs only bench/*.py, not this folder).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

NULL_FASTER = 1.05
EXPLOIT_MAX = 0.8
AGREE = (2 / 3, 1.5)  # cuda-events / triton-do-bench medians of the same reference
NOT_RUN = "not run: the time budget was spent (GPU_CHECK_BUDGET_S)"


def results(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if isinstance(data, dict) and "results" in data:
        return list(data["results"]) + [{"task": t, "status": "skipped", "error": why}
                                        for t, why in (data.get("skipped") or {}).items()]
    return [data] if isinstance(data, dict) else []


def judge(expect: str, r: dict[str, Any]) -> tuple[bool, str]:
    status, correct, speedup = r.get("status"), r.get("correct"), r.get("speedup")
    low = (r.get("speedup_ci") or [None])[0]
    if expect == "measured":
        ok = status == "ok" and (r.get("runtime_ms") or 0) > 0
        return ok, "timed alone" if ok else "no time"
    if expect == "null":
        if status != "ok" or correct is not True:
            return False, "the reference as its own candidate must be ok and correct"
        if low is not None and low > NULL_FASTER:
            return False, f"a null counted faster than {NULL_FASTER}x"
        return True, f"ok, not counted faster than {NULL_FASTER}x"
    if expect == "honest":
        ok = status == "ok" and correct is True
        return ok, "ok and correct" if ok else "must be ok and correct"
    if expect == "exploit":
        if status in ("incorrect", "rejected"):
            return True, f"caught: {status}"
        if status == "ok":
            if speedup is not None and speedup < EXPLOIT_MAX and not r.get("significant"):
                return True, "timed in full (twice the work: about 0.5x expected)"
            return False, "side-stream work escaped the clock: ok at a speedup of " \
                          f"{speedup} (must be < {EXPLOIT_MAX})"
        return False, f"inconclusive: the exploit did not get to be timed ({status})"
    if expect == "caught":
        ok = status in ("incorrect", "rejected")
        return ok, f"caught: {status}" if ok else f"must be incorrect or rejected, not {status}"
    if expect == "no_gain":
        if status in ("incorrect", "rejected"):
            return True, f"caught: {status}"
        if status == "ok":
            ok = not r.get("significant")
            return ok, "no gain" if ok else f"counted faster: {speedup} [{low}, ...]"
        return False, f"inconclusive: the exploit did not get to be timed ({status})"
    raise SystemExit(f"unknown expectation {expect!r}")


def add(rows: Path, row: dict[str, Any]) -> None:
    with rows.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(f"  [{row['verdict']}] {row['check']}: {row['task']} ({row['timer']}): "
          f"{row['status']}{'  ' + row['speedup_txt'] if row['speedup_txt'] else ''}"
          f"  -- {row['why']}", flush=True)


def num(value: Any, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def record(rows: Path, check: str, expect: str, path: Path, rc: int) -> int:
    found = results(path)
    if not found:
        why = NOT_RUN if rc == 200 else "timed out" if rc in (124, 137) else \
            f"no JSON result (exit status {rc})"
        add(rows, {"check": check, "task": "-", "timer": "-", "status": "no result",
                   "runtime_ms": None, "baseline_ms": None, "speedup_txt": "", "flags": [],
                   "verdict": "FAIL", "why": why, "expect": expect})
        return 1
    failed = 0
    for r in found:
        ok, why = judge(expect, r) if r.get("status") != "skipped" else (False, r["error"])
        if r.get("error") and not ok:
            why += f"; error: {' '.join(str(r['error']).split())[:200]}"
        ci = r.get("speedup_ci") or [None, None]
        speedup_txt = "" if r.get("speedup") is None or expect == "measured" else (
            f"{num(r['speedup'], '.3f')}x [{num(ci[0], '.3f')}-{num(ci[1], '.3f')}]"
            f"{' significant' if r.get('significant') else ''}")
        add(rows, {"check": check, "task": r.get("task", "-"), "timer": r.get("timer") or "-",
                   "status": r.get("status"), "correct": r.get("correct"),
                   "runtime_ms": r.get("runtime_ms"), "baseline_ms": r.get("baseline_ms"),
                   "speedup": r.get("speedup"), "speedup_ci": ci, "speedup_txt": speedup_txt,
                   "flags": r.get("flags") or [], "sizes": r.get("sizes"),
                   "verdict": "PASS" if ok else "FAIL", "why": why, "expect": expect})
        failed += not ok
    return 1 if failed else 0


def script(rows: Path, check: str, rc: int) -> int:
    ok = rc == 0
    why = "exit status 0" if ok else NOT_RUN if rc == 200 else \
        "timed out" if rc in (124, 137) else f"exit status {rc}"
    add(rows, {"check": check, "task": "(script)", "timer": "-", "status": f"rc={rc}",
               "runtime_ms": None, "baseline_ms": None, "speedup_txt": "", "flags": [],
               "verdict": "PASS" if ok else "FAIL", "why": why, "expect": "script"})
    return 0 if ok else 1


def agree(rows: Path, check: str) -> int:
    """The reference timed alone by cuda-events and by triton-do-bench, task by task."""
    timed: dict[str, dict[str, float]] = {}
    for line in rows.read_text().splitlines():
        row = json.loads(line)
        if row["expect"] == "measured" and row["status"] == "ok" and row["runtime_ms"]:
            timed.setdefault(row["task"], {})[row["timer"]] = row["runtime_ms"]
    failed = 0
    for task, by in timed.items():
        if "cuda-events" not in by or "triton-do-bench" not in by:
            continue
        ratio = by["cuda-events"] / by["triton-do-bench"]
        ok = AGREE[0] <= ratio <= AGREE[1]
        failed += not ok
        add(rows, {"check": check, "task": task, "timer": "events/do_bench", "status": "-",
                   "runtime_ms": None, "baseline_ms": None, "speedup_txt": f"ratio {ratio:.3f}",
                   "flags": [], "verdict": "PASS" if ok else "FAIL", "expect": "agree",
                   "why": f"medians {by['cuda-events']:.4g} / {by['triton-do-bench']:.4g} ms "
                          f"within {AGREE[0]:.2f}-{AGREE[1]:.2f}"})
    return 1 if failed else 0


def table(rows: Path) -> int:
    lines = [json.loads(line) for line in rows.read_text().splitlines()] if rows.exists() else []
    print(f"{'check':22s} {'task':28s} {'timer':16s} {'status':13s} {'runtime ms':>11s} "
          f"{'ref ms':>10s}  {'speedup [95% interval]':28s} verdict")
    for r in lines:
        print(f"{r['check'][:22]:22s} {str(r['task'])[:28]:28s} {str(r['timer'])[:16]:16s} "
              f"{str(r['status'])[:13]:13s} {num(r['runtime_ms'], '.4g'):>11s} "
              f"{num(r['baseline_ms'], '.4g'):>10s}  {r['speedup_txt'][:28]:28s} {r['verdict']}")
    failed = [r for r in lines if r["verdict"] != "PASS"]
    print(f"\n{len(lines) - len(failed)} of {len(lines)} expectations PASS"
          + (f"; FAIL: {', '.join(sorted({r['check'] for r in failed}))}" if failed else ""))
    for r in failed:
        print(f"  FAIL {r['check']} {r['task']}: {r['why']}")
    return 1 if failed or not lines else 0


def nulls(folder: Path, words: list[str]) -> int:
    from kbtool.config import load_config
    from kbtool.task import catalog
    from kbtool.task.catalog import kind_of

    config = load_config({"source": "builtin"})
    folder.mkdir(parents=True, exist_ok=True)
    for word in words:
        task = catalog.resolve(word, config)
        (folder / f"{task.id.replace('/', '_')}.py").write_text(
            kind_of(task).null_candidate(task) or "")
    return 0


def run(argv: list[str]) -> int:
    if not argv:
        raise SystemExit(__doc__)
    command, args = argv[0], argv[1:]
    if command == "nulls":
        return nulls(Path(args[0]), args[1:])
    if command == "record":
        return record(Path(args[0]), args[1], args[2], Path(args[3]), int(args[4]))
    if command == "script":
        return script(Path(args[0]), args[1], int(args[2]))
    if command == "agree":
        return agree(Path(args[0]), args[1])
    if command == "table":
        return table(Path(args[0]))
    raise SystemExit(f"unknown command {command!r}\n{__doc__}")


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
