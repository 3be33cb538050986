"""Built-in timing backends: CPU wall clock, CUDA events, Triton do_bench."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kbtool.plugin.hookspecs import hookimpl
from kbtool.timing.base import Timer, TimingSettings
from kbtool.timing.stats import summarize

if TYPE_CHECKING:
    from kbtool.evaluation.result import TimingStats


class CpuTimer(Timer):
    name = "cpu"
    devices = ("cpu", "cuda")
    description = "time.perf_counter_ns around each call (a device sync after it on CUDA)"

    def setup(self, device: str) -> None:
        self._sync: Callable[[], None] = lambda: None
        if device == "cuda":
            import torch

            self._sync = torch.cuda.synchronize

    def trial(self, fn: Callable[[], Any]) -> float:
        self._sync()
        start = time.perf_counter_ns()
        fn()
        self._sync()
        return (time.perf_counter_ns() - start) / 1e6

    def sync(self) -> None:
        self._sync()


# Larger than the L2 cache of current data-centre GPUs (H100: 50 MB, B200: 126 MB).
L2_FLUSH_BYTES = 256 * 1024 * 1024


class CudaEventTimer(Timer):
    name = "cuda-events"
    devices = ("cuda",)
    description = "CUDA events with an L2 flush before and a device-wide sync inside each trial"

    def setup(self, device: str) -> None:
        import torch

        self._torch = torch
        self._flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.uint8, device="cuda")

    def trial(self, fn: Callable[[], Any]) -> float:
        torch = self._torch
        self._flush.zero_()
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        # Device-wide sync before the end event: work the candidate put on other streams
        # is then inside the timed interval, not only the current stream's.
        torch.cuda.synchronize()
        end.record()
        end.synchronize()
        return start.elapsed_time(end)

    def before_window(self) -> None:
        self._flush.zero_()
        self._torch.cuda.synchronize()

    def sync(self) -> None:
        self._torch.cuda.synchronize()  # device-wide: side streams are inside the window


class TritonDoBenchTimer(CudaEventTimer):
    # Its L2 flush and device-wide sync around a window are the CUDA-events timer's.
    name = "triton-do-bench"
    devices = ("cuda",)
    description = "triton.testing.do_bench (its own warm-up, L2 flush and repetitions)"

    def available(self, device: str) -> str | None:
        reason = super().available(device)
        if reason is None:
            try:
                import triton.testing  # noqa: F401
            except ImportError:
                reason = "timer 'triton-do-bench' needs triton (pip install triton)"
        return reason

    def measure(self, fn: Callable[[], Any], settings: TimingSettings) -> TimingStats:
        import torch
        from triton.testing import do_bench

        from kbtool.evaluation.result import TimingStats

        def synced() -> None:
            fn()
            torch.cuda.synchronize()  # count side-stream work, as the other timers do

        rep_ms = max(25.0, settings.max_timing_s * 1000)
        samples = do_bench(synced, warmup=25, rep=rep_ms, return_mode="all")
        return TimingStats(timer=self.name, stop_reason="time_cap", **summarize(list(samples)))


@hookimpl
def register_timers(register: Callable[[str, Timer], None]) -> None:
    for timer in (CpuTimer(), CudaEventTimer(), TritonDoBenchTimer()):
        register(timer.name, timer)


@hookimpl
def default_timer(device: str) -> str | None:
    return {"cpu": "cpu", "cuda": "cuda-events"}.get(device)
