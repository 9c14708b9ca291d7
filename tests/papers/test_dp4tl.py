"""DP4TL's class-pruning rules against hand computations: LM vote histogram and top-k, FM nearest-mean votes."""

import numpy as np

from paperjax.papers.dp4tl import method as dp


def test_lm_votes_count_target_predictions_and_sum_to_the_target_size():
  logits = np.array([[0, 5, 1], [9, 0, 0], [0, 1, 2], [0, 3, 1], [1, 2, 0]], float)
  votes = dp.lm_votes(logits, 4)
  assert votes.tolist() == [1, 3, 1, 0] and votes.sum() == len(logits)
  assert dp.top_classes(votes, 2).tolist() == [0, 1]        # 3 votes for class 1, then a tie 0/2: smaller id
  assert dp.top_classes(np.array([5, 1, 7, 7]), 3).tolist() == [0, 2, 3]


def test_fm_votes_go_to_the_nearest_class_mean():
  src = np.array([[0.0, 0], [0, 2], [10, 0], [10, 2], [0, 10], [2, 10]])
  lab = np.array([0, 0, 1, 1, 2, 2])                         # means (0,1), (10,1), (1,10)
  tgt = np.array([[1.0, 1], [9, 0], [8, 3], [1, 7], [0.4, 0.4]])
  assert dp.fm_votes(tgt, src, lab, 3).tolist() == [2, 2, 1]
  # the intended rule: the vote is the *class* of the nearest mean, not the target sample's position
  assert dp.fm_votes(tgt[::-1], src, lab, 3).tolist() == [2, 2, 1]


def test_examples_of_kept_classes_and_the_toy_source():
  labels = np.array([3, 1, 0, 3, 2])
  assert dp.examples_of(labels, np.array([0, 3])).tolist() == [0, 2, 3]
  g = dp.GlyphSource(4, 5, seed=0)
  assert len(g) == 20 and int(g[7]["label"]) == 1 and g[7]["image"].shape == (8, 8, 1)
  held = dp.GlyphSource(4, 5, seed=1)
  np.testing.assert_array_equal(g.templates, held.templates)  # held-out glyphs: same classes, new draws
  assert not np.array_equal(g[7]["image"], held[7]["image"])
