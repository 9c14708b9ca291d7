"""Density-Based Pruning's toy claim: keeping 30% of a redundant image-caption pool by cluster
complexity trains a better CLIP than equal per-cluster quotas (SSP) and than random pruning.

Per seed, the same CLIP (`configs/density_pruning.py`) for the same 200 steps of 64 on 2,100 of the
7,000 pool images chosen by: DBP (SemDeDup → complexity softmax with the official τ = 0.5 → QP quotas →
keep hard), SSP-style equal quotas (SemDeDup → uniform p → keep hard), random 30%, and the full pool
for reference; plus two reported ablations (not judged): DBP with τ = 0.05, and DBP keeping each
cluster's most prototypical ("easy") members (added after the first recorded run, whose random baseline
beat both keep-hard rules; the checks and thresholds are unchanged). Zero-shot shape × colour
accuracy on the seen pairs of the shapes validation split (`zeroshot_pair_unmasked`), mean of 3 seeds.

Checks (the digest's, fixed before the first run):
  (i)   DBP ≥ SSP + 2 pts;
  (ii)  SSP ≥ random + 2 pts;
  (iii) the cluster complexity C tracks the true variety of a cluster: Spearman(C_j, share of varied —
        not over-represented — records in cluster j) ≥ 0.6 (the digest's "quotas correlate with the
        concepts' generative variance"; DBP's quotas are monotone in C).
The claim passes when all three hold.
"""

from __future__ import annotations

import os

import numpy as np

from paperjax import claims

CLAIM = ("Keeping 30% of a 7,000-image shapes pool (varied concepts, 8 over-represented concepts, planted near-copies) "
         "by Density-Based Pruning trains a CLIP whose zero-shot shape × colour accuracy beats equal per-cluster quotas "
         "(SSP) by ≥2 points, which beat random pruning by ≥2 points, and the clusters' complexity d_inter·d_intra "
         "ranks them by true variety (Spearman ≥ 0.6).")
VARIANTS = ("tiny", "ssp", "random", "full", "tiny,tau=0.05", "tiny,keep=easy")
NAMES = {"tiny": "dbp", "ssp": "ssp", "random": "random", "full": "full", "tiny,tau=0.05": "dbp_tau0.05",
         "tiny,keep=easy": "dbp_easy"}
METRIC = "zeroshot_pair_unmasked"


def complexity_stats(config) -> dict:
  """Spearman rank correlation between each cluster's complexity and its share of varied records, and
  the spread of DBP's p = softmax(C/τ) (max and min of k·p: 1 is uniform)."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  from paperjax import selection
  from paperjax.papers.density_pruning import method as dp
  records, kind = dp.pool_for(config)
  d = config.density_pruning
  x = selection.pixel_pca(records.arrays["image"], int(d.embed_dim), int(config.selection.seed))
  n_keep = selection.subset_size(len(records), config.selection.fraction)
  out = dp.select(x, n_keep, k=int(d.clusters), tau=float(d.temperature), eps=float(d.eps),
                  num_neighbors=int(d.num_neighbors), seed=int(config.selection.seed))
  rows = np.flatnonzero(out["dedup_keep"])
  varied = np.array([np.mean(kind[rows][out["assign"] == j] != 1) for j in range(int(d.clusters))])
  k = int(d.clusters)
  return {"complexity_spearman": float(stats.spearmanr(out["complexity"], varied).statistic),
          "p_max_over_uniform": float(out["p"].max() * k), "p_min_over_uniform": float(out["p"].min() * k)}


def run(seeds, workdir: str) -> dict:
  from configs import density_pruning as cfg_lib

  rows = []
  for seed in seeds:
    r = {}
    runs = claims.run_variants(cfg_lib.get_config, VARIANTS, seed,
                               lambda p: os.path.join(workdir, f"{p.replace(',', '_').replace('=', '')}-seed{seed}"))
    for preset, s in runs.items():
      name = NAMES[preset]
      r[f"{name}/{METRIC}"] = float(s["eval"][METRIC])
      r[f"{name}/i2t_R@1"] = float(s["eval"]["retrieval/i2t_R@1"])
      counts = {int(k): int(v) for k, v in s["data"]["class_counts"].items()}
      r[f"{name}/kept_over_represented"] = float(counts.get(1, 0))
      r[f"{name}/kept_near_copies"] = float(counts.get(2, 0))
    r.update(complexity_stats(cfg_lib.get_config(f"tiny,seed={seed}")))
    rows.append(r)
    print("density_pruning claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  acc = lambda n: m[f"{n}/{METRIC}"]
  checks = {
      "i_dbp_beats_ssp_by_2pts": acc("dbp") >= acc("ssp") + 0.02,
      "ii_ssp_beats_random_by_2pts": acc("ssp") >= acc("random") + 0.02,
      "iii_complexity_tracks_variety": m["complexity_spearman"] >= 0.6,
  }
  lines = [f"Zero-shot shape × colour on seen pairs (mean of {len(rows)} seeds): " +
           ", ".join(f"{n} {acc(n):.3f}" for n in NAMES.values()) + ".",
           "Kept over-represented / near-copy images: " + ", ".join(
               f"{n} {m[n + '/kept_over_represented']:.0f}/{m[n + '/kept_near_copies']:.0f}" for n in NAMES.values()) + ".",
           f"Spearman(complexity, varied share) = {m['complexity_spearman']:.2f}."]
  if "p_max_over_uniform" in m:
    lines.append(f"At τ = 0.5 DBP's p = softmax(C/τ) spans {m['p_min_over_uniform']:.2f}–{m['p_max_over_uniform']:.2f}× "
                 "uniform (C = d_inter·d_intra lies in a narrow range on these embeddings), so its quotas are close to "
                 "SSP's equal ones and the two keep nearly the same images.")
  if acc("random") > max(acc("dbp"), acc("ssp")) and "dbp_easy/" + METRIC in m:
    lines.append(f"Random pruning keeps the most over-represented images yet beats both keep-hard rules; the same DBP "
                 f"quotas keeping each cluster's most prototypical (\"easy\") members score {acc('dbp_easy'):.3f} "
                 f"({'above' if acc('dbp_easy') > acc('dbp') else 'not above'} keep-hard's {acc('dbp'):.3f}; Sorscher et al. "
                 "find keep-hard pays off only when data is plentiful).")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
