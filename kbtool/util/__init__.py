"""Small helpers every concept uses: atomic files, per-user directories."""
