"""Density-Based Pruning against its formulas: the QP quotas, the complexity, SemDeDup, keep-hard; a smoke run."""

import numpy as np

from paperjax import selection
from paperjax.papers.density_pruning import claim
from paperjax.papers.density_pruning import method as dp


def test_qp_equals_n_p_when_no_bound_is_active():
  p = np.array([0.1, 0.2, 0.3, 0.4])
  sizes = np.array([100, 100, 100, 100])
  x = dp.qp_quotas(p, sizes, 40, balance=0.0)   # lb = 1, ub = 100: inactive at 40·p = [4, 8, 12, 16]
  np.testing.assert_allclose(x, [4, 8, 12, 16], atol=1e-5)


def test_qp_with_active_bounds_sums_to_the_budget_and_matches_water_filling():
  rng = np.random.default_rng(0)
  p = dp.softmax(rng.uniform(0, 1, 12), 0.2)
  sizes = rng.integers(3, 40, 12)
  n_keep = 150
  x = dp.qp_quotas(p, sizes, n_keep, balance=0.5)
  lb, ub = dp.quota_bounds(sizes, n_keep, 0.5)
  assert lb.tolist() == np.minimum(int(150 / 12 * 0.5), sizes - 1).tolist()   # ⌊N_keep/k·β⌋ = 6, capped
  assert abs(x.sum() - n_keep) < 1e-5
  assert np.all(x >= lb - 1e-7) and np.all(x <= ub + 1e-7)
  assert np.any(np.isclose(x, ub)) and np.any(np.isclose(x, lb))             # the bounds bind here
  np.testing.assert_allclose(x, dp.water_fill(p, sizes, n_keep, 0.5), atol=1e-4)
  n = dp.integer_quotas(x, sizes, n_keep)
  assert n.sum() == n_keep and np.all(n <= sizes) and np.all(np.abs(n - x) < 1)


def test_high_temperature_gives_uniform_quotas():
  c = np.array([0.01, 0.2, 0.05, 0.3])
  np.testing.assert_allclose(dp.softmax(c, 1e6), 0.25, atol=1e-6)
  x = dp.qp_quotas(dp.softmax(c, 1e6), np.full(4, 50), 40)
  np.testing.assert_allclose(x, 10, atol=1e-3)
  assert dp.softmax(c, 0.05).argmax() == 3   # low temperature: the most complex cluster dominates


def test_complexity_is_d_inter_times_d_intra_by_hand():
  cents = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  a = np.array([0, 0, 1, 2])
  s = np.sqrt(0.5)
  x = np.array([[1.0, 0.0], [s, s], [0.0, 1.0], [-1.0, 0.0]])
  d_intra, d_inter, c = dp.cluster_complexity(x, cents, a, num_neighbors=1)
  np.testing.assert_allclose(d_intra, [(0 + 1 - s) / 2, 0, 0])
  np.testing.assert_allclose(d_inter, [1, 1, 1])           # each nearest other centroid is orthogonal
  np.testing.assert_allclose(c, d_intra * d_inter)
  _, d_inter, c = dp.cluster_complexity(x, cents, a, num_neighbors=2)
  np.testing.assert_allclose(d_inter, [1.5, 1.0, 1.5])     # mean of (1 − cos) over the 2 others
  np.testing.assert_allclose(c, [(1 - s) / 2 * 1.5, 0, 0])


def test_semdedup_removes_planted_near_duplicates_and_keeps_one_of_each():
  rng = np.random.default_rng(0)
  base = rng.normal(size=(60, 16))
  dups_of = rng.choice(60, 20, replace=False)
  x = np.concatenate([base, base[dups_of] + rng.normal(0, 1e-3, (20, 16))])
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  c, a = selection.kmeans(x, 4, 0, spherical=True)
  keep = selection.semdedup(x, c, a, eps=1e-4)
  assert (~keep).sum() == 20                                   # exactly one of each planted pair goes
  for j, src in enumerate(dups_of):
    assert keep[src] != keep[60 + j]
  # of a pair, the one farther from its centroid (least prototypical) stays
  for j, src in enumerate(dups_of):
    pair = np.array([src, 60 + j])
    cos = x[pair] @ c[a[src]]
    assert keep[pair[np.argmin(cos)]]


def test_keep_hard_takes_the_least_prototypical():
  x = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
  kept = dp.keep_in_clusters(x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0, 0, 1]), np.array([2, 1]))
  assert kept.tolist() == [1, 2, 3]
  easy = dp.keep_in_clusters(x, np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 0, 0, 1]), np.array([1, 1]), "easy")
  assert easy.tolist() == [0, 3]


def test_select_keeps_exactly_the_budget_on_the_toy_pool():
  records, kind = dp.toy_pool(120, 60, 30, 0)
  x = selection.pixel_pca(records.arrays["image"], 16, 0)
  out = dp.select(x, 60, k=6, num_neighbors=3)
  assert len(out["indices"]) == 60 and len(np.unique(out["indices"])) == 60
  assert out["dedup_keep"][:120].sum() + out["dedup_keep"][180:].sum() <= 125   # planted copies go
  uni = dp.select(x, 60, k=6, density="uniform", num_neighbors=3)
  assert len(uni["indices"]) == 60


def test_claim_judge_by_hand():
  row = {f"{n}/{k}": 0.0 for n in claim.NAMES.values()
         for k in (claim.METRIC, "i2t_R@1", "kept_over_represented", "kept_near_copies")}
  row.update({f"dbp/{claim.METRIC}": 0.75, f"ssp/{claim.METRIC}": 0.72, f"random/{claim.METRIC}": 0.69,
              "complexity_spearman": 0.7})
  assert claim.judge([row])["passed"]
  assert not claim.judge([{**row, f"ssp/{claim.METRIC}": 0.74}])["passed"]
  assert not claim.judge([{**row, "complexity_spearman": 0.5}])["passed"]


def test_tiny_config_trains_on_the_pruned_pool(tmp_path):
  from configs import density_pruning as cfg
  from paperjax import train
  from tests.conftest import shrink
  c = shrink(cfg.get_config("tiny"), steps=2)   # shrink: a 210-image pool, k = 6
  c.eval.max_examples = 32
  s = train.run(c, str(tmp_path))
  assert s["data"]["subset_size"] == 63 and s["data"]["source_size"] == 210
