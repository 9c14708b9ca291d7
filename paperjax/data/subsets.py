"""Label-budget, long-tail and labelled/unlabelled views of a record source (train split only).

`config.data.subset` (optional; absent = the whole split) picks which train examples a run sees:

  labels_per_class  k > 0: a stratified subset with k labelled examples per class (UDA's 4,000 labels)
  label_fraction    f > 0: ⌊f·n_c⌋ (at least 1) per class (SimCLRv2's 1% / 10%)
  long_tail_n_max, long_tail_rho   the exponential profile n_c = ⌊n_max · ρ^(−c/(C−1))⌋
                    (Cao et al.'s / Yang & Xu's `get_img_num_per_cls`, class 0 the head)
  unlabeled         "none" | "rest": every train example outside the labelled subset |
                    "long_tail": size_factor·|D_L| examples outside it with their own ratio ρ_U
                    (Yang & Xu's `get_img_num_per_cls_unlabeled`: ⌊(total//C)·ρ_U^(−c/(C−1))⌋,
                    rescaled to the total)
  unlabeled_size_factor, unlabeled_rho
  view              what each record is:
                    labeled    a labelled example
                    unlabeled  {"image"} of the unlabelled pool (labels dropped: nothing can leak)
                    images     {"image"} of labelled ∪ unlabelled (self-supervised pretraining)
                    union      labelled ∪ unlabelled, unlabelled ones with label −1 (pseudo-labelling)
                    semi       a labelled example plus `unlabeled_ratio` unlabelled images under
                               "unlabeled_image" [r, H, W, C] (UDA's two-stream batches)
  seed              which examples are picked (independent of the training seed)
  with_index        add "index": the example's position in the view (memory banks, LOOK)

Selection is deterministic given (seed, source) and never depends on the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VIEWS = ("labeled", "unlabeled", "images", "union", "semi")
DEFAULTS = dict(labels_per_class=0, label_fraction=0.0, long_tail_n_max=0, long_tail_rho=0.0,
                unlabeled="none", unlabeled_size_factor=5, unlabeled_rho=1.0, unlabeled_ratio=0,
                view="labeled", seed=0, with_index=False)


def long_tail_counts(n_max: int, rho: float, num_classes: int) -> list[int]:
  """n_c = ⌊n_max · ρ^(−c/(C−1))⌋ for c = 0..C−1 (class 0 has n_max, class C−1 has n_max/ρ)."""
  if rho < 1:
    raise ValueError(f"long_tail_rho={rho} must be >= 1 (the head-to-tail ratio).")
  return [int(n_max * (1.0 / rho) ** (c / (num_classes - 1.0))) for c in range(num_classes)]


def unlabeled_long_tail_counts(labeled_total: int, size_factor: float, rho_u: float, num_classes: int) -> list[int]:
  """Yang & Xu's unlabelled profile: total = size_factor·|D_L|, shaped by ρ_U, rescaled to the total."""
  total = int(labeled_total * size_factor)
  first = total // num_classes
  raw = [int(first * (1.0 / rho_u) ** (c / (num_classes - 1.0))) for c in range(num_classes)]
  factor = total / max(sum(raw), 1)
  return [int(n * factor) for n in raw]


def labels_of(source) -> np.ndarray:
  columns = getattr(source, "_columns", None)  # builtin tables: read the column, not every record
  if columns is not None and "label" in columns:
    return np.asarray(columns["label"], np.int64)
  return np.asarray([int(source[i]["label"]) for i in range(len(source))], np.int64)


def _take_per_class(labels, counts, exclude, rng, what: str) -> np.ndarray:
  picked = []
  for c, n in enumerate(counts):
    pool = np.setdiff1d(np.flatnonzero(labels == c), exclude)
    if n > len(pool):
      raise ValueError(f"data.subset asks for {n} {what} examples of class {c} but only {len(pool)} are left; "
                       "lower the counts (n_max, size factor, labels per class).")
    picked.append(rng.permutation(pool)[:n])
  return np.sort(np.concatenate(picked)) if picked else np.zeros((0,), np.int64)


