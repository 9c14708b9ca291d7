"""RS2's toy claim on digits: a fresh random 10% per round beats pruning once to 10%, at equal steps
and in time to accuracy with the selection's cost included.

Per seed, the same MLP for the same 300 steps (100 rounds × 3 steps of 48) under: RS2 without
replacement, RS2 with replacement, and the shared static baselines of `paperjax/selection.py` —
static random 10%, static EL2N 10% (highest scores after a 20-step full-data proxy), k-center
greedy 10% on pixels — and full data. Test accuracy on the 360 held-out digits (mean of 3 seeds)
and the time to 90% test accuracy (evaluation every 15 steps): steps, and seconds = loop time
(evaluation excluded; in-loop selection included) + selection done before the loop (the proxy
stage's wall time and the EL2N scoring pass; the k-center / random pick).

Checks (the digest's, fixed before the first run):
  (i)   RS2 (w/o replacement) ≥ static random + 5 pts at equal steps;
  (ii)  RS2 ≥ the best static coreset (EL2N, k-center) + 3 pts;
  (iii) RS2's time to 90% (seconds, selection included) beats every static method's
        (a method that never reaches 90% counts as infinitely slow).
The claim passes when all three hold.

History (kept for honesty). The first recorded run used Adam lr 1e-3, with which even full data
was under-trained at 300 steps (0.919 test accuracy, train loss 0.43), so every method was limited
by optimisation rather than by its data: RS2 0.918, RS2 with replacement 0.917, static random 0.895,
EL2N 0.297, k-center 0.927 — (i)–(iii) not met. The learning rate was then set once to 1e-2, the
value at which full data trains to ≈0.97 in 300 steps (chosen on full data alone); the thresholds
were left as they were.
"""

from __future__ import annotations

import os

import numpy as np

from paperjax import claims

CLAIM = ("On digits at 10% of the data per round and equal steps, RS2 (a fresh random subset per round, without "
         "replacement) beats a static random 10% subset by ≥5 points and the best static coreset (EL2N, k-center) by "
         "≥3 points, and reaches 90% test accuracy sooner than every static method with selection cost included.")
VARIANTS = ("tiny", "rs2_replacement", "static_random", "el2n", "kcenter", "full")
NAMES = {"tiny": "rs2", "rs2_replacement": "rs2_replacement", "static_random": "static_random", "el2n": "el2n",
         "kcenter": "kcenter", "full": "full"}
STATIC = ("static_random", "el2n", "kcenter")


def _tta_seconds(summary, name) -> float:
  tt = summary.get("time_to_target") or {}
  if tt.get("step") is None:
    return float("inf")
  extra = 0.0
  if name in ("static_random", "kcenter", "el2n"):  # selected before the loop started
    extra += float(summary["data"]["selection_s"])
  if name == "el2n":
    extra += float(summary["stages"]["proxy"]["wall_s"])
  return float(tt["train_s"]) + extra


def run(seeds, workdir: str) -> dict:
  from configs import rs2 as cfg_lib

  rows = []
  for seed in seeds:
    r = {}
    runs = claims.run_variants(cfg_lib.get_config, VARIANTS, seed, lambda p: os.path.join(workdir, f"{p}-seed{seed}"))
    for preset, s in runs.items():
      name = NAMES[preset]
      tt = s.get("time_to_target") or {}
      r[f"{name}/accuracy"] = float(s["eval"]["accuracy"])
      r[f"{name}/steps_to_90"] = float(tt["step"]) if tt.get("step") is not None else float("inf")
      r[f"{name}/seconds_to_90"] = _tta_seconds(s, name)
      r[f"{name}/selection_s"] = float(s["data"]["selection_s"]) + (
          float(s["stages"]["proxy"]["wall_s"]) if name == "el2n" else 0.0)
    rows.append(r)
    print("rs2 claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  acc = lambda n: m[f"{n}/accuracy"]
  best_coreset = max(acc("el2n"), acc("kcenter"))
  static_tta = min(m[f"{n}/seconds_to_90"] for n in STATIC)
  checks = {
      "i_rs2_beats_static_random_by_5pts": acc("rs2") >= acc("static_random") + 0.05,
      "ii_rs2_beats_best_static_coreset_by_3pts": acc("rs2") >= best_coreset + 0.03,
      "iii_rs2_time_to_90_beats_every_static": m["rs2/seconds_to_90"] < static_tta,
  }
  fmt = lambda v: "never" if not np.isfinite(v) else f"{v:.1f}"
  lines = [f"Accuracy at 300 steps (mean of {len(rows)} seeds): " + ", ".join(f"{NAMES[v]} {acc(NAMES[v]):.3f}" for v in VARIANTS) + ".",
           "Time to 90% (steps / seconds incl. selection): " + ", ".join(
               f"{NAMES[v]} {fmt(m[NAMES[v] + '/steps_to_90'])}/{fmt(m[NAMES[v] + '/seconds_to_90'])}" for v in VARIANTS) + "."]
  lines.append("Steps to 90% are counted at the 15-step evaluation granularity, and the seconds are a few hundred "
               "milliseconds dominated by the first steps' compilation, so (iii) separates methods only when one "
               "reaches 90% an evaluation or more earlier.")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
