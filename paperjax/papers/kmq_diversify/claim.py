"""kMQ's toy claim: at a 10% budget of an imbalanced, partly corrupted instruction pool, iterative kMQ
beats static kMQ, which beats random selection, and iterative refinement drops the corrupted clusters.

Per seed, the same decoder for the same 450 steps (3 rounds × 150 steps of 32) on 580 of 5,800
procedural instructions (`configs/kmq_diversify.py`) selected by: iterative kMQ (the verifier as the
reward), static kMQ, kM-Closest, random, and — for reference — all 5,800 examples. Macro-mean exact
match over the 12 clean tasks (20 held-out instructions each), mean of 3 seeds; the share of the final
selection drawn from the four corrupted templates.

Checks (the digest's, fixed before the first run):
  (i)   iterative kMQ ≥ static kMQ + 2 pts;
  (ii)  static kMQ ≥ random + 3 pts;
  (iii) the corrupted share of iterative kMQ's selection ≤ ½ of random's.
The claim passes when all three hold.
"""

from __future__ import annotations

import os

import numpy as np

from paperjax import claims

CLAIM = ("On a 5,800-example procedural instruction pool (16 imbalanced templates, 4 with corrupted gold answers) "
         "at a 10% budget and equal steps, iterative kMQ beats static kMQ by ≥2 points of held-out exact match, "
         "static kMQ beats random selection by ≥3 points, and iterative kMQ's selection holds at most half of "
         "random's share of corrupted examples.")
VARIANTS = ("tiny", "kmq", "kmclosest", "random", "full")
NAMES = {"tiny": "kmq_iter", "kmq": "kmq", "kmclosest": "kmclosest", "random": "random", "full": "full"}


def corrupted_share(class_counts: dict, corrupted_ids) -> float:
  total = sum(class_counts.values())
  return sum(v for k, v in class_counts.items() if int(k) in set(corrupted_ids)) / max(total, 1)


def mean_reward_diff(history: list[dict]) -> float:
  """mean over the round boundaries of mean_i s_i = R(x_i, y_gold) − R(x_i, ŷ_i) on the selection."""
  rows = [h for h in history if "between/gold_reward" in h]
  return float(np.mean([h["between/gold_reward"] - h["between/generated_reward"] for h in rows])) if rows else float("nan")


def run(seeds, workdir: str) -> dict:
  from configs import kmq_diversify as cfg_lib
  from paperjax.data import instructions

  bad = [instructions.NAMES.index(t) for t in cfg_lib.CORRUPTED]
  rows = []
  for seed in seeds:
    r = {}
    runs = claims.run_variants(cfg_lib.get_config, VARIANTS, seed, lambda p: os.path.join(workdir, f"{p}-seed{seed}"))
    for preset, s in runs.items():
      name = NAMES[preset]
      r[f"{name}/accuracy"] = float(s["eval"]["accuracy"])
      r[f"{name}/corrupted_share"] = corrupted_share(s["data"]["class_counts"], bad)
      r[f"{name}/selected"] = float(s["data"]["subset_size"])
      if name == "kmq_iter":  # the mean reward difference s over the selection at each round boundary
        r[f"{name}/mean_reward_diff"] = mean_reward_diff(s["history"])
    rows.append(r)
    print("kmq claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  acc = lambda n: m[f"{n}/accuracy"]
  checks = {
      "i_iterative_beats_static_kmq_by_2pts": acc("kmq_iter") >= acc("kmq") + 0.02,
      "ii_static_kmq_beats_random_by_3pts": acc("kmq") >= acc("random") + 0.03,
      "iii_iterative_halves_random_corrupted_share": m["kmq_iter/corrupted_share"] <= 0.5 * m["random/corrupted_share"],
  }
  lines = [f"Macro exact match (mean of {len(rows)} seeds): " + ", ".join(f"{n} {acc(n):.3f}" for n in NAMES.values()) + ".",
           "Corrupted share of the selection: " + ", ".join(f"{n} {m[n + '/corrupted_share']:.3f}" for n in NAMES.values()) + "."]
  if "kmq_iter/mean_reward_diff" in m:
    s_bar = m["kmq_iter/mean_reward_diff"]
    lines.append(f"At the round boundaries the mean reward difference s = R(gold) − R(answer) over the selected "
                 f"examples was {s_bar:.3f}: the model answers the instructions it was trained on about as often as "
                 "their gold answers are right, so softmax(mean s) stays near uniform over clusters and the added "
                 "examples follow the cluster count rather than the tasks the model fails on held-out data.")
    if not checks["iii_iterative_halves_random_corrupted_share"]:
      lines.append("With a binary verifier a corrupted cluster scores s = 0 − 0 = 0 (the model cannot answer it "
                   "either), the same as a learnt clean cluster, so corrupted clusters are down-weighted only "
                   "against clean clusters the model still gets wrong; the paper's reward model instead scores "
                   "bad gold answers below the model's own (s < 0).")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
