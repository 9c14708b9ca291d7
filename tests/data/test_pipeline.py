"""The grain pipeline's determinism contract (data/pipeline.py), per-example and per-batch transforms."""

import numpy as np
import pytest

from paperjax.data import pipeline

SOURCE = np.arange(64 * 5, dtype=np.int32).reshape(64, 5)   # 64 records of 5 tokens


def example_fn(x, rng):
  return {"x": x, "noise": rng.integers(0, 1_000_000, size=2)}


def batch_fn(b, rng):
  # A vectorised transform: one random draw per row, from a generator seeded per global batch.
  return {"x": b, "noise": rng.integers(0, 1_000_000, size=(b.shape[0], 2)), "rows": np.full(b.shape[0], b.shape[0])}


def global_batches(n, procs, **kw):
  """Global batches 0..n-1 assembled from `procs` processes the way sharding.host_to_global lays
  them out (process p's rows are p, p+procs, …), returned in the one-process order."""
  its = [pipeline.make_iterator(SOURCE, global_batch_size=8, seed=3, process_index=p, process_count=procs,
                                num_threads=1, **kw) for p in range(procs)]
  out = []
  for _ in range(n):
    parts = [next(it) for it in its]
    merged = {}
    for k in parts[0]:
      rows = np.empty((8, *parts[0][k].shape[1:]), parts[0][k].dtype)
      for p, part in enumerate(parts):
        rows[p::procs] = part[k]
      merged[k] = rows
    out.append(merged)
  return out


@pytest.mark.parametrize("kw", [dict(example_fn=example_fn), dict(batch_fn=batch_fn)], ids=["example_fn", "batch_fn"])
def test_same_global_batches_on_one_or_two_processes(kw):
  one, two = global_batches(5, 1, **kw), global_batches(5, 2, **kw)
  for a, b in zip(one, two):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  seen = np.concatenate([b["x"][:, 0] // 5 for b in one[:8]])
  assert len(set(seen.tolist())) == len(seen)   # an epoch's examples, each once
  assert len({tuple(b["noise"].ravel()) for b in one}) == len(one)   # fresh randomness every batch


def test_batch_fn_sees_the_whole_global_batch():
  b = next(pipeline.make_iterator(SOURCE, global_batch_size=8, seed=0, process_index=1, process_count=4,
                                  batch_fn=batch_fn, num_threads=1))
  assert b["x"].shape == (2, 5) and (b["rows"] == 8).all()


def test_batch_fn_iterator_resumes_exactly():
  it = pipeline.make_iterator(SOURCE, global_batch_size=8, seed=1, batch_fn=batch_fn, num_threads=1)
  for _ in range(3):
    next(it)
  state = it.get_state()
  ahead = [next(it) for _ in range(4)]
  fresh = pipeline.make_iterator(SOURCE, global_batch_size=8, seed=1, batch_fn=batch_fn, num_threads=1)
  fresh.set_state(state)
  for a in ahead:
    b = next(fresh)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
