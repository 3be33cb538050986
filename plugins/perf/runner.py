"""One workload run in a fresh interpreter: the only kbtool code that shares a process with
the library version under test.  Standard library only; run as a script by the version's
venv Python (``python -I -B runner.py CTL RES ROOT WORKLOAD``), never imported by kbtool.

The protocol, one JSON line each way on two pipes the judge passed (not stdout, which the
library may write to):

1. the runner imports the workload module and calls ``load()`` (imports the library), then
   sends ``{"loaded": true}``;
2. the judge sends ``{"seed": N, "params": {...}}`` (only now: nothing that ran at import
   time could know them); the runner sets the module-level names in ``params`` (a hidden
   workload's other sizes or vocabulary), calls ``setup(seed)`` and sends ``{"ready": true}``;
3. the judge sends ``go`` and starts its clock; the runner calls ``experiment(api, data)``
   and ``store_result(...)`` and sends ``{"result": ...}``; the judge stops its clock when
   that line has arrived;
4. the runner waits until the judge closes the control pipe, then exits: the judge reads its
   CPU time while it waits (a process's CPU clock, read from another CPU while it runs, lags
   by up to a scheduler tick, which can be longer than a whole experiment).

The judge keeps the time; this process keeps none (a library that patches the clocks here
changes nothing).  An exception in a step is reported as ``{"error": {"stage": ...,
"message": ...}}`` (a task author's mistake reads as one line: ``store_result`` returned
something JSON cannot hold), with its traceback on stderr, and the process exits with 1.
"""

import importlib.util
import json
import os
import sys
import traceback


def main() -> None:
    ctl_fd, res_fd, root, workload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    control = os.fdopen(ctl_fd, "r")
    results = os.fdopen(res_fd, "w")
    dumps = json.dumps  # taken before the library is imported

    def send(message: dict) -> None:
        results.write(dumps(message) + "\n")
        results.flush()

    stage = "load"
    try:
        sys.path.insert(0, root)
        spec = importlib.util.spec_from_file_location("kbtool_perf_workload", workload)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        api = module.load()
        send({"loaded": True})
        stage = "setup"
        order = json.loads(control.readline())
        for name, value in order["params"].items():
            setattr(module, name, value)
        data = module.setup(order["seed"])
        send({"ready": True})
        control.readline()  # go
        stage = "experiment"
        result = module.experiment(api, data)
        stage = "store_result"
        line = dumps({"result": module.store_result(result)})
    except BaseException as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}"
        if stage == "store_result" and isinstance(exc, (TypeError, ValueError)):
            message = f"it returned something JSON cannot hold ({message})"
        send({"error": {"stage": stage, "message": message[:2000]}})
        sys.exit(1)
    results.write(line + "\n")
    results.flush()
    control.read()  # until the judge closes it


if __name__ == "__main__":
    main()
