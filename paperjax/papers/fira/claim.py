"""Fira's toy claim: close to full-rank Adam with a fraction of its optimizer state, better than GaLore.

Same 2-layer byte-level decoder on pydoc text (configs/fira.py tiny), same data order, 400 steps, per seed:
full-rank Adam at lr 3e-3 (the repository's LM default) and at 0.01 (Fira's lr; the better of the two is
"Adam"), GaLore (rank 16 = d/4, T=50, α=0.25, lr 0.01), Fira (same + norm-based scaling + limiter) and the
φ≡1 ablation (residual added unscaled), and Fira and GaLore at lr 0.04 (α·lr = 0.01, Adam's in-subspace
step; reported, not gated). Passes if, averaged over seeds,
  (i)   Fira's validation loss is ≤ GaLore's − 0.03 nats,
  (ii)  Fira's is within 0.02 nats of the better Adam (or below it), and
  (iii) Fira's optimizer state on the kernels is ≤ 35% of Adam's (bytes from the state's shapes).
The thresholds are the digest's first guesses, kept as they are. The gated learning rates are the paper's
(Fira/GaLore 0.01, α 0.25), not tuned here; Adam runs at two (3e-3 and 0.01), the better one is the
reference. Reported, not gated: the φ≡1 ablation (the paper finds it between GaLore and Fira), the lr-0.04
runs, and the whole-model state bytes (embeddings and norms keep Adam's full state in both; at this size
the tied embedding dominates the total).
"""

from __future__ import annotations

import os

import numpy as np

CLAIM = ("Fira (rank d/4) reaches within 0.02 nats of full-rank Adam's validation loss and ≥ 0.03 nats below "
         "GaLore's, with ≤ 35% of Adam's optimizer state on the weight matrices.")
VARIANTS = ("adam", "adam_lr0.01", "galore", "fira", "fira_no_scaling", "galore_lr0.04", "fira_lr0.04")


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  import jax
  from configs import fira as cfg_lib
  from paperjax import train
  from paperjax.papers.fira import method as fira
  res = {v: {"val_loss": [], "matrix_bytes": [], "total_bytes": []} for v in VARIANTS}
  for seed in seeds:
    for v in VARIANTS:
      name, _, lr = v.partition("_lr")   # "<variant>_lr<lr>": the same optimizer at another peak lr
      c = cfg_lib.get_config(f"tiny,variant={name},seed={seed}")
      if lr:
        c.optimizer.lr = float(lr)
      if steps:
        c.train.steps = steps
      c.train.progress = False
      s = train.run(c, os.path.join(workdir, f"{v}-seed{seed}"))
      params = jax.eval_shape(lambda p: p, s["final_params"])
      by = fira.state_bytes_by_group(c.optimizer, params)
      res[v]["val_loss"].append(float(s["eval"]["val_loss"]))
      res[v]["matrix_bytes"].append(float(by["matrix"]))
      res[v]["total_bytes"].append(float(s["opt_state_bytes"]))
      print(f"fira claim: seed {seed} {v:>16}: val_loss {res[v]['val_loss'][-1]:.4f}  kernel state "
            f"{by['matrix']:,} B  whole state {s['opt_state_bytes']:,} B", flush=True)
  return judge(res)


def judge(res: dict) -> dict:
  m = {v: {k: float(np.mean(x)) for k, x in r.items()} for v, r in res.items()}
  adam_key = min(("adam", "adam_lr0.01"), key=lambda k: m[k]["val_loss"] if k in m else np.inf)
  adam, galore, f = m[adam_key], m["galore"], m["fira"]
  vs_adam, vs_galore = f["val_loss"] - adam["val_loss"], f["val_loss"] - galore["val_loss"]
  ratio = f["matrix_bytes"] / adam["matrix_bytes"]
  checks = {"fira_beats_galore_by_0.03": vs_galore <= -0.03, "fira_within_0.02_of_adam": vs_adam <= 0.02,
            "matrix_state_le_35pct_of_adam": ratio <= 0.35}
  metrics = {"mean": m, "per_seed": res, "adam_reference": adam_key, "fira_minus_adam": vs_adam,
             "fira_minus_galore": vs_galore, "matrix_state_ratio_fira_over_adam": ratio,
             "total_state_ratio_fira_over_adam": f["total_bytes"] / adam["total_bytes"], "checks": checks}
  lines = [f"Val loss: Adam ({adam_key}) {adam['val_loss']:.4f}, GaLore {galore['val_loss']:.4f}, "
           f"Fira {f['val_loss']:.4f} (Δ vs Adam {vs_adam:+.4f}, vs GaLore {vs_galore:+.4f})."]
  if "adam" in m and "adam_lr0.01" in m:
    lines.append(f"Adam at lr 3e-3 {m['adam']['val_loss']:.4f}, at 0.01 {m['adam_lr0.01']['val_loss']:.4f} "
                 f"(Fira − Adam@3e-3: {f['val_loss'] - m['adam']['val_loss']:+.4f}); the gated Fira/GaLore runs use the "
                 "paper's lr 0.01 with α = 0.25, i.e. a 4× smaller in-subspace step than Adam's at the same lr.")
  if "fira_no_scaling" in m:
    ns = m["fira_no_scaling"]["val_loss"]
    between = galore["val_loss"] >= ns >= f["val_loss"]
    metrics["no_scaling_between_galore_and_fira"] = bool(between)
    lines.append(f"φ≡1 ablation {ns:.4f} ({'between GaLore and Fira, as in the paper' if between else 'not between GaLore and Fira'}).")
  lines.append(f"Optimizer state on kernels: Fira {f['matrix_bytes']:,.0f} B vs Adam {adam['matrix_bytes']:,.0f} B "
               f"({ratio:.1%}); whole model {f['total_bytes']:,.0f} vs {adam['total_bytes']:,.0f} B "
               f"({metrics['total_state_ratio_fira_over_adam']:.1%}, embeddings keep Adam in both).")
  if "fira_lr0.04" in m and "galore_lr0.04" in m:   # reported, not gated: α-compensated lr (0.25 × 0.04 = 0.01)
    f4, g4 = m["fira_lr0.04"]["val_loss"], m["galore_lr0.04"]["val_loss"]
    metrics["lr0.04"] = {"fira": f4, "galore": g4, "fira_minus_adam": f4 - adam["val_loss"]}
    lines.append(f"At lr 0.04 (in-subspace step 0.01, like Adam's): Fira {f4:.4f} (Δ vs Adam {f4 - adam['val_loss']:+.4f}), "
                 f"GaLore {g4:.4f} (reported, not gated).")
  failed = [k for k, v in checks.items() if not v]
  if failed:
    lines.append(f"Failed: {', '.join(failed)}.")
  return {"passed": not failed, "metrics": metrics, "analysis": " ".join(lines)}
