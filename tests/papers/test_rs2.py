"""RS2's sampler against its definition: S_t = π_p[j·k:(j+1)·k], every index once per ⌈n/k⌉ rounds."""

import math

import numpy as np

from paperjax.papers.rs2 import method as rs2


def test_without_replacement_covers_every_index_exactly_once_per_pass():
  n, k = 100, 10
  s = rs2.without_replacement(n, k, seed=0)
  for p in range(3):
    rounds = [s(p * 10 + j) for j in range(10)]
    assert all(len(r) == k for r in rounds)
    assert sorted(np.concatenate(rounds).tolist()) == list(range(n))
  assert not np.array_equal(np.concatenate([s(j) for j in range(10)]), np.concatenate([s(10 + j) for j in range(10)]))
  np.testing.assert_array_equal(s(7), rs2.without_replacement(n, k, seed=0)(7))  # deterministic given the seed
  assert not np.array_equal(s(7), rs2.without_replacement(n, k, seed=1)(7))


def test_without_replacement_when_k_does_not_divide_n():
  n, k = 1437, 144
  m = math.ceil(n / k)
  s = rs2.without_replacement(n, k, seed=3)
  rounds = [s(j) for j in range(m)]
  assert all(len(r) == k and len(np.unique(r)) == k for r in rounds)   # exact size, no repeats in a round
  assert len(np.unique(np.concatenate(rounds))) == n                     # every index within ⌈n/k⌉ rounds
  assert len(np.unique(np.concatenate(rounds[:m - 1]))) == (m - 1) * k   # the full chunks are disjoint


def test_with_replacement_draws_independent_subsets():
  s = rs2.with_replacement(100, 10, seed=0)
  rounds = [s(t) for t in range(10)]
  assert all(len(np.unique(r)) == 10 for r in rounds)
  assert len(np.unique(np.concatenate(rounds))) < 100  # overlaps across rounds: not a partition


def test_the_stream_trains_on_exactly_the_round_subsets():
  from configs import rs2 as cfg_lib
  from paperjax import registry
  from paperjax.method import Context
  c = cfg_lib.get_config("tiny")
  method = registry.make(c, Context(config=c))
  stream = method.make_iterator(Context(config=c))
  sampler = rs2.without_replacement(1437, 144, seed=0)
  for t in range(2):
    # one round = 3 batches of 48 = the round's 144 examples, each once
    labels_idx = np.concatenate([stream._positions(stream.round, b) for b in range(3)])
    np.testing.assert_array_equal(np.sort(labels_idx), sampler(t))
    for _ in range(3):
      next(stream)
    next(stream)  # the 4th batch starts round t+1
    stream.set_state({**stream.get_state(), "step_in_round": 0})
