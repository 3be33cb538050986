"""One workload run in a fresh interpreter: the only kbtool code that shares a process with
the library version under test.  Standard library only; run as a script by the version's
venv Python (``python -I -B runner.py CTL RES ROOT WORKLOAD``), never imported by kbtool.

The protocol, one JSON line each way on two pipes the judge passed (not stdout, which the
library may write to):

1. the runner imports the workload module and calls ``load()`` (imports the library), then
   sends ``{"loaded": true}``;
2. the judge sends the seed (only now: nothing that ran at import time could know it); the
   runner calls ``setup(seed)`` and sends ``{"ready": true}``;
3. the judge sends ``go`` and starts its clock; the runner calls ``experiment(api, data)``
   and ``store_result(...)`` and sends ``{"result": ...}``; the judge stops its clock when
   that line has arrived.

The judge keeps the time; this process keeps none (a library that patches the clocks here
changes nothing).  An exception leaves a traceback on stderr and a non-zero exit.
"""

import importlib.util
import json
import os
import sys


def main() -> None:
    ctl_fd, res_fd, root, workload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    control = os.fdopen(ctl_fd, "r")
    results = os.fdopen(res_fd, "w")
    dumps = json.dumps  # taken before the library is imported

    def send(message: dict) -> None:
        results.write(dumps(message) + "\n")
        results.flush()

    sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("kbtool_perf_workload", workload)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    api = module.load()
    send({"loaded": True})
    seed = int(control.readline())
    data = module.setup(seed)
    send({"ready": True})
    control.readline()  # go
    send({"result": module.store_result(module.experiment(api, data))})


if __name__ == "__main__":
    main()
