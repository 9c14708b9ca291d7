"""Step Law's fitting procedure (code/fit_tool.py of the official repository, re-derived):

  1. per (N, D) cell, the best smoothed loss L*; keep every (η, B) with L ≤ L* (1 + threshold)
     (the near-optimal plateau; 0.25% in the paper, wider at toy scale where seeds are noisier)
  2. least squares in log space: log η = a + b log N + c log D over the kept points, and
     log B = d + e log D (B in tokens)
  3. bootstrap: refit on `n_boot` resamples (with replacement) of the kept points; intervals are
     percentiles of the refits
Plus the paper's landscape observation: loss is convex in log η around the optimum (`convexity`).
Pure numpy; the rows are dicts {N, D, B, lr, loss}.
"""

from __future__ import annotations

import numpy as np


def near_optimal(rows: list[dict], threshold: float) -> list[dict]:
  best: dict = {}
  for r in rows:
    key = (r["N"], r["D"])
    best[key] = min(best.get(key, np.inf), r["loss"])
  return [r for r in rows if r["loss"] <= best[(r["N"], r["D"])] * (1 + threshold)]


def _lstsq(X: np.ndarray, y: np.ndarray) -> np.ndarray:
  return np.linalg.lstsq(X, y, rcond=None)[0]


def fit_law(points: list[dict]) -> dict[str, float]:
  """{lr_intercept, lr_coefN, lr_coefD, bs_intercept, bs_coefD} (natural logs) from near-optimal points."""
  logN = np.log([p["N"] for p in points])
  logD = np.log([p["D"] for p in points])
  one = np.ones_like(logN)
  a, b, c = _lstsq(np.stack([one, logN, logD], 1), np.log([p["lr"] for p in points]))
  d, e = _lstsq(np.stack([one, logD], 1), np.log([p["B"] for p in points]))
  return {"lr_intercept": float(a), "lr_coefN": float(b), "lr_coefD": float(c), "bs_intercept": float(d),
          "bs_coefD": float(e)}


def bootstrap(points: list[dict], n_boot: int = 1000, seed: int = 0, ci: float = 0.90) -> dict:
  """Point estimate, bootstrap median and the `ci` percentile interval of every coefficient."""
  rng = np.random.default_rng(seed)
  fits = []
  for _ in range(n_boot):
    sample = [points[i] for i in rng.integers(0, len(points), len(points))]
    # a resample with a single N or D cannot identify its coefficient: skip it (counted)
    if len({p["N"] for p in sample}) < 2 or len({p["D"] for p in sample}) < 2:
      continue
    fits.append(fit_law(sample))
  lo, hi = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
  out = {"estimate": fit_law(points), "n_boot": len(fits), "ci": ci}
  for k in out["estimate"]:
    v = np.array([f[k] for f in fits])
    out[k] = {"median": float(np.median(v)), "lo": float(np.percentile(v, lo)), "hi": float(np.percentile(v, hi))}
  return out


def predict(law: dict[str, float], N: float, D: float) -> dict[str, float]:
  return {"lr": float(np.exp(law["lr_intercept"] + law["lr_coefN"] * np.log(N) + law["lr_coefD"] * np.log(D))),
          "batch_tokens": float(np.exp(law["bs_intercept"] + law["bs_coefD"] * np.log(D)))}


def convexity(lrs, losses, window: int = 2) -> dict[str, float]:
  """A quadratic in log η fitted to the grid's best point and up to `window` neighbours on each side:
  its R², its curvature (> 0: convex) and whether the best point is interior (has neighbours on both sides)."""
  x, y = np.log(np.asarray(lrs, float)), np.asarray(losses, float)
  i = int(np.argmin(y))
  sl = slice(max(0, i - window), min(len(y), i + window + 1))
  xs, ys = x[sl], y[sl]
  if len(xs) < 3:
    return {"r2": float("nan"), "curvature": float("nan"), "interior": False}
  coef = np.polyfit(xs, ys, 2)
  pred = np.polyval(coef, xs)
  ss_res, ss_tot = float(np.sum((ys - pred) ** 2)), float(np.sum((ys - ys.mean()) ** 2))
  return {"r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0, "curvature": float(coef[0]),
          "interior": bool(0 < i < len(y) - 1)}
