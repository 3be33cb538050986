"""The repository plugin: method generation, completion and program repair on real
repositories, judged by their own test suites.

- ``repository``: releases fetched from PyPI source archives by pip, cached by content hash,
  read-only;
- ``runner`` (with ``harness``): one edit checked by the repository's own tests in a fresh
  workspace under kbtool's sandbox, per-test outcomes the candidate cannot forge.
"""
