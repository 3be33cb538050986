"""The monitor's screens: the task table (``tasks``) and one task's drill-down (``detail``)."""
