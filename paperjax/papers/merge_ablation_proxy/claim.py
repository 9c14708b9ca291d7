"""The merge-proxy toy claim: averaging unit models ranks data mixtures like training on them.

Per seed: θ₀ = 300 steps on pydoc; 6 unit models (stdlib packages), 100 continued-pretraining steps
each; 10 candidate mixtures of 2 units, each trained 200 steps on the union (the ground truth). On 8
held-out sets (the 6 units + pydoc + the logging package) compare loss(θ_M = mean of the mixture's unit
models) with loss(θ_∪M). Passes if, averaged over seeds,
  (i)   Pearson r over all (mixture × eval set) pairs is ≥ 0.8 and above the baseline proxy's (the mean of
        the unit models' own losses),
  (ii)  the per-eval-set Spearman rank correlation over mixtures is ≥ 0.6 on average, and
  (iii) the proxy's training compute is ≤ 40% of training every union (6×100 vs 10×200 steps: 30%).
Thresholds are the digest's first guesses, kept as they are.
"""

from __future__ import annotations

import os

import numpy as np

CLAIM = ("Across 10 two-unit mixtures × 8 held-out sets, the loss of the averaged unit models correlates with the loss "
         "of models trained on the unions (Pearson ≥ 0.8, above the mean-of-unit-losses proxy; per-set Spearman ≥ 0.6) "
         "at ≤ 40% of the training compute.")


def run(seeds, workdir: str) -> dict:
  import jax
  from configs import merge_ablation_proxy as cfg_lib
  from paperjax import data as data_lib, train
  from paperjax.method import Context
  from paperjax.papers.merge_ablation_proxy import method as mp
  per_seed = []
  for seed in seeds:
    out = {}
    for phase in ("units", "unions"):
      c = cfg_lib.get_config(f"tiny,phase={phase},seed={seed}")
      c.train.progress = False
      out[phase] = (c, train.run(c, os.path.join(workdir, f"{phase}-seed{seed}"))["final_params"])
    c, units = out["units"]
    _, unions = out["unions"]
    tok = data_lib.build_tokenizer(c.data, None)
    sets = mp.eval_sets(c, Context(config=c, tokenizer=tok, workdir=os.path.join(workdir, "eval")))
    sums = mp.loss_fn_for(c, tok.vocab_size)
    mixes = mp.mixtures(len(c.merge.units), int(c.merge.mixture_size), int(c.merge.mixtures), seed)
    unit_loss = np.array([[mp.eval_loss(sums, jax.tree.map(lambda x: x[i], units), b) for _, b in sets]
                          for i in range(len(c.merge.units))])
    true = np.array([[mp.eval_loss(sums, jax.tree.map(lambda x: x[k], unions), b) for _, b in sets]
                     for k in range(len(mixes))])
    proxy = np.array([[mp.eval_loss(sums, mp.proxy_params(units, m), b) for _, b in sets] for m in mixes])
    baseline = np.array([unit_loss[list(m)].mean(0) for m in mixes])
    per_seed.append({"true": true.tolist(), "proxy": proxy.tolist(), "baseline": baseline.tolist(),
                     "eval_sets": [n for n, _ in sets], "mixtures": [list(m) for m in mixes]})
    print(f"merge_ablation_proxy claim: seed {seed}: {_scores(per_seed[-1])}", flush=True)
  return judge(per_seed, unit_steps=6 * 100, union_steps=10 * 200)


def _scores(r: dict) -> dict:
  from scipy import stats
  t, p, b = (np.asarray(r[k]) for k in ("true", "proxy", "baseline"))
  return {"pearson_proxy": float(np.corrcoef(p.ravel(), t.ravel())[0, 1]),
          "pearson_baseline": float(np.corrcoef(b.ravel(), t.ravel())[0, 1]),
          "spearman_proxy": float(np.mean([stats.spearmanr(p[:, e], t[:, e])[0] for e in range(t.shape[1])])),
          "spearman_baseline": float(np.mean([stats.spearmanr(b[:, e], t[:, e])[0] for e in range(t.shape[1])]))}


def judge(per_seed: list, unit_steps: int, union_steps: int) -> dict:
  s = [_scores(r) for r in per_seed]
  m = {k: float(np.mean([x[k] for x in s])) for k in s[0]}
  cost = unit_steps / union_steps
  checks = {"pearson_ge_0.8": m["pearson_proxy"] >= 0.8, "pearson_above_baseline": m["pearson_proxy"] > m["pearson_baseline"],
            "spearman_ge_0.6": m["spearman_proxy"] >= 0.6, "compute_le_40pct": cost <= 0.4}
  lines = [f"Pearson r (80 mixture × eval-set pairs): parameter-average proxy {m['pearson_proxy']:.3f} vs mean-of-unit-"
           f"losses {m['pearson_baseline']:.3f}; per-set Spearman over mixtures: {m['spearman_proxy']:.3f} vs "
           f"{m['spearman_baseline']:.3f}; proxy compute {100 * cost:.0f}% of training the unions."]
  failed = [k for k, v in checks.items() if not v]
  if failed:
    lines.append(f"Failed: {', '.join(failed)}.")
  return {"passed": not failed, "metrics": {"mean": m, "per_seed_scores": s, "per_seed": per_seed,
                                            "compute_fraction": cost, "checks": checks},
          "analysis": " ".join(lines)}
