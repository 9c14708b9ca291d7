"""Selectivity Drives Productivity: Efficient Dataset Pruning for Enhanced Transfer Learning
(Zhang et al., NeurIPS 2023). https://arxiv.org/abs/2310.08782

Rule (prune whole source classes before pretraining, guided by the target's training images X_T):
  LM (label mapping, supervised pretraining): a surrogate f_s trained on the full source predicts
     every target image; h_c = #{x ∈ X_T : argmax f_s(x) = c}; keep the top-k source classes by h_c.
  FM (feature mapping, self-supervised pretraining): source classes (or clusters) c with mean
     surrogate feature μ_c; every target image votes for argmin_c ‖f(x) − μ_c‖₂; keep the top-k by votes.
Then pretrain the target model on the kept classes only and fine-tune it on the target task.

Defaults and their source. Surrogate = a network trained on the full source; top-k by the vote
histogram (official OPTML-Group/DP4TL `lm_selection_for_imagenet.py`: `prediction_distribution` by
argmax over the source classes, `topk(retain_class_num)`; `fm_selection_for_imagenet.py`: class-mean
features, nearest-mean voting). The official FM script indexes `distance_score[i]` (the target sample's
position) where the class key is meant; here the intended nearest-mean rule is implemented.
Pruned pretraining keeps the number of epochs (so steps, and FLOPs, scale with the kept fraction).

Deviations. Toy source: digits split A (×3 with ±1 px shifts) as 10 classes + 30 procedural glyph
classes (`GlyphSource`); target: digits split B with 10% labels; MLPs instead of ResNets (2 CPU
cores); FM is implemented and tested but the toy claim runs LM (the paper's supervised setting).
"""

from __future__ import annotations

import numpy as np

from paperjax import selection
from paperjax.data import sources
from paperjax.method import Method, PaperInfo

PAPER = PaperInfo(slug="dp4tl", title="Selectivity Drives Productivity: Efficient Dataset Pruning for Enhanced "
                  "Transfer Learning", authors="Zhang, Jia, Zhang, Mehta, Liu, Liu", year=2023,
                  url="https://arxiv.org/abs/2310.08782", family="dataset-distillation/pruning/selection")
KINDS = ("lm", "fm", "random_classes")
NUM_DIGITS, NUM_GLYPHS = 10, 30


# --------------------------------------------------------------------------- the rule


def lm_votes(source_logits_T: np.ndarray, num_source_classes: int) -> np.ndarray:
  """h_c = number of target images the surrogate predicts as source class c."""
  return np.bincount(source_logits_T.argmax(-1), minlength=num_source_classes)


def fm_votes(target_feats: np.ndarray, source_feats: np.ndarray, source_labels: np.ndarray,
             num_source_classes: int) -> np.ndarray:
  """Each target feature votes for the source class whose mean feature μ_c is nearest (L2)."""
  mu = np.stack([source_feats[source_labels == c].mean(0) for c in range(num_source_classes)])
  d = ((target_feats[:, None, :] - mu[None]) ** 2).sum(-1)
  return np.bincount(d.argmin(1), minlength=num_source_classes)


def top_classes(votes: np.ndarray, k: int) -> np.ndarray:
  """The k classes with the most votes (ties: the smaller class id), sorted."""
  return np.sort(np.argsort(-votes, kind="stable")[:int(k)])


