"""Does your data spark joy? Performance gains from domain upsampling at the end of training
(Blakeney, Paul, Larsen, Owen, Frankle; Databricks, 2024). https://arxiv.org/abs/2406.03476

Rule. A two-phase data mixture with an unchanged learning-rate schedule: the base mix w_base
(general web text dominant) for the first (1 − f) of training, then an upsampled mix w_up, in which
the domain-specific sets (math, code, academic) are upweighted relative to web text, for the last
fraction f:
    w(t) = w_base  for t < ⌊(1 − f)·T⌋,    w(t) = w_up  for t ≥ ⌊(1 − f)·T⌋.
f is ablated over 5–30% (10–20% best in the paper; f = 100% is "upsampled mix throughout"). The
same schedule measures a dataset's utility cheaply: remove one dataset from w_up (renormalise the
rest) during the final phase and compare with the full upsampled run.

Everything here is shared code — the two-phase schedule is `mixture.phases`
(`paperjax/data/mixture.py`), the LM and the per-domain evaluators `paperjax/mixture_lm.py`; this file
only writes the phase from `upsampling.fraction`, `upsampling.weights` and `upsampling.drop`.

Deviations. The paper's 7B model, 1T tokens and its benchmarks (MMLU, GSM8K, HumanEval) are
replaced by a tiny byte-level decoder on Python's documentation (web), stdlib code and two-digit
addition (math), evaluated by held-out loss per domain and addition exact match. The paper's exact
base and upsampled proportions are not given per dataset in the digest; the toy uses base ≈ size-
proportional (90/5/5) and upsampled 40/30/30 (the digest's toy).
"""

from __future__ import annotations

import ml_collections

from paperjax import mixture_lm
from paperjax.data import mixture
from paperjax.method import Method, PaperInfo

PAPER = PaperInfo(slug="domain_upsampling",
                  title="Does your data spark joy? Performance gains from domain upsampling at the end of training",
                  authors="Blakeney, Paul, Larsen, Owen, Frankle", year=2024, url="https://arxiv.org/abs/2406.03476",
                  family="lm-data-mixture")


def final_weights(config) -> dict:
  """The upsampled mix of the final phase, with `upsampling.drop` (a domain removed) set to 0."""
  u = config.upsampling
  w = dict(u.weights)
  drop = str(u.get("drop", "") or "")
  if drop:
    if drop not in dict(config.mixture.sources):
      raise ValueError(f"upsampling.drop={drop!r} is not a source; sources: {sorted(dict(config.mixture.sources))}.")
    w[drop] = 0.0
  return w


def phases(config) -> tuple:
  """`mixture.phases` for upsampling fraction f: ((1 − f, w_up),), none for f = 0."""
  f = float(config.upsampling.fraction)
  if not 0.0 <= f <= 1.0:
    raise ValueError(f"upsampling.fraction={f} must be in [0, 1] (the final fraction of training that is upsampled).")
  return () if f == 0.0 else ((1.0 - f, final_weights(config)),)


def with_phases(config):
  """A copy of `config` whose `mixture.phases` is the upsampling schedule (the run's config is not edited)."""
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.mixture.phases = phases(config)
  mixture.Schedule(list(dict(cfg.mixture.sources)), dict(cfg.mixture.weights), cfg.mixture.phases,
                   int(cfg.train.steps))  # fails early, with one sentence, on bad weights
  return cfg


def make(config, ctx) -> Method:
  return mixture_lm.method(with_phases(config), ctx, summary_keys=("val/web", "val/code", "val/math", "em/math"))
