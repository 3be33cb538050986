"""``kbtool monitor``: a Textual UI that follows a run's event log."""
