"""kMQ's selection rules against hand computations, the verifier, and a smoke run of the iterative hook."""

import numpy as np

from paperjax.data import instructions
from paperjax.papers.kmq_diversify import claim
from paperjax.papers.kmq_diversify import method as kmq


def test_static_shares_are_proportional_and_sum_to_the_budget():
  assert kmq.proportional_shares(np.array([50, 30, 20]), 10).tolist() == [5, 3, 2]
  # 10·[0.45, 0.35, 0.2] = [4.5, 3.5, 2]: floors [4, 3, 2], one left → the first largest remainder
  assert kmq.proportional_shares(np.array([45, 35, 20]), 10).tolist() == [5, 3, 2]
  assign = np.repeat(np.arange(4), [40, 30, 20, 10])
  idx = kmq.kmq_static(assign, 20, seed=0)
  assert len(idx) == 20 and len(np.unique(idx)) == 20
  assert np.bincount(assign[idx], minlength=4).tolist() == [8, 6, 4, 2]


def test_round0_splits_equally_and_water_fills_small_clusters():
  assert kmq.equal_shares(np.array([10, 10, 10]), 9).tolist() == [3, 3, 3]
  assert kmq.equal_shares(np.array([10, 1, 10]), 9).tolist() == [4, 1, 4]
  assert kmq.equal_shares(np.array([10, 10, 10]), 10).tolist() == [4, 3, 3]
  assert kmq.round_budgets(580, 3) == [193, 193, 194]
  assign = np.repeat(np.arange(5), [100, 50, 20, 5, 25])
  idx = kmq.iter_round0(assign, 60, 3, seed=0)  # round 0: 20 examples, 4 per cluster
  assert np.bincount(assign[idx], minlength=5).tolist() == [4, 4, 4, 4, 4]


def test_cluster_weights_are_the_softmax_of_mean_reward_differences():
  # s = R(gold) − R(generated): cluster 0 unlearnt clean (1, 1), cluster 1 learnt (0, 0),
  # cluster 2 corrupted gold the model cannot answer either (0 − 0), cluster 3 corrupted but the model
  # answers correctly (0 − 1), cluster 4 never scored (neutral 0)
  s = kmq.reward_diff([1, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 1, 1])
  w, mean = kmq.cluster_weights(np.array([0, 0, 1, 1, 2, 3, 3]), s, 5)
  np.testing.assert_allclose(mean, [1, 0, 0, -1, 0])
  e = np.exp([1, 0, 0, -1, 0])
  np.testing.assert_allclose(w, e / e.sum())


def test_resample_adds_exactly_the_round_budget_of_new_examples():
  assign = np.repeat(np.arange(3), [10, 10, 100])
  selected = np.array([0, 1, 10, 11, 20, 21])
  rng = np.random.default_rng(0)
  w = np.array([0.98, 0.01, 0.01])   # cluster 0 wanted far beyond its 8 remaining examples
  new = kmq.resample(assign, selected, w, 30, rng)
  assert len(new) == 30 and len(np.unique(new)) == 30
  assert not np.isin(new, selected).any()
  assert (assign[new] == 0).sum() == 8   # capped, the shortfall re-drawn elsewhere
  # the multinomial follows w when nothing binds
  big = np.repeat(np.arange(2), [5000, 5000])
  new = kmq.resample(big, np.array([], np.int64), np.array([0.8, 0.2]), 1000, np.random.default_rng(1))
  assert 740 < (big[new] == 0).sum() < 860


def test_km_closest_takes_the_nearest_to_each_centroid():
  x = np.array([[0.0], [0.1], [0.5], [10.0], [10.2], [11.0]])
  idx = kmq.km_closest(x, np.array([[0.0], [10.1]]), np.array([0, 0, 0, 1, 1, 1]), 4)
  assert idx.tolist() == [0, 1, 3, 4]


def test_verifier_and_encoding():
  assert instructions.solve("double ab") == "abab" and instructions.solve("inc 8") == "9"
  assert instructions.verify("swap abc", "cba") == 1.0 and instructions.verify("swap abc", "abc") == 0.0
  recs = instructions.pool({"copy": 5, "swap": 5}, ("swap",), seed=0)
  for r in recs:  # corrupted gold answers are random strings; clean ones are verified correct
    if not r["corrupted"]:
      assert instructions.verify(r["instruction"], r["answer"]) == 1.0
  from paperjax.data import tokenizers
  tok = tokenizers.make_tokenizer("byte", specials=(), num_sentinels=0)
  ex = instructions.encode({"instruction": "copy ab", "answer": "ab"}, tok, 16)
  assert ex["tokens"][:11].tolist() == list(tok.encode("copy ab\nab")) + [tok.eos_id]
  assert ex["loss_mask"].tolist() == [0] * 8 + [1, 1, 1] + [0] * 5   # the answer and its eos


def test_claim_judge_by_hand():
  row = {f"{n}/{k}": 0.0 for n in claim.NAMES.values() for k in ("accuracy", "corrupted_share", "selected")}
  row.update({"kmq_iter/accuracy": 0.61, "kmq/accuracy": 0.58, "random/accuracy": 0.54,
              "kmq_iter/corrupted_share": 0.10, "random/corrupted_share": 0.21})
  assert claim.judge([row])["passed"]
  assert not claim.judge([{**row, "kmq_iter/accuracy": 0.595}])["passed"]
  assert not claim.judge([{**row, "random/accuracy": 0.56}])["passed"]
  assert not claim.judge([{**row, "kmq_iter/corrupted_share": 0.11}])["passed"]
  assert claim.corrupted_share({0: 3, 12: 1}, [12]) == 0.25


def test_iterative_rounds_grow_the_selection_by_the_round_budgets(tmp_path):
  from configs import kmq_diversify as cfg
  from paperjax import train
  from tests.conftest import shrink
  c = shrink(cfg.get_config("tiny"), steps=6)
  c.train.between_every = 2
  assert sum(dict(c.kmq.sizes).values()) == 580   # shrink: a 580-example pool, 16 clusters
  s = train.run(c, str(tmp_path))
  assert s["data"]["rounds"] == 3 and s["data"]["subset_size"] == 58
  hist = [h for h in s["history"] if "between/selected" in h]
  assert [h["between/selected"] for h in hist] == [38.0, 58.0]
