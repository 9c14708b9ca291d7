"""Evaluators: objects with a `name` and `__call__(params, ctx) -> {metric: value}`.

They run every `config.train.eval_every` steps and at the end of training; their metrics are logged
with an `eval/` prefix and shown in the summary.
"""
