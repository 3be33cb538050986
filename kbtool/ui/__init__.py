"""Human-readable terminal output shared by commands."""
