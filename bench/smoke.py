"""Run every benchmark in its small mode (``--smoke``), one after another; exit 1 if one fails.

Run:  python bench/smoke.py [--only NAME ...] [--timeout 180]

CI runs this after the tests (``.ci/run``), so a benchmark that no longer works on the
current code fails the build instead of rotting until someone needs its figures.  Every
``bench/*.py`` with a ``main`` is run (a new benchmark is picked up without being listed
here); each must accept ``--smoke``.  Nothing is asserted about the figures: they are for
people, and a smoke run's are meaningless.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> list[Path]:
    """The benchmark scripts: every ``bench/*.py`` that defines ``main`` but this one."""
    return sorted(p for p in HERE.glob("*.py")
                  if p.name != Path(__file__).name and "\ndef main(" in p.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", default=None, help="benchmark names (stems)")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="seconds one smoke run may take (180)")
    args = parser.parse_args(argv)
    found = benchmarks()
    if args.only:
        unknown = sorted(set(args.only) - {p.stem for p in found})
        if unknown:
            parser.error(f"no benchmark named {', '.join(unknown)} "
                         f"(known: {', '.join(p.stem for p in found)})")
        found = [p for p in found if p.stem in args.only]
    failed = []
    for script in found:
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True,
                                  text=True, timeout=args.timeout)
            code, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, output = -1, f"timed out after {args.timeout:g} s\n{exc.stdout or ''}"
        took = time.perf_counter() - start
        print(f"bench smoke: {script.name:22s} {'ok' if code == 0 else 'FAILED':6s} "
              f"{took:5.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
            print("\n".join(output.rstrip().splitlines()[-40:]), file=sys.stderr)
    if failed:
        print(f"bench smoke: {len(failed)} benchmark(s) failed: {', '.join(failed)}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
