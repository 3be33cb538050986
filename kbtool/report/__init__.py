"""``kbtool report``: metrics, tables, exports and figures of finished or crashed runs."""
