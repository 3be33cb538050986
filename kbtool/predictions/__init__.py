"""Other agents' predictions, judged into a run directory (``kbtool eval --predictions``).

- ``model``: a line of a predictions file (SWE-bench / GSO: ``instance_id``,
  ``model_name_or_path``, ``model_patch``), what a run records of each prediction
  (``prediction.json``) and of the whole (``predictions.json``);
- ``files``: reading a predictions file (JSON lines or a JSON list) or KernelBench's
  generated-kernel folders (``runs/<run_name>/level_<L>_problem_<P>_sample_<S>_kernel.py``),
  each prediction resolved to its task;
- ``judge``: every prediction judged once, into a run directory that ``kbtool report`` and
  ``kbtool monitor`` read; a second call judges only what is new.

The report's side (a run per model, pass@k) is ``kbtool.report.predictions``.
"""
