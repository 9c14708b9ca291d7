"""SimCLRv2's toy claim on digits: the three-step recipe beats supervised-only at low labels, and
bigger helps more with fewer labels.

Per seed, for a big (width 4, 64-128 channels) and a small (width 1, 16-32 channels) CNN: self-supervised pretraining on all 1,437
train images, then fine-tuning on 5% and on 50% of the labels (both from the *same* pretraining:
the second run resumes the finished `pretrain` stage from its checkpoint), then distilling the big
5% model into a small student on the unlabelled images; and supervised-only baselines on the same
5% labels. Test accuracy on the 360 held-out digits, mean of 3 seeds. Thresholds (the digest's, fixed
before the first run):
  (i)   big SSL+FT ≥ supervised-only big + 10 pts at 5% labels;
  (ii)  distilled small ≥ small SSL+FT + 3 pts at 5% labels, and within 3 pts of its teacher;
  (iii) the big-minus-small gap after SSL+FT is larger at 5% than at 50% labels.
The claim passes when (i) and (iii) hold; (ii) is recorded (distillation into a 4x narrower CNN on
8x8 digits is the part least likely to survive the toy scale).

History (kept for honesty). The first recorded run used widths 2 / 0.5 and 150 fine-tuning steps;
it was an invalid experiment rather than a negative result: the width-0.5 network (8-16 channels)
stayed near chance both fine-tuned and supervised (0.17 / 0.17), and 50% labels fine-tuned *worse*
than 5% (0.79 vs 0.81) because 150 steps did not fit them (the pretrained big network's linear probe
was 0.95). The setup was changed once — widths 4 / 1 as in the digest, 300 fine-tuning steps — and
the claim's thresholds were left as they were.
"""

from __future__ import annotations

import os

from paperjax import claims

CLAIM = ("On digits with 5% labels, SimCLRv2's pretrain→fine-tune recipe beats supervised-only training of the same "
         "network by ≥10 points, and the advantage of the bigger network over the smaller one is larger at 5% than "
         "at 50% labels.")
BIG, SMALL = 4.0, 1.0


def _acc(summary, stage_prefix):
  for name, s in summary["stages"].items():
    if name.startswith(stage_prefix):
      return float(s["eval"]["accuracy"])
  raise KeyError(stage_prefix)


def run(seeds, workdir: str, scale: float = 1.0) -> dict:
  from configs import simclr_v2 as cfg_lib
  from paperjax import train

  def cfg(arg, stages=None):
    c = cfg_lib.get_config(arg)
    if stages is not None:
      c.stages = tuple(s for s in c.stages if s["name"].split("_")[0] in stages)
    c.stages = tuple({**s, "overrides": {**s["overrides"],
                                         "train.steps": max(1, int(s["overrides"].get("train.steps", c.train.steps) * scale))}}
                     for s in c.stages)
    c.train.steps = max(1, int(c.train.steps * scale))
    c.train.progress = False
    return c

  rows = []
  for seed in seeds:
    r = {}
    for w, tag in ((BIG, "big"), (SMALL, "small")):
      wd = os.path.join(workdir, f"{tag}-seed{seed}")
      stages = ("pretrain", "finetune", "distill") if tag == "big" else ("pretrain", "finetune")
      s5 = train.run(cfg(f"tiny,labels=0.05,width={w},student_width={SMALL},seed={seed}", stages), wd)
      r[f"{tag}_ssl_ft_5"] = _acc(s5, "finetune")
      r[f"{tag}_linear_probe"] = float(s5["stages"]["pretrain"]["eval"]["linear_probe"])
      if tag == "big":
        r["distilled_small_5"] = _acc(s5, "distill")
      s50 = train.run(cfg(f"tiny,labels=0.5,width={w},seed={seed}", ("pretrain", "finetune")), wd)  # pretrain resumes
      r[f"{tag}_ssl_ft_50"] = _acc(s50, "finetune")
      sup = train.run(cfg(f"supervised,labels=0.05,width={w},seed={seed}"), os.path.join(workdir, f"{tag}-sup-seed{seed}"))
      r[f"{tag}_supervised_5"] = float(sup["eval"]["accuracy"])
    rows.append(r)
    print("simclr_v2 claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  gap5 = m["big_ssl_ft_5"] - m["small_ssl_ft_5"]
  gap50 = m["big_ssl_ft_50"] - m["small_ssl_ft_50"]
  checks = {
      "i_big_ssl_ft_beats_supervised_by_10pts_at_5pct": m["big_ssl_ft_5"] >= m["big_supervised_5"] + 0.10,
      "ii_distilled_beats_small_ssl_ft_by_3pts": m["distilled_small_5"] >= m["small_ssl_ft_5"] + 0.03,
      "ii_distilled_within_3pts_of_teacher": m["distilled_small_5"] >= m["big_ssl_ft_5"] - 0.03,
      "iii_bigger_helps_more_with_fewer_labels": gap5 > gap50,
  }
  passed = checks["i_big_ssl_ft_beats_supervised_by_10pts_at_5pct"] and checks["iii_bigger_helps_more_with_fewer_labels"]
  lines = [f"5% labels: big SSL+FT {m['big_ssl_ft_5']:.3f} vs supervised big {m['big_supervised_5']:.3f} "
           f"(small: {m['small_ssl_ft_5']:.3f} vs {m['small_supervised_5']:.3f}).",
           f"Big − small after SSL+FT: {gap5:+.3f} at 5%, {gap50:+.3f} at 50% labels.",
           f"Distilled small (from the big 5% teacher, unlabelled images only): {m['distilled_small_5']:.3f}.",
           f"Linear probe after pretraining: big {m['big_linear_probe']:.3f}, small {m['small_linear_probe']:.3f}."]
  lines += claims.not_met(checks)
  if m["big_supervised_5"] >= 0.85:
    lines.append(f"Supervised-only training of the big CNN already reaches {m['big_supervised_5']:.3f} on 5% of "
                 "the digits (≈72 images, with ±1 px shifts), which leaves too little headroom for a 10-point gain.")
  if m["small_ssl_ft_50"] < m["small_ssl_ft_5"]:
    lines.append("The small network fine-tuned on 50% of the labels scores below its 5% run: fine-tuning runs a "
                 "fixed 300 steps (the paper: fixed epochs), which under-fits the 10x larger split for the slowly "
                 "learning small network, so check (iii) is confounded by it.")
  return {"passed": passed, "metrics": {"mean": m, "gap_5pct": gap5, "gap_50pct": gap50, "per_seed": rows,
                                        "checks": checks}, "analysis": " ".join(lines)}
