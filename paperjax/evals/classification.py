"""Classification evaluators for vision papers: accuracy, linear probe, kNN.

Each is an `Evaluator` (`name`, `__call__(params, ctx) -> {metric: float}`) over fixed numpy arrays
loaded once (`load_arrays`), applied in fixed-size batches (`batched_apply`, padded, so one
compilation serves every batch and the mesh's batch axis always divides it).

  Accuracy      argmax logits == label; optional balanced (mean per-class recall) and per-class
  LinearProbe   closed-form ridge regression on standardised frozen features, one-hot targets
                (big_vision's few-shot evaluator does the same); reports test accuracy
  KNN           weighted k-nearest-neighbour vote with cosine similarity, weights exp(s/T)
                (Wu et al. 2018's monitor, used by SimCLR/DINO papers), k=20, T=0.07 by default
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import numpy as np

from paperjax import sharding


def load_arrays(source, fields: Sequence[str] = ("image", "label"), max_examples: int = 0,
                transform: Callable | None = None) -> dict[str, np.ndarray]:
  """The first `max_examples` records of `source` (0: all) as stacked numpy arrays."""
  n = len(source) if not max_examples else min(int(max_examples), len(source))
  recs = [source[i] for i in range(n)]
  if transform is not None:
    recs = [transform(r) for r in recs]
  missing = [f for f in fields if f not in recs[0]]
  if missing:
    raise ValueError(f"The evaluation data has no field(s) {missing} (it has {sorted(recs[0])}); "
                     "evaluate on a labelled split.")
  return {f: np.stack([np.asarray(r[f]) for r in recs]) for f in fields}


def batched_apply(fn: Callable, params, x: np.ndarray, batch_size: int, ctx=None) -> np.ndarray:
  """fn(params, x_batch) over x in batches of `batch_size` (the last one padded), as one numpy array."""
  n = len(x)
  outs = []
  for start in range(0, n, batch_size):
    xb = x[start:start + batch_size]
    pad = batch_size - len(xb)
    if pad:
      xb = np.concatenate([xb, np.repeat(xb[-1:], pad, axis=0)])
    if ctx is not None and ctx.mesh is not None:
      xb = sharding.host_to_global({"x": xb}, ctx.mesh, ctx.rules)["x"]
    outs.append(fn(params, xb))
  outs = jax.device_get(outs)
  return np.concatenate([np.asarray(o) for o in outs])[:n]


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> tuple[float, np.ndarray]:
  C = int(num_classes or labels.max() + 1)
  per_class = np.array([np.mean(pred[labels == c] == c) if np.any(labels == c) else np.nan for c in range(C)])
  return float(np.nanmean(per_class)), per_class


@dataclasses.dataclass
class Accuracy:
  """`logits_fn(params, images) -> [B, K]` jitted; reports `<name>` (and `<name>_balanced`, per class)."""
  name: str
  data: dict
  logits_fn: Callable
  batch_size: int = 256
  per_class: bool = False

  def predictions(self, params, ctx=None) -> np.ndarray:
    return batched_apply(self.logits_fn, params, self.data["image"], self.batch_size, ctx).argmax(-1)

  def __call__(self, params, ctx) -> dict[str, float]:
    pred, labels = self.predictions(params, ctx), self.data["label"]
    out = {self.name: float(np.mean(pred == labels))}
    if self.per_class:
      bal, per = balanced_accuracy(pred, labels)
      out[f"{self.name}_balanced"] = bal
      out.update({f"{self.name}/class{c}": float(a) for c, a in enumerate(per)})
    return out


def ridge_probe(train_x, train_y, test_x, num_classes: int, l2: float = 1e-3) -> np.ndarray:
  """Closed-form ridge regression onto one-hot targets (with bias): predicted classes of test_x.

  W = (XᵀX + λ·n·I)⁻¹ XᵀY on train features standardised by their own mean/std, in float64."""
  x = np.asarray(train_x, np.float64)
  mu, sd = x.mean(0), x.std(0) + 1e-6
  x = (x - mu) / sd
  xt = (np.asarray(test_x, np.float64) - mu) / sd
  x = np.concatenate([x, np.ones((len(x), 1))], 1)
  xt = np.concatenate([xt, np.ones((len(xt), 1))], 1)
  y = np.eye(num_classes)[np.asarray(train_y)]
  reg = l2 * len(x) * np.eye(x.shape[1])
  reg[-1, -1] = 0.0  # the bias is not regularised
  w = np.linalg.solve(x.T @ x + reg, x.T @ y)
  return (xt @ w).argmax(-1)


def _probe_data(ev, params, ctx):
  """Frozen features of the probe's train and test images, their labels, the number of classes."""
  ftr = batched_apply(ev.features_fn, params, ev.train["image"], ev.batch_size, ctx)
  fte = batched_apply(ev.features_fn, params, ev.test["image"], ev.batch_size, ctx)
  ytr, yte = ev.train[ev.label_field], ev.test[ev.label_field]
  return ftr, ytr, fte, yte, int(max(ytr.max(), yte.max()) + 1)


@dataclasses.dataclass
class LinearProbe:
  """Frozen features → ridge classifier fitted on `train`, accuracy on `test`."""
  name: str
  train: dict
  test: dict
  features_fn: Callable
  l2: float = 1e-3
  batch_size: int = 256
  label_field: str = "label"

  def __call__(self, params, ctx) -> dict[str, float]:
    ftr, ytr, fte, yte, k = _probe_data(self, params, ctx)
    return {self.name: float(np.mean(ridge_probe(ftr, ytr, fte, k, self.l2) == yte))}


def knn_predict(train_f, train_y, test_f, num_classes: int, k: int = 20, temperature: float = 0.07) -> np.ndarray:
  a = train_f / (np.linalg.norm(train_f, axis=1, keepdims=True) + 1e-12)
  b = test_f / (np.linalg.norm(test_f, axis=1, keepdims=True) + 1e-12)
  sim = b @ a.T
  k = min(k, len(a))
  idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
  w = np.exp(np.take_along_axis(sim, idx, 1) / temperature)
  votes = np.zeros((len(b), num_classes))
  np.add.at(votes, (np.arange(len(b))[:, None], np.asarray(train_y)[idx]), w)
  return votes.argmax(-1)


@dataclasses.dataclass
class KNN:
  name: str
  train: dict
  test: dict
  features_fn: Callable
  k: int = 20
  temperature: float = 0.07
  batch_size: int = 256
  label_field: str = "label"

  def __call__(self, params, ctx) -> dict[str, float]:
    ftr, ytr, fte, yte, k = _probe_data(self, params, ctx)
    return {self.name: float(np.mean(knn_predict(ftr, ytr, fte, k, self.k, self.temperature) == yte))}