def examples_of(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
  return np.flatnonzero(np.isin(labels, classes))


# --------------------------------------------------------------------------- toy data


class GlyphSource:
  """Procedural 8x8 glyph classes: a fixed random stroke template per class, shifted ±1 px and noised."""

  def __init__(self, num_classes: int, per_class: int, seed: int, template_seed: int = 0):
    rng = np.random.default_rng([template_seed, 52])  # the classes; `seed` draws the examples
    t = (rng.uniform(size=(num_classes, 8, 8)) < 0.3).astype(np.float32)
    self.templates = np.clip(t + 0.5 * np.roll(t, 1, axis=2), 0, 1)
    self.n, self.per_class, self.seed = num_classes * per_class, per_class, seed

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    i = int(i) % self.n
    c = i // self.per_class
    rng = np.random.default_rng([self.seed, 53, i])
    img = np.roll(self.templates[c], tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
    img = np.clip(img + rng.normal(0, 0.1, img.shape), 0, 1).astype(np.float32)[..., None]
    return {"image": img, "label": np.int32(c)}


class _Shifted:
  """Digits with `copies` versions of each image: the original and ±1 px shifted ones (seeded)."""

  def __init__(self, base, idx, copies: int, seed: int):
    self.base, self.idx, self.copies, self.seed = base, np.asarray(idx), copies, seed

  def __len__(self):
    return len(self.idx) * self.copies

  def __getitem__(self, i):
    j, k = divmod(int(i), self.copies)
    rec = self.base[int(self.idx[j])]
    img = np.asarray(rec["image"], np.float32)
    if k:
      img = np.roll(img, tuple(np.random.default_rng([self.seed, 54, int(i)]).integers(-1, 2, 2)), axis=(0, 1))
    return {"image": img, "label": np.int32(rec["label"])}


class _Concat:
  def __init__(self, parts, offsets):
    self.parts, self.offsets = parts, offsets
    self.ends = np.cumsum([len(p) for p in parts])

  def __len__(self):
    return int(self.ends[-1])

  def __getitem__(self, i):
    i = int(i)
    k = int(np.searchsorted(self.ends, i, side="right"))
    rec = dict(self.parts[k][i - (int(self.ends[k - 1]) if k else 0)])
    rec["label"] = np.int32(rec["label"] + self.offsets[k])
    return rec


def digit_splits(seed: int = 0):
  """Digits train split into A (source) and B (target), stratified halves, fixed by `seed`."""
  train = sources.records("builtin:digits", "train")
  labels = np.asarray([int(train[i]["label"]) for i in range(len(train))])
  rng = np.random.default_rng([seed, 55])
  a = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: (labels == c).sum() // 2] for c in range(10)])
  return train, np.sort(a), np.setdiff1d(np.arange(len(labels)), a), labels


def source_fn(config, split):
  """`dp4tl.role`: "source" (40 classes: digits A ×3 + 30 glyph classes) or "target" (digits B with
  `dp4tl.target_label_fraction` of its labels per class; its test split is digits' validation)."""
  d = config.dp4tl
  if d.get("source_spec"):  # real datasets: the source and target are tfds specs, nothing procedural
    from paperjax import data as data_lib  # pylint: disable=g-import-not-at-top
    spec = d.target_spec if d.role == "target" else d.source_spec
    dcfg = config.data.copy_and_resolve_references()
    dcfg.source = spec
    return data_lib.build_source(dcfg, split)
  if d.role == "target":
    if split != "train":
      return sources.records("builtin:digits", "validation")
    train, _, b, labels = digit_splits()
    rng = np.random.default_rng([0, 56])
    keep = np.concatenate([rng.permutation(b[labels[b] == c])[:max(1, int(d.target_label_fraction * (labels[b] == c).sum()))]
                           for c in range(10)])
    return _Shifted(train, np.sort(keep), 1, 0)
  if split != "train":  # held-out source: digits validation + fresh glyphs
    return _Concat([sources.records("builtin:digits", "validation"), GlyphSource(NUM_GLYPHS, 10, 1)], [0, NUM_DIGITS])
  train, a, _, _ = digit_splits()
  return _Concat([_Shifted(train, a, 3, 0), GlyphSource(NUM_GLYPHS, int(d.glyphs_per_class), 0)], [0, NUM_DIGITS])


# --------------------------------------------------------------------------- the method


def make(config, ctx) -> Method:
  s, d = config.selection, config.dp4tl
  kind = str(s.kind)
  if kind not in KINDS + selection.BASELINES:
    raise ValueError(f"selection.kind={kind!r} is unknown for dp4tl; use one of {KINDS + selection.BASELINES}.")
  C = NUM_DIGITS + NUM_GLYPHS

  def target_images():
    tcfg = config.copy_and_resolve_references()
    tcfg.dp4tl.role = "target"
    return selection.train_arrays(tcfg, source_fn=source_fn)[1]["image"]

  def from_proxy(proxy_params, model, arrays):
    """The surrogate (previous stage) votes with the target's train images; keep the top-k classes."""
    import jax  # pylint: disable=g-import-not-at-top
    k = int(d.keep_classes)
    if kind == "random_classes":
      classes = np.sort(np.random.default_rng([int(s.seed), 57]).choice(C, k, replace=False))
    else:
      apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
      xt = target_images()
      if kind == "lm":
        votes = lm_votes(selection.logits_of(apply, proxy_params, xt), C)
      else:  # fm: the surrogate's penultimate features (its logits are C-dim; features = hidden layer)
        feats = jax.jit(lambda p, x: jax.nn.relu(x.reshape(len(x), -1) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]))
        votes = fm_votes(selection.logits_of(feats, proxy_params, xt), selection.logits_of(feats, proxy_params, arrays["image"]),
                         arrays["label"], C)
      classes = top_classes(votes, k)
    return examples_of(arrays["label"], classes)

  if d.role == "target":
    return selection.classifier_method(config, ctx, source_fn=source_fn, keep_previous=True)
  return selection.classifier_method(config, ctx, source_fn=source_fn,
                                     from_proxy=from_proxy if kind in KINDS else None)
