"""Sample-quality evaluators for generative papers, and the PNG grids they write.

Metrics (numpy, on samples vs. held-out data):
  energy_distance(x, y)   2E‖X−Y‖ − E‖X−X'‖ − E‖Y−Y'‖ (Székely & Rizzo), ≥ 0, 0 iff equal laws
  mmd_rbf(x, y)           unbiased MMD² with a sum of RBF kernels at several bandwidths
  mode_coverage           for mixtures with known modes (synthetic:ring): modes that receive ≥ ¼ of their
                          fair share of samples, and the fraction of samples within 3 std of a mode
  frechet_distance        ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^{½}) (the FID formula)
  digits classifier       an MLP trained once on builtin:digits (train split, ~97% validation accuracy)
                          and cached on disk: `fd_digits` is the Fréchet distance of its penultimate
                          features — a small-scale stand-in for FID, comparable only within this
                          codebase — plus `confident` (share of samples it classifies with p ≥ 0.9)
                          and `class_entropy` (entropy of its predicted labels, ln 10 = all classes even)
  FID proper needs Inception-v3 weights, which do not ship offline: image sources other than digits
  report `fid_unavailable` (and the sample grid) instead of a number.

`SampleQuality` is the `Evaluator`: `sample_fn(params, rng, n)` draws n samples in data space; each
evaluation also writes `<workdir>/samples/<name>_step<k>.png` (an image grid, or a scatter of 2-D
points over the data) and reports its path as `<name>_png`, so the summary names it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------- distances


def _pdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
  d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.maximum(d2, 0.0))


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
  return float(2 * _pdist(x, y).mean() - _pdist(x, x).mean() - _pdist(y, y).mean())


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidths=(0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
  """Unbiased MMD² with k(a, b) = Σ_h exp(−‖a−b‖² / (2h²))."""
  k = lambda d: sum(np.exp(-d ** 2 / (2 * h * h)) for h in bandwidths)
  kxx, kyy, kxy = k(_pdist(x, x)), k(_pdist(y, y)), k(_pdist(x, y))
  n, m = len(x), len(y)
  return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())


def mode_coverage(samples: np.ndarray, centres: np.ndarray, std: float) -> dict[str, float]:
  d = _pdist(samples, centres)
  near = d.min(1) <= 3 * std
  counts = np.bincount(d.argmin(1)[near], minlength=len(centres))
  fair = len(samples) / len(centres)
  return {"modes_covered": float(np.sum(counts >= 0.25 * fair)), "within_3std": float(near.mean())}


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
  from scipy import linalg  # pylint: disable=g-import-not-at-top
  mu1, mu2 = f1.mean(0), f2.mean(0)
  s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
  with warnings.catch_warnings():  # a singular product is handled below; no `disp` (SciPy 1.18 removed it)
    warnings.simplefilter("ignore", linalg.LinAlgWarning)
    covmean = linalg.sqrtm(s1 @ s2)
  if not np.isfinite(covmean).all():
    eps = 1e-6 * np.eye(len(s1))
    covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
  covmean = np.real(covmean)
  return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


# --------------------------------------------------------------------------- digits classifier

_CLF_HIDDEN = (256, 128)


def _clf_apply(params, x):
  h = x.reshape(x.shape[0], -1)
  feats = None
  for i in range(len(_CLF_HIDDEN)):
    h = jax.nn.relu(h @ params[f"w{i}"] + params[f"b{i}"])
    feats = h
  return feats, h @ params["w_out"] + params["b_out"]


def _train_digits_classifier(seed: int = 0, steps: int = 600) -> dict[str, np.ndarray]:
  import optax  # pylint: disable=g-import-not-at-top
  from paperjax.data import sources  # pylint: disable=g-import-not-at-top
  tr = sources.records("builtin:digits", "train")
  x = np.stack([tr[i]["image"] for i in range(len(tr))]).reshape(len(tr), -1)
  y = np.array([tr[i]["label"] for i in range(len(tr))])
  keys = jax.random.split(jax.random.PRNGKey(seed), 8)
  dims = (64,) + _CLF_HIDDEN
  params = {}
  for i in range(len(_CLF_HIDDEN)):
    params[f"w{i}"] = jax.random.normal(keys[i], (dims[i], dims[i + 1])) * np.sqrt(2 / dims[i])
    params[f"b{i}"] = jnp.zeros(dims[i + 1])
  params["w_out"] = jax.random.normal(keys[-1], (dims[-1], 10)) * np.sqrt(1 / dims[-1])
  params["b_out"] = jnp.zeros(10)
  tx = optax.adamw(1e-3, weight_decay=1e-4)
  rng = np.random.default_rng(seed)

  @jax.jit
  def step(p, o, xb, yb, noise):
    # Light pixel noise: the classifier must not be thrown by samples that are slightly off-manifold.
    def loss(p):
      return optax.softmax_cross_entropy_with_integer_labels(_clf_apply(p, xb + noise)[1], yb).mean()
    g = jax.grad(loss)(p)
    u, o = tx.update(g, o, p)
    return optax.apply_updates(p, u), o

  opt = tx.init(params)
  for _ in range(steps):
    idx = rng.integers(0, len(x), 128)
    params, opt = step(params, opt, x[idx], y[idx], 0.05 * rng.standard_normal((128, 64)).astype(np.float32))
  return {k: np.asarray(v) for k, v in params.items()}


@functools.lru_cache(maxsize=1)
def digits_classifier() -> dict[str, np.ndarray]:
  """The cached digits classifier's parameters (trained on first use, ~2 s, then read from disk:
  $PAPERJAX_CACHE or ~/.cache/paperjax, file digits_classifier_v1.npz)."""
  root = os.environ.get("PAPERJAX_CACHE", os.path.expanduser("~/.cache/paperjax"))
  path = os.path.join(root, "digits_classifier_v1.npz")
  if os.path.exists(path):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  params = _train_digits_classifier()
  try:
    os.makedirs(root, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, **params)
    os.replace(tmp, path)
  except OSError as e:  # a read-only home: keep it in memory only
    logging.warning("Could not cache the digits classifier at %s (%s).", path, e)
  return params


@jax.jit
def _digits_features(params, x):
  return _clf_apply(params, x)


def digits_scores(samples: np.ndarray, reference: np.ndarray) -> dict[str, float]:
  """fd_digits, confident and class_entropy of digit samples [N, 8, 8, 1] in [0, 1]."""
  params = digits_classifier()
  fs, logits = jax.device_get(_digits_features(params, jnp.asarray(samples, jnp.float32).reshape(len(samples), -1)))
  fr, _ = jax.device_get(_digits_features(params, jnp.asarray(reference, jnp.float32).reshape(len(reference), -1)))
  p = jax.nn.softmax(logits)
  hist = np.bincount(np.asarray(p).argmax(1), minlength=10) / len(samples)
  ent = -float(np.sum(hist[hist > 0] * np.log(hist[hist > 0])))
  return {"fd_digits": frechet_distance(np.asarray(fs), np.asarray(fr)),
          "confident": float(np.mean(np.asarray(p).max(1) >= 0.9)), "class_entropy": ent}


# --------------------------------------------------------------------------- pictures


def save_image_grid(images: np.ndarray, path: str, cols: int = 8, scale: int = 4) -> str:
  """Images [N, H, W, C] with values in [0, 1] (clipped) as one PNG grid, each pixel `scale`² px."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  x = np.clip(np.asarray(images, np.float32), 0, 1)
  n, h, w, c = x.shape
  rows = -(-n // cols)
  grid = np.ones((rows * (h + 1) + 1, cols * (w + 1) + 1, c), np.float32)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + q * (w + 1):1 + q * (w + 1) + w] = x[i]
  img = (grid * 255).round().astype(np.uint8)
  img = img[..., 0] if c == 1 else img
  Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST).save(path)
  return path


