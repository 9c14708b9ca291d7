"""Just One Byte's toy claim: one byte per projected gradient trains as well as fp32 scalars.

Per seed: pretrain the digits MLP on classes 0–4 (100 first-order steps), then 1,000 zeroth-order
iterations on all ten classes with 4 machines × 2 perturbations, exchanging int8 bytes (shared adaptive
scale) or fp32 scalars; and one machine with 8 perturbations (the same forward passes); and the int8 run
with machines leaving and rejoining (churn). Passes if, averaged over seeds,
  (i)   int8's final train loss (mean of the last 5 rounds) is within 5% of fp32-scalar ZO's,
  (ii)  int8's final train loss is below half of the first round's,
  (iii) every machine uploads k = 2 bytes per iteration (vs 4·|θ| for a gradient), and
  (iv)  all active replicas are bitwise equal after every round, churn included.
Thresholds are the digest's first guesses, kept as they are.
"""

from __future__ import annotations

import os

import numpy as np

CLAIM = ("Four machines exchanging one byte per projected gradient reach a final train loss within 5% of fp32-scalar "
         "exchange and below half the initial loss, uploading 2 bytes per iteration, with replicas bitwise equal "
         "(also when machines leave and rejoin).")
VARIANTS = ("int8", "float", "single", "churn")


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  from configs import justonebyte as cfg_lib
  from paperjax import train
  res = {v: {"initial": [], "final": [], "max_spread": [], "up_bytes_per_iter": [], "val_accuracy": []} for v in VARIANTS}
  params = None
  for seed in seeds:
    for v in VARIANTS:
      c = cfg_lib.get_config(f"tiny,variant={v},seed={seed}")
      if steps:
        c.train.steps = steps
      c.train.update(progress=False, log_every=1)
      s = train.run(c, os.path.join(workdir, f"{v}-seed{seed}"))
      rows = [r for r in s["history"] if "loss" in r]
      r = res[v]
      r["initial"].append(float(rows[0]["loss"]))
      r["final"].append(float(np.mean([x["loss"] for x in rows[-5:]])))
      r["max_spread"].append(float(max(x["replica_spread"] for x in rows)))
      r["up_bytes_per_iter"].append(float(rows[-1]["comm/up_bytes_per_client"]) / int(c.population.local_steps))
      r["val_accuracy"].append(float(s["eval"].get("val_accuracy", float("nan"))))
      params = int(s["params"])
      print(f"justonebyte claim: seed {seed} {v:>6}: loss {r['initial'][-1]:.3f} → {r['final'][-1]:.3f}, "
            f"spread {r['max_spread'][-1]}, val acc {r['val_accuracy'][-1]:.3f}", flush=True)
  return judge(res, params)


def judge(res: dict, params: int) -> dict:
  m = {v: {k: float(np.mean(x)) for k, x in r.items()} for v, r in res.items()}
  i8, fp = m["int8"], m["float"]
  rel = (i8["final"] - fp["final"]) / fp["final"]
  checks = {"int8_within_5pct_of_float": rel <= 0.05, "int8_below_half_initial": i8["final"] < 0.5 * i8["initial"],
            "two_bytes_per_iteration": i8["up_bytes_per_iter"] == 2.0,
            "replicas_bitwise_equal": all(s == 0.0 for v in ("int8", "float", "churn") for s in res[v]["max_spread"])}
  grad_bytes = 4 * params
  metrics = {"mean": m, "per_seed": res, "int8_vs_float_relative": rel, "gradient_bytes_per_iteration": grad_bytes,
             "checks": checks}
  lines = [f"Final train loss: int8 {i8['final']:.4f} vs fp32 scalars {fp['final']:.4f} ({100 * rel:+.1f}%), "
           f"single machine (same forward passes) {m['single']['final']:.4f}, churn {m['churn']['final']:.4f}; "
           f"int8 initial {i8['initial']:.4f}.",
           f"Upload per machine per iteration: {i8['up_bytes_per_iter']:.0f} B (int8) / {fp['up_bytes_per_iter']:.0f} B "
           f"(fp32) vs {grad_bytes:,} B for an fp32 gradient.",
           f"Validation accuracy: int8 {i8['val_accuracy']:.3f}, fp32 {fp['val_accuracy']:.3f}, single "
           f"{m['single']['val_accuracy']:.3f}."]
  failed = [k for k, v in checks.items() if not v]
  if failed:
    lines.append(f"Failed: {', '.join(failed)}.")
  return {"passed": not failed, "metrics": metrics, "analysis": " ".join(lines)}
