"""The first process of a perf run's container (``perf_engine=podman|apptainer``): it starts
the run (``runner.py``) the way the local judge does, and reports how it ended.  Standard
library only; run as a script by the version's venv Python (``python -I -B -S launcher.py
COMM PYTHON RUNNER ROOT WORKLOAD``), never imported by kbtool.

The judge, outside the container, made three FIFOs in ``COMM`` (bound read-only: a FIFO is
still writable there) and holds the read ends of ``res`` and ``status``.  This process:

1. makes itself undumpable (no process of the run may read its memory or its descriptors
   through ``/proc``: the container has no CAP_SYS_PTRACE) and a child subreaper (every
   process the run leaves behind becomes its child, whatever is PID 1 here);
2. opens ``status`` and ``res`` for writing and ``control`` for reading; the judge's clock
   starts when that open meets the judge's (the run's "process start");
3. waits for the judge's ``start`` line: by then the judge has unlinked the FIFOs, so no
   process of the run can open them by name;
4. starts ``PYTHON -I -B RUNNER CTL RES ROOT WORKLOAD`` with the results descriptor (the
   judge sees the end of the results when the run exits) and a pipe of its own as the
   control channel: it passes the judge's control lines on, and reads the run's CPU clock
   just before it passes ``go`` on (the judge, outside the container, cannot read it);
5. reaps it (``wait4``: its exit status and CPU time, with the children it waited for),
   reaps or finds whatever it left running, and writes one JSON line to ``status``:
   ``{"exit": code, "cpu_ms": ..., "cpu_at_go_ms": ..., "left": [...]}``.
"""

import ctypes
import json
import os
import subprocess
import sys
import time

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    comm, python, runner, root, workload = sys.argv[1:6]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    status = os.open(os.path.join(comm, "status"), os.O_WRONLY | os.O_CLOEXEC)
    res = os.open(os.path.join(comm, "res"), os.O_WRONLY)
    ctl = os.open(os.path.join(comm, "ctl"), os.O_RDONLY)
    line = b""
    while not line.endswith(b"\n"):  # byte by byte: what follows is the run's
        byte = os.read(ctl, 1)
        if not byte:
            return
        line += byte
    relay_r, relay_w = os.pipe()
    proc = subprocess.Popen([python, "-I", "-B", runner, str(relay_r), str(res), root,
                             workload], pass_fds=(relay_r, res), stdin=subprocess.DEVNULL)
    os.close(relay_r)
    os.close(res)
    clock = ((~proc.pid) << 3) | 2  # the run's process CPU clock (CPUCLOCK_SCHED)
    at_go = None
    judge = os.fdopen(ctl, "rb")
    for index, order in enumerate(iter(judge.readline, b"")):  # the seed, then go
        if index == 1:
            try:
                at_go = time.clock_gettime_ns(clock) / 1e6
            except OSError:
                at_go = None
        try:
            os.write(relay_w, order)
        except OSError:
            break
        if index == 1:
            break
    os.close(relay_w)
    judge.close()
    _, code, usage = os.wait4(proc.pid, 0)
    left = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            left.append("one still running")
            break
        left.append(str(pid))
    report = {"exit": os.waitstatus_to_exitcode(code),
              "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1e3, "cpu_at_go_ms": at_go,
              "left": left}
    os.write(status, (json.dumps(report) + "\n").encode())


if __name__ == "__main__":
    main()
