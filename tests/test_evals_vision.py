"""Vision evaluators against hand computations: ridge probe, kNN, accuracy, batched application."""

import numpy as np

from paperjax.evals import classification


def test_ridge_probe_separates_separable_classes():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 5)) * 5
  y = rng.integers(0, 3, 200)
  x = centres[y] + rng.normal(size=(200, 5))
  pred = classification.ridge_probe(x[:150], y[:150], x[150:], 3)
  assert np.mean(pred == y[150:]) == 1.0


def test_knn_by_hand():
  train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
  ytr = np.array([0, 0, 1])
  test = np.array([[1.0, 0.05], [0.1, 1.0]])
  assert classification.knn_predict(train, ytr, test, 2, k=1).tolist() == [0, 1]
  # k = 3 with a sharp temperature: the closest neighbour's weight dominates.
  assert classification.knn_predict(train, ytr, test, 2, k=3, temperature=0.01).tolist() == [0, 1]


def test_batched_apply_pads_and_trims():
  calls = []

  def fn(p, x):
    calls.append(x.shape)
    return x * 2
  out = classification.batched_apply(fn, None, np.arange(10.0), 4)
  np.testing.assert_array_equal(out, np.arange(10.0) * 2)
  assert calls == [(4,)] * 3                                  # the last batch padded to 4: one shape


def test_accuracy_balanced_and_per_class():
  data = {"image": np.arange(6), "label": np.array([0, 0, 0, 0, 1, 1])}
  logits = lambda p, x: np.eye(2)[np.where(np.asarray(x) < 5, 0, 1)]   # predicts class 0 for all but the last
  out = classification.Accuracy("acc", data, logits, batch_size=4, per_class=True)(None, None)
  assert out["acc"] == 5 / 6 and out["acc/class0"] == 1.0 and out["acc/class1"] == 0.5
  assert out["acc_balanced"] == 0.75
