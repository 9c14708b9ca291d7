"""Effective pruning of web-scale datasets based on complexity of concept clusters (Abbas, Rusak,
Tirumala, Brendel, Chaudhuri, Morcos, ICLR 2024). https://arxiv.org/abs/2401.04578

Rule (Density-Based Pruning, DBP), on unit-norm embeddings x_i of the images:
  0. SemDeDup: inside each k-means cluster drop near-duplicates (cosine similarity > 1 − ε).
  1. Spherical k-means on the rest: clusters C_1..C_k, centroids c_j.
  2. d_intra_j = mean_{i∈C_j} (1 − x_i·c_j);  d_inter_j = mean over the m nearest other centroids of
     (1 − c_j·c_l);  complexity C_j = d_inter_j · d_intra_j.
  3. p = softmax(C / τ).
  4. Quotas from the QP   min_x ½‖x‖² − (N_keep·p)ᵀx   s.t.  Σ_j x_j = N_keep,  lb_j ≤ x_j ≤ |C_j|,
     lb_j = min(⌊N_keep/k · β⌋, |C_j| − 1)  (cluster-balance ratio β = 0.5); without active bounds
     x = N_keep·p.
  5. Inside each cluster keep its x_j least prototypical members (largest distance to the centroid,
     "hard"); then train CLIP on the kept set.
The baseline SSP-style pruning (Sorscher et al.) is the same procedure with uniform p ("uniform"
density: equal quotas), keeping the hard examples; plus random pruning and the full data.

Defaults and their source (official `amro-kamal/effective_pruning`): τ = 0.5 (`prune.py --temperature`),
β = 0.5 (`--cls-bal-ratio`), m = 20 nearest centroids (`compute_centroid_distances.py --num_NNs`),
keep "hard", QP solved with OSQP then `np.rint`.

Deviations. The QP is solved with SciPy (SLSQP; the problem is a 1-D water-filling, tested against
its closed form) instead of OSQP, and its solution is rounded by largest remainders (never above a
cluster's size) so the kept set has exactly N_keep examples (the official `rint` can miss by a few).
Embeddings: pixel PCA-32 (`selection.pixel_pca`) instead of a distilled DINOv2; k = 40 (paper: 500 on
LAION-DeDup-280M, 100 on DataComp medium). SemDeDup uses the same clusters as DBP's k-means run on
the full pool; DBP then re-clusters the deduplicated set. Toy pool (`toy_pool`): `synthetic:shapes`
records of three kinds — varied records (every seen shape × colour × size × position), records of
8 over-represented concepts (low complexity: many samples of few concepts), and planted near-copies
of varied records (pixel noise 0.003) that SemDeDup should remove.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import losses_contrastive as lc
from paperjax import selection
from paperjax.data import shapes
from paperjax.method import Method, PaperInfo
from paperjax.papers.clip import method as clip

PAPER = PaperInfo(slug="density_pruning", title="Effective pruning of web-scale datasets based on complexity of "
                  "concept clusters", authors="Abbas, Rusak, Tirumala, Brendel, Chaudhuri, Morcos", year=2024,
                  url="https://arxiv.org/abs/2401.04578", family="dataset-distillation/pruning/selection")
KINDS = ("dbp", "ssp", "random", "full")


# --------------------------------------------------------------------------- the rule


def cluster_complexity(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray, num_neighbors: int = 20):
  """(d_intra, d_inter, C = d_inter·d_intra) per cluster, cosine distances on unit-norm rows. A cluster
  without members gets the mean complexity of the others (official: NaNs → nanmean)."""
  k = len(centroids)
  cos = np.asarray(x, np.float64) @ np.asarray(centroids, np.float64).T
  d_intra = np.array([np.mean(1.0 - cos[assign == j, j]) if np.any(assign == j) else np.nan for j in range(k)])
  cc = np.asarray(centroids, np.float64) @ np.asarray(centroids, np.float64).T
  np.fill_diagonal(cc, -np.inf)           # exclude the centroid itself
  m = int(min(num_neighbors, k - 1))
  nearest = -np.sort(-cc, axis=1)[:, :m]  # the m most similar other centroids
  d_inter = np.mean(1.0 - nearest, axis=1)
  c = d_inter * d_intra
  c = np.where(np.isnan(c), np.nanmean(c), c)
  return d_intra, d_inter, c


def softmax(c: np.ndarray, tau: float) -> np.ndarray:
  z = np.asarray(c, np.float64) / float(tau)
  e = np.exp(z - z.max())
  return e / e.sum()


def quota_bounds(sizes: np.ndarray, n_keep: int, balance: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
  """lb_j = min(⌊N_keep/k·β⌋, |C_j| − 1) (β = 0: 1, as the official code), ub_j = |C_j|."""
  sizes = np.asarray(sizes, np.float64)
  base = int(n_keep / len(sizes) * balance) if balance > 0 else 1
  return np.minimum(base, sizes - 1), sizes


def qp_quotas(p: np.ndarray, sizes: np.ndarray, n_keep: int, balance: float = 0.5) -> np.ndarray:
  """The paper's QP, min ½‖x‖² − (N_keep·p)ᵀx s.t. Σx = N_keep, lb ≤ x ≤ ub, by SciPy (continuous x)."""
  from scipy import optimize  # pylint: disable=g-import-not-at-top
  p = np.asarray(p, np.float64)
  lb, ub = quota_bounds(sizes, n_keep, balance)
  if n_keep > ub.sum():
    raise ValueError(f"The pruning budget {n_keep} exceeds the {int(ub.sum())} examples left; lower the fraction kept.")
  q = float(n_keep) * p
  x0 = np.clip(q, lb, ub)
  res = optimize.minimize(lambda x: 0.5 * x @ x - q @ x, x0, jac=lambda x: x - q, method="SLSQP",
                          bounds=list(zip(lb, ub)),
                          constraints=[{"type": "eq", "fun": lambda x: x.sum() - n_keep, "jac": lambda x: np.ones_like(x)}],
                          options={"ftol": 1e-12, "maxiter": 500})
  return np.clip(res.x, lb, ub)


