"""Dataset Quantization's toy claim on digits: sampling every GraphCut bin beats one GraphCut coreset
and random selection at low keep ratios, on two architectures.

Per seed: select once (PCA-32 features, 10 bins per class), then train a fresh network for 200 steps
on the kept set. Variants: DQ, a single GraphCut coreset per class, static random and k-center (the
shared baselines). Keep 10% with an MLP and with a small GroupNorm CNN (architecture transfer: the
selection never sees either network), and 20% with the MLP. Test accuracy on the 360 held-out digits,
mean of 3 seeds. Coverage: the mean distance (PCA features) from every train example to its nearest
kept example, at 10%.

Checks (the digest's, fixed before the first run):
  (i)  at 10% and 20%, on every architecture run, DQ ≥ random + 1 pt and DQ ≥ single GraphCut + 1 pt;
  (ii) the single-GraphCut set covers the data worse than DQ's (larger mean nearest-kept distance).
The claim passes when both hold.
"""

from __future__ import annotations

import os

import numpy as np

from paperjax import claims

CLAIM = ("On digits at 10% and 20% keep ratios, Dataset Quantization's per-bin sampling beats random selection and a "
         "single GraphCut coreset by ≥1 point on an MLP and a CNN trained on the kept set, and the single GraphCut "
         "coreset covers the feature space worse than DQ.")
RUNS = [("mlp", 0.1), ("cnn", 0.1), ("mlp", 0.2)]
VARIANTS = ("tiny", "graphcut", "static_random", "kcenter")
NAMES = {"tiny": "dq", "graphcut": "graphcut", "static_random": "random", "kcenter": "kcenter"}


def coverage(features: np.ndarray, kept: np.ndarray) -> float:
  """Mean over all examples of the L2 distance to the nearest kept example."""
  d = np.linalg.norm(features[:, None] - features[kept][None], axis=-1)
  return float(d.min(axis=1).mean())


def run(seeds, workdir: str) -> dict:
  from configs import dataset_quantization as cfg_lib
  from paperjax import selection
  from paperjax.papers.dataset_quantization import method as dq

  rows = []
  for seed in seeds:
    r = {}
    for arch, frac in RUNS:
      variants = VARIANTS if frac == 0.1 else VARIANTS[:3]
      runs = claims.run_variants(cfg_lib.get_config, variants, seed,
                                   lambda p: os.path.join(workdir, f"{p}-{arch}-{frac}-seed{seed}"),
                                   args=f"arch={arch},fraction={frac}")
      for preset, s in runs.items():
        r[f"{NAMES[preset]}/{arch}/{frac:g}"] = float(s["eval"]["accuracy"])
    c = cfg_lib.get_config(f"tiny,seed={seed}")
    _, arrays = selection.train_arrays(c)
    feats = dq.pca_features(arrays["image"], int(c.dq.feature_dim), seed)
    for kind in ("dq", "graphcut"):
      kept = dq.select(feats, arrays["label"], 0.1, int(c.dq.num_bins), seed, kind)
      r[f"coverage/{kind}"] = coverage(feats, kept)
    rows.append(r)
    print("dataset_quantization claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  checks = {}
  for arch, frac in RUNS:
    key = f"{arch}/{frac:g}"
    checks[f"i_dq_beats_random_by_1pt_{arch}_{frac:g}"] = m[f"dq/{key}"] >= m[f"random/{key}"] + 0.01
    checks[f"i_dq_beats_graphcut_by_1pt_{arch}_{frac:g}"] = m[f"dq/{key}"] >= m[f"graphcut/{key}"] + 0.01
  checks["ii_graphcut_covers_worse"] = m["coverage/graphcut"] > m["coverage/dq"]
  lines = []
  for arch, frac in RUNS:
    key = f"{arch}/{frac:g}"
    lines.append(f"{arch} at {frac:.0%}: " + ", ".join(f"{n} {m[f'{n}/{key}']:.3f}" for n in NAMES.values()
                                                       if f"{n}/{key}" in m) + ".")
  lines.append(f"Mean distance to the nearest kept example (10%): DQ {m['coverage/dq']:.3f}, "
               f"single GraphCut {m['coverage/graphcut']:.3f}.")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