def save_scatter(points: np.ndarray, path: str, reference: np.ndarray | None = None, size: int = 320,
                 lim: float = 2.0) -> str:
  """2-D points (blue) over reference data (light grey) in [−lim, lim]² as a PNG."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  img = Image.new("RGB", (size, size), "white")
  draw = ImageDraw.Draw(img)
  to_px = lambda p: ((p[0] + lim) / (2 * lim) * size, (lim - p[1]) / (2 * lim) * size)
  for pts, colour in ((reference, (200, 200, 200)), (points, (30, 80, 200))):
    if pts is None:
      continue
    for p in np.asarray(pts)[:, :2]:
      u, v = to_px(p)
      draw.point((u, v), fill=colour) if colour[0] == 200 else draw.ellipse((u - 1, v - 1, u + 1, v + 1), fill=colour)
  img.save(path)
  return path


# --------------------------------------------------------------------------- the evaluator


def reference(config) -> dict:
  """What `SampleQuality` compares with, from a generative config: the held-out split's first
  `eval.max_examples` examples (0: up to 2,000) in data space, the metric kind (points / digits / images)
  and the modes of a ring source; plus `num_samples` (eval.num_samples)."""
  from paperjax import diffusion  # pylint: disable=g-import-not-at-top
  from paperjax.data import points2d, sources  # pylint: disable=g-import-not-at-top
  src = config.data.source
  field, _ = diffusion.data_field(src)
  val = sources.records(src, config.data.get("eval_split", "validation"))
  n = min(int(config.eval.max_examples) or 2000, len(val))
  if field == "image":
    ref = np.stack([diffusion.to_float_image(val[i]) for i in range(n)])
    kind = "digits" if src == "builtin:digits" else "images"
  else:
    ref = np.stack([np.asarray(val[i][field], np.float32) for i in range(n)])
    kind = "points"
  return dict(reference=ref, kind=kind, modes=points2d.modes(src) if kind == "points" else None,
              num_samples=int(config.eval.num_samples))


@dataclasses.dataclass
class SampleQuality:
  """Draws `num_samples` with `sample_fn(params, rng, n)` (fixed rng: evaluations differ only by the
  parameters) and compares them with `reference` (held-out data, same shape per example).

  kind: "points" (energy distance, MMD, and mode coverage when `modes` = (centres, std) is given),
  "digits" (fd_digits, confident, class_entropy) or "images" (no offline metric: FID needs Inception
  weights). Metric names are prefixed with `name` + "_"."""
  name: str
  sample_fn: Callable
  reference: np.ndarray
  kind: str = "points"
  modes: tuple | None = None
  num_samples: int = 1000
  seed: int = 0
  png: bool = True
  last_samples: np.ndarray | None = None

  def __call__(self, params, ctx) -> dict:
    x = np.asarray(jax.device_get(self.sample_fn(params, jax.random.PRNGKey(self.seed), self.num_samples)))
    self.last_samples = x
    out: dict = {}
    if not np.isfinite(x).all():
      out["nonfinite_fraction"] = float(1 - np.isfinite(x.reshape(len(x), -1)).all(1).mean())
      x = np.nan_to_num(x, nan=0.0, posinf=1e3, neginf=-1e3)
    ref = self.reference[:max(self.num_samples, 500)]
    if self.kind == "points":
      out["energy_distance"] = energy_distance(x, ref)
      out["mmd"] = mmd_rbf(x, ref)
      if self.modes is not None:
        out.update(mode_coverage(x, *self.modes))
    elif self.kind == "digits":
      out.update(digits_scores(x, ref))
    elif self.kind == "images":
      out["fid_unavailable"] = ("FID needs Inception-v3 weights, which are not available offline; compare the "
                                "sample grids or compute FID on the saved samples elsewhere")
    else:
      raise ValueError(f"SampleQuality.kind={self.kind!r} is unknown; use 'points', 'digits' or 'images'.")
    out = {f"{self.name}_{k}": v for k, v in out.items()}
    workdir = getattr(ctx, "workdir", None)
    if self.png and workdir and getattr(ctx, "process_index", 0) == 0:
      os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
      path = os.path.join(workdir, "samples", f"{self.name}_step{int(getattr(ctx, 'step', 0))}.png")
      if self.kind == "points":
        save_scatter(x, path, reference=ref)
      else:
        save_image_grid(x[:64], path)
      out[f"{self.name}_png"] = path
    return out
