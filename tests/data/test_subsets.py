"""Label budgets, long tails and labelled/unlabelled views of a record source."""

import numpy as np
import pytest

from paperjax.data import sources, subsets

TRAIN = sources.records("builtin:digits", "train")
LABELS = subsets.labels_of(TRAIN)


def test_label_budgets_are_stratified_and_seeded():
  lab, unl = subsets.select(LABELS, dict(labels_per_class=5, unlabeled="rest", seed=3))
  assert np.bincount(LABELS[lab]).tolist() == [5] * 10
  assert len(unl) == len(LABELS) - 50 and not set(lab) & set(unl)
  assert subsets.select(LABELS, dict(labels_per_class=5, seed=3))[0].tolist() == lab.tolist()
  assert subsets.select(LABELS, dict(labels_per_class=5, seed=4))[0].tolist() != lab.tolist()
  lab, _ = subsets.select(LABELS, dict(label_fraction=0.1))
  assert np.bincount(LABELS[lab]).tolist() == [int(0.1 * n) for n in np.bincount(LABELS)]


def test_long_tail_counts_follow_the_exponential_profile():
  assert subsets.long_tail_counts(60, 50, 10) == [int(60 * 50 ** (-c / 9)) for c in range(10)]
  assert subsets.long_tail_counts(60, 50, 10)[0] == 60 and subsets.long_tail_counts(60, 50, 10)[-1] == 1
  assert subsets.unlabeled_long_tail_counts(100, 5, 1, 10) == [50] * 10


def test_views():
  cfg = dict(labels_per_class=2, unlabeled="rest", unlabeled_ratio=3, seed=0)
  semi = subsets.apply(TRAIN, {**cfg, "view": "semi"})
  assert len(semi) == -(-(len(LABELS) - 20) // 3)
  rec = semi[4]
  assert rec["unlabeled_image"].shape == (3, 8, 8, 1) and "label" in rec
  unl = subsets.apply(TRAIN, {**cfg, "view": "unlabeled"})
  assert set(unl[0]) == {"image"}                             # no label can leak
  union = subsets.apply(TRAIN, {**cfg, "view": "union", "with_index": True})
  labels = [int(union[i]["label"]) for i in range(len(union))]
  assert labels.count(-1) == len(LABELS) - 20 and union[7]["index"] == 7
  images = subsets.apply(TRAIN, {**cfg, "view": "images"})
  assert len(images) == len(LABELS) and set(images[0]) == {"image"}
  assert subsets.apply(TRAIN, {}) is TRAIN                    # no subset: the source itself


def test_bad_requests_are_one_sentence_errors():
  with pytest.raises(ValueError, match="only"):
    subsets.select(LABELS, dict(labels_per_class=500))
  with pytest.raises(ValueError, match="unknown field"):
    subsets.select(LABELS, dict(labels_per_clas=5))
  with pytest.raises(ValueError, match="needs unlabelled data"):
    subsets.apply(TRAIN, dict(labels_per_class=5, view="semi", unlabeled_ratio=2))
  with pytest.raises(ValueError, match="view"):
    subsets.apply(TRAIN, dict(view="everything"))
