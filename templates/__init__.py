"""Prompt and job-script templates shipped with kbtool."""
