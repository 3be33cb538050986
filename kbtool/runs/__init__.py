"""Run directories: their layout, typed events, the event log and the summary rule."""
