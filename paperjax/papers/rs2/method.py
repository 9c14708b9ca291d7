"""Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning (Okanovic et al., ICLR 2024).
https://arxiv.org/abs/2305.18424

Rule. Instead of pruning once to a static subset S of size k = r·N, every round t trains on a fresh
random subset S_t of size k. Without replacement (the paper's default, `UniformNoReplacement`):

  π_p = a random permutation of {0..N−1} for pass p;  m = ⌈N/k⌉ rounds per pass;
  S_t = π_p[j·k : (j+1)·k]  with p = ⌊t/m⌋, j = t mod m,

so every example is seen exactly once per m = ⌈1/r⌉ rounds. With replacement, S_t is an independent
uniform k-subset each round. The learning-rate schedule runs over all rounds, so the number of
steps equals that of a static-subset baseline (T rounds × k/B steps).

Defaults and their source. r = 10% per round, without replacement, schedule over the total rounds,
one pass over S_t per round (the official README: `--selection UniformNoReplacement --per_epoch True
--fraction 0.1`, CIFAR-10 ResNet-18, 200 rounds, batch 128, SGD lr 0.1 cosine).

Deviations. When k does not divide N the last chunk of a pass is topped up with examples drawn
(without repeats) from the rest of that pass's permutation, so every round has exactly k examples
and every index is seen at least once per m rounds (exactly once when k | N). The toy model is an
MLP on 8x8 digits trained with Adam. Baselines (full data, static random, static EL2N from a proxy,
k-center) are the shared ones of `paperjax/selection.py`.
"""

from __future__ import annotations

import math

import numpy as np

from paperjax import selection
from paperjax.method import Method, PaperInfo

PAPER = PaperInfo(slug="rs2", title="Repeated Random Sampling for Minimizing the Time-to-Accuracy of Learning",
                  authors="Okanovic, Waleffe, Mageirakos, Nikolakakis, Karbasi, Kalogerias, Gürel, Rekatsinas",
                  year=2024, url="https://arxiv.org/abs/2305.18424", family="dataset-distillation/pruning/selection")
KINDS = ("rs2", "rs2_replacement")


def without_replacement(n: int, k: int, seed: int):
  """sampler(t) -> S_t: consecutive k-chunks of one permutation per pass of ⌈n/k⌉ rounds."""
  m = math.ceil(n / k)

  def sampler(t: int) -> np.ndarray:
    p, j = divmod(int(t), m)
    perm = np.random.default_rng([int(seed), 2024, p]).permutation(n)
    chunk = perm[j * k:(j + 1) * k]
    if len(chunk) < k:  # the pass's last, short chunk: top up from the rest of the pass, no repeats
      rest = perm[:j * k]
      fill = np.random.default_rng([int(seed), 2025, p]).choice(rest, k - len(chunk), replace=False)
      chunk = np.concatenate([chunk, fill])
    return np.sort(chunk)
  return sampler


def with_replacement(n: int, k: int, seed: int):
  """sampler(t) -> an independent uniform k-subset per round (subsets may overlap across rounds)."""
  return lambda t: np.sort(np.random.default_rng([int(seed), 2026, int(t)]).choice(n, k, replace=False))


def make(config, ctx) -> Method:
  s = config.selection
  kind = str(s.kind)
  if kind not in KINDS + selection.BASELINES:
    raise ValueError(f"selection.kind={kind!r} is unknown for rs2; use one of {KINDS + selection.BASELINES}.")

  def sampler_for(n, arrays):
    del arrays
    k = selection.subset_size(n, s.fraction)
    return (without_replacement if kind == "rs2" else with_replacement)(n, k, int(s.seed))

  return selection.classifier_method(config, ctx, sampler_for=sampler_for)