def select(labels: np.ndarray, cfg: dict) -> tuple[np.ndarray, np.ndarray]:
  """(labelled indices, unlabelled indices) of a split with these labels, per the subset config."""
  cfg = {**DEFAULTS, **dict(cfg)}
  unknown = set(cfg) - set(DEFAULTS)
  if unknown:
    raise ValueError(f"data.subset has unknown field(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}.")
  rng = np.random.default_rng([int(cfg["seed"]), 7919])
  C = int(labels.max()) + 1
  per_class = [int((labels == c).sum()) for c in range(C)]
  chosen = [cfg["labels_per_class"] > 0, cfg["label_fraction"] > 0, cfg["long_tail_rho"] > 0]
  if sum(chosen) > 1:
    raise ValueError("data.subset: set only one of labels_per_class, label_fraction, long_tail_rho.")
  if cfg["labels_per_class"] > 0:
    counts = [int(cfg["labels_per_class"])] * C
  elif cfg["label_fraction"] > 0:
    counts = [max(1, int(cfg["label_fraction"] * n)) for n in per_class]
  elif cfg["long_tail_rho"] > 0:
    n_max = int(cfg["long_tail_n_max"]) or max(per_class)
    counts = long_tail_counts(n_max, float(cfg["long_tail_rho"]), C)
  else:
    counts = per_class
  labeled = _take_per_class(labels, counts, np.zeros((0,), np.int64), rng, "labelled")
  kind = cfg["unlabeled"]
  if kind == "none":
    unlabeled = np.zeros((0,), np.int64)
  elif kind == "rest":
    unlabeled = np.setdiff1d(np.arange(len(labels)), labeled)
  elif kind == "long_tail":
    u_counts = unlabeled_long_tail_counts(len(labeled), float(cfg["unlabeled_size_factor"]),
                                          float(cfg["unlabeled_rho"]), C)
    unlabeled = _take_per_class(labels, u_counts, labeled, rng, "unlabelled")
  else:
    raise ValueError(f"data.subset.unlabeled={kind!r} is unknown; use 'none', 'rest' or 'long_tail'.")
  return labeled, unlabeled


class _View(Sequence):
  def __init__(self, source, labeled, unlabeled, view: str, ratio: int, with_index: bool):
    self.source, self.labeled, self.unlabeled = source, labeled, unlabeled
    self.view, self.ratio, self.with_index = view, ratio, with_index
    if view in ("unlabeled", "semi") and len(unlabeled) == 0:
      raise ValueError(f"data.subset.view={view!r} needs unlabelled data; set data.subset.unlabeled to 'rest' or 'long_tail'.")
    if view == "semi" and ratio < 1:
      raise ValueError("data.subset.view='semi' needs data.subset.unlabeled_ratio >= 1 (unlabelled images per labelled one).")
    if view == "labeled":
      self._len = len(labeled)
    elif view == "unlabeled":
      self._len = len(unlabeled)
    elif view in ("images", "union"):
      self._len = len(labeled) + len(unlabeled)
    else:  # semi: every unlabelled image once per pass, labelled ones cycled
      self._len = max(len(labeled), -(-len(unlabeled) // ratio))
    if self._len == 0:
      raise ValueError("data.subset selects no examples; check its counts.")

  def __len__(self):
    return self._len

  def __getitem__(self, i: int) -> dict:
    i = int(i)
    if not -self._len <= i < self._len:
      raise IndexError(f"index {i} out of range for a source of {self._len} items")
    i %= self._len
    nl = len(self.labeled)
    if self.view == "labeled":
      rec = dict(self.source[int(self.labeled[i])])
    elif self.view == "unlabeled":
      rec = {"image": self.source[int(self.unlabeled[i])]["image"]}
    elif self.view == "images":
      j = self.labeled[i] if i < nl else self.unlabeled[i - nl]
      rec = {"image": self.source[int(j)]["image"]}
    elif self.view == "union":
      if i < nl:
        r = self.source[int(self.labeled[i])]
        rec = {"image": r["image"], "label": np.int32(r["label"])}
      else:
        rec = {"image": self.source[int(self.unlabeled[i - nl])]["image"], "label": np.int32(-1)}
    else:
      rec = dict(self.source[int(self.labeled[i % nl])])
      nu = len(self.unlabeled)
      rec["unlabeled_image"] = np.stack(
          [self.source[int(self.unlabeled[(i * self.ratio + j) % nu])]["image"] for j in range(self.ratio)])
    if self.with_index:
      rec["index"] = np.int32(i)
    return rec


def apply(source, cfg) -> Sequence:
  """The view of `source` (a train split of records with "image" and "label") that `cfg` asks for."""
  cfg = {**DEFAULTS, **dict(cfg)}
  if cfg["view"] not in VIEWS:
    raise ValueError(f"data.subset.view={cfg['view']!r} is unknown; use one of {VIEWS}.")
  trivial = (cfg["labels_per_class"] <= 0 and cfg["label_fraction"] <= 0 and cfg["long_tail_rho"] <= 0
             and cfg["unlabeled"] == "none" and cfg["view"] == "labeled")
  if trivial and not cfg["with_index"]:
    return source
  labels = labels_of(source)
  labeled, unlabeled = select(labels, cfg)
  return _View(source, labeled, unlabeled, cfg["view"], int(cfg["unlabeled_ratio"]), bool(cfg["with_index"]))


class WithIndex(Sequence):
  """Adds "index" (the position in the source) to each record (for the validation/eval side)."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    rec = dict(self.source[i])
    rec["index"] = np.int32(int(i) % len(self.source))
    return rec
