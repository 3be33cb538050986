"""A line or a few of text that every poll replaces (the top bars and the two panels)."""

from __future__ import annotations

from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static


def _shape(text: Text, width: int) -> int | None:
    """The lines ``text`` takes at ``width``: its line count when no line is wider (so none
    wraps), else None (it may wrap: its height is not known without a layout)."""
    lines = text.plain.split("\n")
    return None if any(cell_len(line) > width for line in lines) else len(lines)


class Readout(Static):
    """A Static that redraws only when its text changed, and asks for a layout (of the whole
    screen) only when its height may have changed.  Static.update() asks for one at every
    call, so a poll that changed a count would lay the whole screen out again.
    ``FIXED_HEIGHT``: the stylesheet gives it a height, so its text never changes its size."""

    FIXED_HEIGHT: ClassVar[bool] = True
    _shown_text: Text | None = None

    def show_text(self, text: Text) -> None:
        old, self._shown_text = self._shown_text, text
        if old is not None and text == old and text.style == old.style:
            return
        width = self.content_size.width
        layout = not self.FIXED_HEIGHT and (
            old is None or not width or _shape(text, width) is None
            or _shape(text, width) != _shape(old, width))
        self.update(text, layout=layout)
