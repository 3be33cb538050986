"""Evaluation workers over a shared directory: the job queue and ``kbtool worker``."""
