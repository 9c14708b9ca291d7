"""SlimPajama-DC's toy claim: global dedup removes the cross-source duplicates that local dedup
leaves, and at a fixed token budget the deduplicated diverse mixture is the better generalist.

Part 1 (data, no training; the same for every seed). The three toy train corpora with planted
near-duplicates (configs/slimpajama_dc.py: 20% of each source's long documents copied inside it,
10% into another source) are deduplicated locally and globally with SlimPajama's rule. Checks:
global finds ≥ 90% of the planted cross-source and within-source copies; local finds ≤ 10% of the
cross-source ones (it cannot see them) and ≥ 90% of the within-source ones; precision ≥ 95% for
global dedup — a removed document counts as a true near-duplicate when its exact Jaccard similarity
(character 13-grams) with the document its cluster keeps is ≥ 0.7 (the threshold 0.8 less a margin
for the estimate's noise).

Part 2 (training, 3 seeds; 300 steps × 16 rows × 128 bytes ≈ 0.6M tokens each, the same budget for
every combination). DC-1 (web only, global dedup), DC-3 with local dedup, DC-3 with global dedup
(web 50 / code 25 / docs 25). Checks on the mean over seeds: (a) DC-3-global's mean held-out loss over
the three sources beats DC-1's by ≥ 5%; (b) DC-1 wins on its own source (the lowest web loss);
(c) DC-3-global's mean held-out loss ≤ DC-3-local's (the paper's global-over-local finding).
The claim passes when parts 1 and 2 all hold.
"""

from __future__ import annotations

import numpy as np

CLAIM = ("Global MinHash-LSH dedup finds ≥90% of planted cross-source near-duplicates (precision ≥95%) while local "
         "dedup finds ≤10%, and at equal tokens the globally deduplicated 3-source mix beats the web-only mix by ≥5% "
         "in mean held-out loss over sources, loses to it on web only, and is not worse than the locally deduplicated mix.")
VARIANTS = {"dc1": "tiny,dc=1", "dc3_local": "tiny,dc=3,dedup=local", "dc3_global": "tiny,dc=3,dedup=global"}


def dedup_part(config) -> dict:
  from paperjax.data import dedup
  from paperjax.papers.slimpajama_dc import method
  key = method._key(config)  # pylint: disable=protected-access
  corpora, planted = method.planted_corpora(*key)
  results = method.deduplicated(*key, float(config.slimpajama.threshold), int(config.slimpajama.num_perm))
  out = {}
  for scope, res in results.items():
    kept_of = {}
    for members in res.clusters:
      keep = members[0]  # components keep their first member (source order, then index)
      for m in members[1:]:
        kept_of[m] = keep
    sims = [dedup.jaccard(dedup.features(corpora[s][i]), dedup.features(corpora[k[0]][k[1]]))
            for (s, i), k in kept_of.items()]
    out[scope] = {**dedup.planted_recall(res, planted),
                  "precision": float(np.mean([x >= 0.7 for x in sims])) if sims else 1.0,
                  "removed": len(sims), "removed_fraction": res.report()["removed_fraction_total"],
                  "cross_source_clusters": res.report()["cross_source_clusters"]}
  out["planted"] = {"within": sum(a[0] == b[0] for a, b in planted), "cross": sum(a[0] != b[0] for a, b in planted)}
  return out


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  from configs import slimpajama_dc as cfg_lib
  from paperjax import claims
  data = dedup_part(cfg_lib.get_config())
  print(f"slimpajama_dc claim: dedup {data}", flush=True)
  res = {v: {} for v in VARIANTS}
  for seed in seeds:
    runs = claims.run_variants(cfg_lib.get_config, list(VARIANTS.values()), seed, claims.workdir_of(workdir, seed),
                               steps=steps)
    claims.collect(runs, VARIANTS, res, keys=("val/code", "val/docs", "val/mean", "val/web"))
    for name in VARIANTS:
      print(f"slimpajama_dc claim: seed {seed} {name}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in res[name].items()),
            flush=True)
  return judge(data, res)


def judge(data: dict, res: dict) -> dict:
  mean = {v: {k: float(np.mean(x)) for k, x in r.items()} for v, r in res.items()}
  g, l = data["global"], data["local"]
  dedup_checks = {
      "global_cross_recall_ge_0.9": g["cross"] >= 0.9,
      "global_within_recall_ge_0.9": g["within"] >= 0.9,
      "global_precision_ge_0.95": g["precision"] >= 0.95,
      "local_cross_recall_le_0.1": l["cross"] <= 0.1,
      "local_within_recall_ge_0.9": l["within"] >= 0.9,
  }
  d1, dg, dl = mean["dc1"], mean["dc3_global"], mean["dc3_local"]
  train_checks = {
      "dc3_global_mean_beats_dc1_by_5pct": dg["val/mean"] <= 0.95 * d1["val/mean"],
      "dc1_best_on_web": d1["val/web"] <= min(dg["val/web"], dl["val/web"]),
      "global_not_worse_than_local": dg["val/mean"] <= dl["val/mean"],
  }
  passed = all(dedup_checks.values()) and all(train_checks.values())
  lines = [f"Dedup: global finds {g['cross']:.0%} of {data['planted']['cross']} planted cross-source and {g['within']:.0%} of "
           f"{data['planted']['within']} within-source copies (precision {g['precision']:.0%}); local finds {l['cross']:.0%} "
           f"cross-source and {l['within']:.0%} within-source."]
  lines.append(f"Mean held-out loss over sources (nats/byte, 3 seeds): DC-1 {d1['val/mean']:.4f}, DC-3 local "
               f"{dl['val/mean']:.4f}, DC-3 global {dg['val/mean']:.4f} ({(1 - dg['val/mean'] / d1['val/mean']):.1%} lower than DC-1; "
               f"global − local {dg['val/mean'] - dl['val/mean']:+.4f}).")
  lines.append(f"Web loss: DC-1 {d1['val/web']:.4f}, DC-3 global {dg['val/web']:.4f}.")
  diffs = [a - b for a, b in zip(res["dc3_global"]["val/mean"], res["dc3_local"]["val/mean"])]
  lines.append(f"Global − local per seed: {', '.join(f'{x:+.4f}' for x in diffs)} nats/byte; the two runs differ only in the "
               f"{data['planted']['cross']} cross-source copies that local dedup keeps (out of "
               f"{data['global']['removed']} removed documents), so at this scale the gap is within seed noise.")
  failed = [k for k, v in {**dedup_checks, **train_checks}.items() if not v]
  if failed:
    lines.append(f"Not met: {', '.join(failed)}.")
  spread = {v: {k: float(np.std(x)) for k, x in r.items()} for v, r in res.items()}
  return {"passed": passed, "metrics": {"dedup": data, "mean_eval": mean, "std_eval": spread, "per_seed": res,
                                        "checks": {**dedup_checks, **train_checks},
                                        "global_minus_local_per_seed": diffs},
          "analysis": " ".join(lines)}
