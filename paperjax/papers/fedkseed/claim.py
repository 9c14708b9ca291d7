"""FedKSeed's toy claim: federated zeroth-order tuning learns while each client exchanges a few KB.

Per seed: pretrain the 2-layer byte LM on pydoc (200 AdamW steps), then 10 FedKSeed rounds on stdlib
code (5 packages, Dirichlet(0.5) over 20 clients, 4 per round, τ=50 ZO steps, K=512), and the same
with FedKSeed-Pro. Passes if, averaged over seeds, the held-out code loss after the 10 rounds is at
least 5% (relative) below the pretrained model's, and every client exchanged 4K + 8τ bytes per round
(the paper's budget formula; 17,984 B at K=4096, τ=200, checked in tests/papers/test_fedkseed.py).
Reported, not gated: FedKSeed-Pro vs FedKSeed, and the bytes FedAvg would send (4·|θ| each way).
The 5% threshold is the digest's first guess, kept as it is.
"""

from __future__ import annotations

import os

import numpy as np

CLAIM = ("Ten FedKSeed rounds lower the held-out loss on the fine-tuning domains by ≥ 5% relative to the "
         "pretrained model while each client exchanges only 4K + 8τ bytes per round (2,448 B at K=512, τ=50).")


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  from configs import fedkseed as cfg_lib
  from paperjax import train
  res = {"base": [], "fedkseed": [], "pro": [], "bytes_per_client_round": [], "params": []}
  for seed in seeds:
    for pro in (0, 1):
      c = cfg_lib.get_config(f"tiny,pro={pro},seed={seed}")
      if steps:
        c.train.steps = steps
      c.train.progress = False
      s = train.run(c, os.path.join(workdir, f"pro{pro}-seed{seed}"))
      st = s["stages"]
      if pro == 0:
        res["base"].append(float(st["pretrain"]["eval"]["val_loss"]))
        res["bytes_per_client_round"].append(float(s["train"]["comm/up_bytes_per_client"] +
                                                   s["train"]["comm/down_bytes_per_client"]))
        res["params"].append(int(s["params"]))
      res["pro" if pro else "fedkseed"].append(float(s["eval"]["val_loss"]))
      print(f"fedkseed claim: seed {seed} pro={pro}: pretrained {res['base'][-1]:.4f} → {s['eval']['val_loss']:.4f}",
            flush=True)
  return judge(res, K=512, tau=50)


def judge(res: dict, K: int, tau: int) -> dict:
  base, fk, pro = (float(np.mean(res[k])) for k in ("base", "fedkseed", "pro"))
  drop = (base - fk) / base
  per_client = float(np.mean(res["bytes_per_client_round"]))
  fedavg = 2 * 4 * float(np.mean(res["params"]))
  checks = {"held_out_loss_drop_ge_5pct": drop >= 0.05, "bytes_are_4K_plus_8tau": per_client == 4 * K + 8 * tau}
  metrics = {"pretrained_val_loss": base, "fedkseed_val_loss": fk, "fedkseed_pro_val_loss": pro,
             "relative_drop": drop, "pro_relative_drop": (base - pro) / base, "per_seed": res,
             "bytes_per_client_per_round": per_client, "fedavg_bytes_per_client_per_round": fedavg,
             "fedavg_over_fedkseed_bytes": fedavg / per_client, "checks": checks}
  lines = [f"Held-out code loss: pretrained {base:.4f} → FedKSeed {fk:.4f} ({100 * drop:+.1f}% drop) / "
           f"Pro {pro:.4f} ({100 * (base - pro) / base:+.1f}%).",
           f"Bytes per client per round {per_client:,.0f} (= 4K + 8τ) vs FedAvg's {fedavg:,.0f} "
           f"({fedavg / per_client:,.0f}× more).",
           f"Pro {'≤' if pro <= fk else '>'} FedKSeed."]
  failed = [k for k, v in checks.items() if not v]
  if failed:
    lines.append(f"Failed: {', '.join(failed)}.")
  falls = [b > f for b, f in zip(res["base"], res["fedkseed"])]
  if not checks["held_out_loss_drop_ge_5pct"] and all(falls):
    lines.append("The held-out loss falls in every seed, but by less than the digest's 5% first guess, which was "
                 "kept (not recalibrated): 10 rounds × 4 clients × 50 two-point steps move a small model pretrained "
                 "for 200 steps only slowly, as the digest warns for zeroth-order training of tiny models.")
  return {"passed": not failed, "metrics": metrics, "analysis": " ".join(lines)}
