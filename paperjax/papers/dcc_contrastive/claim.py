"""DCC's toy claim on digits: matching the all-class gradient of the whole synthetic set beats
class-wise gradient matching (DC), most clearly when task-irrelevant signal dominates the images.

Per seed, 1 image per class (10 images), 100 outer iterations, for DC and DCC on plain digits and on
the distractor variant (each image (1 − 0.4)·digit + 0.4·texture, the texture from a class-independent
bank, train and test alike). Baseline: the 10 real images the condensation starts from. Score: mean
test accuracy of 5 fresh ConvNets trained 300 steps on the 10 images (the same protocol for all),
mean of 3 seeds.

Checks (the digest's, fixed before the first run):
  (i)   distractor: DC ≤ random real + 2 pts while DCC ≥ random real + 5 pts;
  (ii)  plain digits: DCC ≥ DC.
The claim passes when both hold.

History (kept for honesty). The first recorded run used a distractor amplitude of 0.6, which made
the variant an invalid experiment rather than a test: every method, and the random real images,
sat near chance (DCC 0.146, DC 0.131, random real 0.157; chance 0.10), while on plain digits DCC
0.477 > random real 0.420 > DC 0.378. The amplitude was then set once, by the baseline alone, to the
largest of {0.3, 0.4, 0.5} at which the 10 random real images still reach ≥ 0.25 test accuracy
(0.3: 0.37, 0.4: 0.30, 0.5: 0.21; two seeds) — 0.4 — and the thresholds were left as they were.
"""

from __future__ import annotations

import os

import numpy as np

from paperjax import claims

CLAIM = ("Condensing digits to 1 image per class, DCC's all-class gradient matching scores at least DC's on plain "
         "digits, and with a dominant class-independent distractor texture DCC beats the random real images by ≥5 "
         "points while DC stays within 2 points of them.")
DISTRACTOR = 0.4


def run(seeds, workdir: str) -> dict:
  from configs import dcc_contrastive as cfg_lib
  from paperjax import train
  from paperjax.models import vision
  from paperjax.papers.dcc_contrastive import method as dcc

  rows = []
  for seed in seeds:
    r = {}
    for dist, tag in ((0.0, "plain"), (DISTRACTOR, "distractor")):
      for preset in ("dc", "tiny"):
        c = cfg_lib.get_config(f"{preset},distractor={dist},seed={seed}")
        c.train.progress = False
        s = train.run(c, os.path.join(workdir, f"{preset}-{tag}-seed{seed}"))
        r[f"{tag}/{'dcc' if preset == 'tiny' else 'dc'}"] = float(s["eval"]["accuracy"])
      d = c.dcc
      train_a = dcc._arrays(c, "train")
      test_a = dcc._arrays(c, "validation")
      real = dcc.real_init(train_a, int(d.ipc), 10, seed)
      net = vision.Classifier({k: v for k, v in dict(c.model).items() if k != "num_classes"}, 10)
      r[f"{tag}/random_real"] = dcc.train_on_set(
          net, real.reshape((-1,) + real.shape[2:]), np.repeat(np.arange(10), int(d.ipc)), test_a,
          steps=int(d.eval_steps), lr=float(d.eval_lr), num_nets=int(d.eval_nets), seed=seed + 777)
    rows.append(r)
    print("dcc_contrastive claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  checks = {
      "i_distractor_dc_within_2pts_of_random": m["distractor/dc"] <= m["distractor/random_real"] + 0.02,
      "i_distractor_dcc_beats_random_by_5pts": m["distractor/dcc"] >= m["distractor/random_real"] + 0.05,
      "ii_plain_dcc_at_least_dc": m["plain/dcc"] >= m["plain/dc"],
  }
  lines = [f"{t}: DCC {m[t + '/dcc']:.3f}, DC {m[t + '/dc']:.3f}, random real {m[t + '/random_real']:.3f}."
           for t in ("plain", "distractor")]
  for t in ("plain", "distractor"):
    if max(m[f"{t}/dc"], m[f"{t}/dcc"]) < m[f"{t}/random_real"]:
      lines.append(f"On {t} digits both condensed sets score below the real images they were initialised from "
                   "(an observation; a likely reason is that the matched gradients of fresh networks are dominated "
                   "by the distractor texture, so 100 outer iterations move the images away from the digit).")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
