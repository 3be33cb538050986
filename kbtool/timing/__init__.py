"""Timing: the timer interface, the adaptive measurement loop and its statistics."""

from kbtool.timing.base import Timer, TimingSettings

__all__ = ["Timer", "TimingSettings"]
