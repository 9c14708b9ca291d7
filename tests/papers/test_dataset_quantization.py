"""Dataset Quantization's bins and gain against their definitions (brute force on small sets)."""

import numpy as np

from paperjax.papers.dataset_quantization import method as dq


def _data(n=60, d=5, seed=0):
  rng = np.random.default_rng(seed)
  f = np.concatenate([rng.normal(0, 0.3, (n // 2, d)) + 2, rng.normal(0, 2.0, (n - n // 2, d))])
  return f, dq.cosine_similarity(f)


def _objective(S, B, U, lam=1.0):
  """GraphCut f(B) = λ·Σ_{x∈B} Σ_{p∈U} S(x,p) − Σ_{x∈B} Σ_{s∈B} S(x,s)."""
  B = list(B)
  return lam * S[np.ix_(B, U)].sum() - S[np.ix_(B, B)].sum()


def test_greedy_takes_the_brute_force_argmax_of_the_gain_at_every_step():
  _, S = _data()
  pool = np.arange(5, 45)
  got = dq.graphcut_greedy(S, pool, 12, lam=1.0)
  B = []
  for t in range(12):
    cand = [x for x in pool if x not in B]
    # the marginal of the GraphCut objective is g(x|B) − S(x,x) and S(x,x) = 1 for every x
    marg = [_objective(S, B + [x], pool) - _objective(S, B, pool) for x in cand]
    gains = [S[x, pool].sum() - 2 * S[x, B].sum() for x in cand]
    np.testing.assert_allclose(np.asarray(marg), np.asarray(gains) - 1.0, atol=1e-9)
    B.append(cand[int(np.argmax(gains))])
    assert got[t] == B[-1]


def test_bins_are_disjoint_equal_sized_and_cover_the_class():
  f, S = _data(n=53)
  members = np.arange(3, 53)
  b = dq.bins(S, members, 10)
  sizes = [len(x) for x in b]
  assert max(sizes) - min(sizes) <= 1 and sum(sizes) == len(members)
  allb = np.concatenate(b)
  assert len(np.unique(allb)) == len(allb) and set(allb.tolist()) == set(members.tolist())
  intra = [S[np.ix_(x, x)].mean() for x in b]
  assert intra[0] > intra[-1]  # early bins dense, later ones diverse


def test_sampling_every_bin_meets_the_budget_exactly():
  _, S = _data()
  b = dq.bins(S, np.arange(60), 10)
  rng = np.random.default_rng(0)
  for budget in (10, 13, 30):
    kept = dq.sample_bins(b, budget, rng)
    assert len(kept) == len(np.unique(kept)) == budget
    hits = [len(np.intersect1d(kept, x)) for x in b]
    assert min(hits) >= budget // 10 and max(hits) <= -(-budget // 10)  # every bin, as evenly as possible


def test_select_is_per_class_and_graphcut_is_one_greedy_coreset():
  f, S = _data(n=80)
  labels = np.repeat([0, 1], 40)
  kept = dq.select(f, labels, 0.25, 4, seed=0, kind="dq")
  assert [int((labels[kept] == c).sum()) for c in (0, 1)] == [10, 10]
  gc = dq.select(f, labels, 0.25, 4, seed=0, kind="graphcut")
  np.testing.assert_array_equal(np.sort(gc[labels[gc] == 0]), np.sort(dq.graphcut_greedy(S, np.arange(40), 10)))
