"""The monitor's widgets, one module each (the panels share one)."""