def water_fill(p: np.ndarray, sizes: np.ndarray, n_keep: int, balance: float = 0.5) -> np.ndarray:
  """The QP's closed form: x_j = clip(N_keep·p_j + ν, lb_j, ub_j) with ν such that Σx = N_keep
  (KKT of a separable quadratic with one equality), ν by bisection."""
  lb, ub = quota_bounds(sizes, n_keep, balance)
  q = float(n_keep) * np.asarray(p, np.float64)
  lo, hi = float((lb - q).min()) - 1, float((ub - q).max()) + 1
  for _ in range(200):
    nu = 0.5 * (lo + hi)
    lo, hi = (nu, hi) if np.clip(q + nu, lb, ub).sum() < n_keep else (lo, nu)
  return np.clip(q + 0.5 * (lo + hi), lb, ub)


def integer_quotas(x: np.ndarray, sizes: np.ndarray, n_keep: int) -> np.ndarray:
  """Integers summing to N_keep, each within [⌊x_j⌋, |C_j|]: floors plus largest remainders."""
  sizes = np.asarray(sizes, np.int64)
  n = np.minimum(np.floor(np.asarray(x) + 1e-9).astype(np.int64), sizes)
  rem = np.asarray(x) - n
  for j in np.argsort(-rem, kind="stable"):
    if n.sum() >= n_keep:
      break
    if n[j] < sizes[j]:
      n[j] += 1
  while n.sum() < n_keep:  # rounding could not place everything in the remainder pass
    j = int(np.argmax(sizes - n))
    n[j] += 1
  return n


def keep_in_clusters(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray, quotas: np.ndarray,
                     which: str = "hard", seed: int = 0) -> np.ndarray:
  """Each cluster's quota: its least prototypical members ("hard": lowest cosine to the centroid),
  its most prototypical ("easy"), or random ones."""
  out, rng = [], np.random.default_rng([int(seed), 7601])
  for j, n in enumerate(quotas):
    idx = np.flatnonzero(assign == j)
    if which == "random":
      out.append(rng.choice(idx, int(n), replace=False))
      continue
    cos = x[idx] @ centroids[j]
    order = np.argsort(cos if which == "hard" else -cos, kind="stable")
    out.append(idx[order[:int(n)]])
  return np.sort(np.concatenate(out)).astype(np.int64)


def select(x: np.ndarray, n_keep: int, *, k: int, density: str = "dinter*dintra", tau: float = 0.5,
           balance: float = 0.5, num_neighbors: int = 20, eps: float = 0.001, which: str = "hard",
           seed: int = 0) -> dict:
  """SemDeDup → spherical k-means → quotas (complexity softmax or uniform) → keep per cluster.
  Returns {indices, dedup_keep, assign (of the deduplicated rows), complexity, p, quotas}."""
  x = np.asarray(x, np.float64)
  x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  c0, a0 = selection.kmeans(x, k, seed, spherical=True)
  dedup = selection.semdedup(x, c0, a0, eps)
  rows = np.flatnonzero(dedup)
  c, a = selection.kmeans(x[rows], k, seed, spherical=True)
  sizes = np.bincount(a, minlength=k)
  _, _, comp = cluster_complexity(x[rows], c, a, num_neighbors)
  if density == "dinter*dintra":
    p = softmax(comp, tau)
  elif density == "uniform":
    p = np.full(k, 1.0 / k)
  else:
    raise ValueError(f"density_pruning.density={density!r} is unknown; use 'dinter*dintra' or 'uniform'.")
  quotas = integer_quotas(qp_quotas(p, sizes, n_keep, balance), sizes, n_keep)
  kept = keep_in_clusters(x[rows], c, a, quotas, which, seed)
  return {"indices": rows[kept], "dedup_keep": dedup, "assign": a, "complexity": comp, "p": p, "quotas": quotas}


# --------------------------------------------------------------------------- toy data

