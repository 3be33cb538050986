"""Evaluating candidates: the result schema, the evaluator, backends, batches, baselines."""
