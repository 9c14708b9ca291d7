"""Dataset Quantization (Zhou et al., ICCV 2023). https://arxiv.org/abs/2308.10524

Rule. Features f(x) of a frozen extractor, cosine similarity S. Per class, K bins are built one after
the other; bin k is filled greedily from the pool U_k = D_c \\ (B_1 ∪ … ∪ B_{k−1}) by the GraphCut gain

  g(x | B_k) = λ · Σ_{p ∈ U_k} S(x, p) − 2 · Σ_{s ∈ B_k} S(x, s),        x ∈ U_k \\ B_k,

so early bins hold dense, representative examples and later bins diverse ones. The kept set samples a
fraction ρ uniformly from *every* bin and concatenates them (|kept| = ρ·n). Any architecture is then
trained on the kept set (architecture transfer). A single GraphCut selection (one bin of size ρ·n_c
over the whole class, the plain submodular coreset) is the paper's main contrast.

Defaults and their source. K = 10 bins, λ = 1, uniform per-bin sampling (the official
magic-research/Dataset_Quantization: `GraphCut.calc_gain` = −2·ΣS(selected, x) + λ·colsum,
`quantize_bin.py`, README "10 bins").

Deviations. Features are PCA-32 of the pixels (the paper: a pretrained ViT/ResNet; the digest's
toy allows PCA-32). Bins are built per class and their sizes differ by at most one (the pool is split
evenly); the per-class budget round(ρ·n_c) is spread over the bins as evenly as possible (the extra
ones to bins drawn by the seed). The optional pixel-quantisation step (GradCAM patch dropping + MAE
reconstruction) is not implemented: on 8x8 digits it is cosmetic (the digest marks it optional).
"""

from __future__ import annotations

import numpy as np

from paperjax import selection
from paperjax.method import Method, PaperInfo

PAPER = PaperInfo(slug="dataset_quantization", title="Dataset Quantization",
                  authors="Zhou, Wang, Zhang, Wang, Yao, Wang, Chen, Jiang, Wang, Feng", year=2023,
                  url="https://arxiv.org/abs/2308.10524", family="dataset-distillation/pruning/selection")
KINDS = ("dq", "graphcut")


def cosine_similarity(f: np.ndarray) -> np.ndarray:
  f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
  return f @ f.T


def graphcut_greedy(S: np.ndarray, pool: np.ndarray, size: int, lam: float = 1.0) -> np.ndarray:
  """Greedy GraphCut selection of `size` items from `pool` (indices into S), the colsum taken over the pool."""
  pool = np.asarray(pool, np.int64)
  gain = lam * S[np.ix_(pool, pool)].sum(axis=0)   # λ·Σ_{p∈U} S(x, p) for every x in U
  taken = np.zeros(len(pool), bool)
  chosen = []
  for _ in range(int(size)):
    j = int(np.argmax(np.where(taken, -np.inf, gain)))
    taken[j] = True
    chosen.append(pool[j])
    gain = gain - 2.0 * S[pool, pool[j]]          # − 2·S(x, s) for the new member s
  return np.asarray(chosen, np.int64)


def bins(S: np.ndarray, members: np.ndarray, num_bins: int, lam: float = 1.0) -> list[np.ndarray]:
  """K disjoint bins covering `members`, bin k by GraphCut over what bins < k left."""
  sizes = [len(a) for a in np.array_split(np.arange(len(members)), num_bins)]
  rest, out = np.asarray(members, np.int64), []
  for size in sizes:
    b = graphcut_greedy(S, rest, size, lam)
    out.append(b)
    rest = np.setdiff1d(rest, b)
  return out


def sample_bins(bin_list: list[np.ndarray], budget: int, rng: np.random.Generator) -> np.ndarray:
  """`budget` items spread as evenly as the bins allow, uniformly at random inside each bin."""
  K = len(bin_list)
  per = np.full(K, budget // K)
  per[rng.choice(K, budget % K, replace=False)] += 1
  per = np.minimum(per, [len(b) for b in bin_list])
  return np.concatenate([rng.choice(b, n, replace=False) for b, n in zip(bin_list, per)])


def pca_features(images: np.ndarray, dim: int, seed: int) -> np.ndarray:
  return selection.pixel_pca(images, dim, seed)


def select(features: np.ndarray, labels: np.ndarray, fraction: float, num_bins: int, seed: int,
           kind: str = "dq", lam: float = 1.0) -> np.ndarray:
  """DQ (bins → uniform per-bin sample) or a single GraphCut coreset, per class, sorted indices."""
  S = cosine_similarity(features)
  rng = np.random.default_rng([int(seed), 62])
  kept = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    budget = max(1, int(round(fraction * len(members))))
    if kind == "dq":
      kept.append(sample_bins(bins(S, members, num_bins, lam), budget, rng))
    else:
      kept.append(graphcut_greedy(S, members, budget, lam))
  return np.sort(np.concatenate(kept))


def make(config, ctx) -> Method:
  s = config.selection
  kind = str(s.kind)
  if kind not in KINDS + selection.BASELINES:
    raise ValueError(f"selection.kind={kind!r} is unknown for dataset_quantization; use one of "
                     f"{KINDS + selection.BASELINES}.")
  dq = config.dq

  def sampler_for(n, arrays):
    feats = pca_features(arrays["image"], int(dq.feature_dim), int(s.seed))
    idx = select(feats, arrays["label"], float(s.fraction), int(dq.num_bins), int(s.seed), kind, float(dq.lam))
    return lambda r: idx

  return selection.classifier_method(config, ctx, sampler_for=sampler_for)
