"""CodeGen2's toy claim: the causal-LM + moved-span-corruption mixture learns to infill without losing
much left-to-right loss, and mixing natural language in helps text without hurting code.

Per seed, the same decoder for the same 400 steps of 16 × 128 tokens (`configs/codegen2.py`):
  tiny     the recipe (p_sc = 0.5), NL:PL = 1:1
  clm      causal LM only, NL:PL = 1:1
  pl_only  the recipe on code only
Held-out left-to-right loss on stdlib code and on pydoc text (nats per byte), and exact match of 100
held-out single stdlib lines: the mixture with the infill prompt vs the causal model from the left
context only (`left_em`), mean of 3 seeds; the teacher-forced loss of those lines in both formats is
reported beside them (not judged: added before the first full run because exact matches were 0 for
every model in a first 400-step run).

Checks (the digest's, fixed before the first run):
  (i)   infill exact match of the mixture ≥ the causal model's left-context exact match + 15 pts;
  (ii)  the mixture's left-to-right code loss ≤ 1.05 × the causal model's;
  (iii) NL+PL's text loss ≤ 0.9 × PL-only's ("well below"), and its code loss ≤ 1.05 × PL-only's.
The claim passes when all three hold.
"""

from __future__ import annotations

import os

from paperjax import claims

CLAIM = ("A causal decoder trained on a 50/50 per-sequence mixture of causal LM and end-moved span corruption "
         "infills held-out code lines ≥15 points more often (exact match) than a causal-only model completes them "
         "from the left, with ≤5% higher left-to-right code loss; adding natural language to code cuts the text "
         "loss by ≥10% with ≤5% higher code loss.")
VARIANTS = ("tiny", "clm", "pl_only")
NAMES = {"tiny": "mix", "clm": "clm", "pl_only": "pl_only"}


def run(seeds, workdir: str) -> dict:
  from configs import codegen2 as cfg_lib

  rows = []
  for seed in seeds:
    r = {}
    runs = claims.run_variants(cfg_lib.get_config, VARIANTS, seed, lambda p: os.path.join(workdir, f"{p}-seed{seed}"))
    for preset, s in runs.items():
      name = NAMES[preset]
      for k in ("infill_em", "left_em", "infill_line_loss", "left_line_loss", "loss/code", "loss/text"):
        r[f"{name}/{k}"] = float(s["eval"][k])
    rows.append(r)
    print("codegen2 claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  checks = {
      "i_infill_beats_left_to_right_by_15pts": m["mix/infill_em"] >= m["clm/left_em"] + 0.15,
      "ii_code_loss_within_5pct_of_causal": m["mix/loss/code"] <= 1.05 * m["clm/loss/code"],
      "iii_nl_helps_text_without_hurting_code": (m["mix/loss/text"] <= 0.9 * m["pl_only/loss/text"]
                                                 and m["mix/loss/code"] <= 1.05 * m["pl_only/loss/code"]),
  }
  lines = [f"Mean of {len(rows)} seeds. Infill exact match: mixture {m['mix/infill_em']:.3f} (its left-context "
           f"{m['mix/left_em']:.3f}); causal-only left-context {m['clm/left_em']:.3f} (its infill prompt "
           f"{m['clm/infill_em']:.3f}).",
           f"Teacher-forced loss of the held-out line (nats/byte, reported, not judged): mixture with the infill "
           f"prompt {m['mix/infill_line_loss']:.3f} vs from the left {m['mix/left_line_loss']:.3f}; causal-only from "
           f"the left {m['clm/left_line_loss']:.3f}.",
           "Held-out loss code / text: " + ", ".join(f"{n} {m[n + '/loss/code']:.3f} / {m[n + '/loss/text']:.3f}"
                                                      for n in NAMES.values()) + "."]
  if max(m["mix/infill_em"], m["clm/left_em"]) == 0.0:
    lines.append("No model reproduced a single held-out line exactly, so (i) compares 0 with 0.")
  if m["mix/infill_line_loss"] >= m["mix/left_line_loss"]:
    lines.append("The mixture scores the line worse with the infill prompt (prefix and suffix) than from the left "
                 "context alone: at this scale and step count it has not yet learnt to use the moved-span format.")
  lines += claims.not_met(checks)
  return {"passed": all(checks.values()), "metrics": {"mean": m, "per_seed": rows, "checks": checks},
          "analysis": " ".join(lines)}
