"""Rich text pieces the monitor's widgets share: status colours and labels, number formats,
and reading a run's files for display."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text

STATUS_STYLE = {
    "ok": "green", "pass": "green", "fail": "red", "incorrect": "yellow",
    "compile_error": "red", "runtime_error": "red", "timeout": "red", "rejected": "magenta",
    "internal_error": "bold red",
    "format_error": "red", "llm_failed": "red", "evaluating": "cyan", "waiting": "dim",
    "pending": "dim", "running": "cyan", "done": "green", "skipped": "yellow", "failed": "red",
}
STATUS_SHORT = {"compile_error": "compile err", "runtime_error": "runtime err",
                "internal_error": "kbtool err",
                "format_error": "no code", "llm_failed": "llm failed",
                "evaluating": "evaluating…"}
MAX_FILE_CHARS = 200_000  # a step's files are shown up to this size

Cell = tuple[str, str]  # text, style


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def speed_style(value: float) -> str:
    return "green" if value > 1 else "yellow" if value >= 0.95 else "red"


def fmt_x(value: float | None) -> Cell:
    return ("-", "dim") if value is None else (f"{value:.2f}x", speed_style(value))


def fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def styled(status: str, short: bool = True) -> Text:
    label = STATUS_SHORT.get(status, status) if short else status
    return Text(label, style=STATUS_STYLE.get(status, ""))


def verdict(status: str, runtime_ms: float | None) -> str:
    """A candidate's label: its status, but ``pass`` for a correct one that was not timed
    (a kind whose candidates have no runtime: tests pass or fail)."""
    return "pass" if status == "ok" and runtime_ms is None else status


def read_text(path: Path) -> str | None:
    try:
        with open(path, errors="replace") as handle:
            text = handle.read(MAX_FILE_CHARS + 1)
    except OSError:
        return None
    return text if len(text) <= MAX_FILE_CHARS else text[:MAX_FILE_CHARS] + "\n… (cut)"


def lines(parts: list[Text]) -> Text:
    """One text of several lines that never wraps (a panel cuts them with an ellipsis)."""
    text = Text("\n").join(parts)
    text.no_wrap, text.overflow = True, "ellipsis"
    return text