# Over-represented concepts (shape, colour, size, position); none is a held-out shape × colour pair.
SIMPLE_CONCEPTS = ((1, 0, 1, 0), (1, 2, 1, 1), (3, 1, 0, 2), (0, 1, 1, 3), (2, 0, 0, 1), (2, 3, 1, 0),
                   (3, 2, 1, 3), (0, 3, 0, 2))


class ArrayRecords:
  """Records of `synthetic:shapes` held in arrays (image and attributes), indexable like a source."""

  def __init__(self, arrays: dict):
    self.arrays = arrays

  def __len__(self):
    return len(self.arrays["image"])

  def __getitem__(self, i):
    return {k: v[int(i)] for k, v in self.arrays.items()}


@functools.lru_cache(maxsize=4)
def toy_pool(n_varied: int, n_simple: int, n_dups: int, seed: int = 0, size: int = 16) -> tuple[ArrayRecords, np.ndarray]:
  """(records, kind) with kind 0 = varied, 1 = over-represented concept, 2 = planted near-copy;
  `size` × `size` images."""
  train = shapes.Shapes("train", size)
  recs = [train[i] for i in range(n_varied)]
  for i in range(n_simple):
    s, c, z, pos = SIMPLE_CONCEPTS[i % len(SIMPLE_CONCEPTS)]
    img = shapes.render(s, z, pos, shapes._RGB[c], size, np.random.default_rng([int(seed), 7602, i]))  # pylint: disable=protected-access
    recs.append({"image": img, "label": np.int32(s), "shape": np.int32(s), "colour": np.int32(c),
                 "size": np.int32(z), "position": np.int32(pos), "held_out": np.bool_(False)})
  rng = np.random.default_rng([int(seed), 7603])
  for j in rng.choice(n_varied, n_dups, replace=True):
    rec = dict(recs[int(j)])
    rec["image"] = np.clip(rec["image"] + rng.normal(0, 0.003, rec["image"].shape), 0, 1).astype(np.float32)
    recs.append(rec)
  arrays = {k: np.stack([r[k] for r in recs]) for k in recs[0]}
  kind = np.repeat([0, 1, 2], [n_varied, n_simple, n_dups])
  return ArrayRecords(arrays), kind


def pool_for(config):
  d = config.density_pruning
  return toy_pool(int(d.n_varied), int(d.n_simple), int(d.n_dups), int(d.pool_seed), int(config.clip.image_size))


def selection_for(config, records) -> np.ndarray:
  """The kept indices of `records` for `selection.kind`."""
  s, d = config.selection, config.density_pruning
  kind, n = str(s.kind), len(records)
  if kind == "full":
    return np.arange(n)
  n_keep = selection.subset_size(n, s.fraction)
  if kind == "random":
    return selection.random_subset(n, n_keep, int(s.seed))
  x = selection.pixel_pca(records.arrays["image"], int(d.embed_dim), int(s.seed))
  out = select(x, n_keep, k=int(d.clusters), density="dinter*dintra" if kind == "dbp" else "uniform",
               tau=float(d.temperature), balance=float(d.balance), num_neighbors=int(d.num_neighbors),
               eps=float(d.eps), which=str(d.which), seed=int(s.seed))
  return out["indices"]


# --------------------------------------------------------------------------- the method


def make(config, ctx) -> Method:
  kind = str(config.selection.kind)
  if kind not in KINDS:
    raise ValueError(f"selection.kind={kind!r} is unknown for density_pruning; use one of {KINDS}.")
  model, tokenize = clip.build(config)

  def loss(params, batch, rng):
    del rng
    img, txt, raw = model.apply({"params": params}, batch["image"], batch["text"])
    scale = clip.logit_scale(raw)
    return lc.clip_loss(img, txt, scale), {"logit_scale": scale}

  image_fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=clip.CLIPModel.encode_image))
  text_fn = jax.jit(lambda p, t: model.apply({"params": p}, t, method=clip.CLIPModel.encode_text))
  evaluators = [] if ctx.abstract else clip.shapes_evaluators(config, image_fn, text_fn, tokenize)
  example_fn = clip.example_fn_for(tokenize, config.clip.caption_field, int(config.clip.image_size))

  def make_iterator(ctx_):
    records, kinds = pool_for(config)
    t = time.perf_counter()
    idx = selection_for(config, records)
    stream = selection.SubsetStream(records, batch_size=int(config.data.batch_size), seed=int(config.seed),
                                    indices=idx, selection_s=time.perf_counter() - t, example_fn=example_fn,
                                    process_index=ctx_.process_index, process_count=ctx_.process_count)
    stream.labels = kinds  # the summary's class_counts: how many varied / over-represented / near-copies kept
    return stream

  return Method(
      init=lambda rng, ex: model.init(rng, jnp.asarray(ex["image"]), jnp.asarray(ex["text"]))["params"],
      loss=loss, evaluators=evaluators, make_iterator=make_iterator, model=model,
      summary_keys=("zeroshot_pair_unmasked", "zeroshot_shape_all", "zeroshot_colour_all", "retrieval/i2t_R@1"))
