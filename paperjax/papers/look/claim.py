"""LOOK's toy claim on digits: pretraining on coarse labels with the leave-one-out kNN loss keeps
more of the fine (sub-class) structure than cross-entropy.

Per seed, the tiny preset twice (mode=look and mode=ce: same backbone, data, coarse labels
{0,6,8,9}/{1,4,7}/{2,3,5}, steps). Then the frozen backbone features are probed on the fine 10-class
labels (ridge linear probe and weighted kNN, train split → 360 held-out digits), and on the coarse
labels (to check the two pretrainings are comparable upstream).
Threshold (the digest's, fixed before the record): LOOK's fine linear probe ≥ CE's + 5 pts, with
coarse kNN accuracy within 3 pts of CE's. The fine kNN gap is recorded as well.
"""

from __future__ import annotations

from paperjax import claims

CLAIM = ("Pretrained on 3 coarse digit super-classes, LOOK's backbone features give a ≥5-point higher fine 10-class "
         "linear-probe accuracy than cross-entropy features, at similar coarse accuracy.")
KEYS = ("fine_linear_probe", "coarse_linear_probe", "fine_knn", "coarse_knn")


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  from configs import look as look_config
  rows = []
  for seed in seeds:
    runs = claims.run_variants(look_config.get_config, ("tiny,mode=look", "tiny,mode=ce"), seed, workdir, steps=steps)
    r = {f"{mode}_{k}": float(runs[f"tiny,mode={mode}"]["eval"][k]) for mode in ("look", "ce") for k in KEYS}
    rows.append(r)
    print("look claim: seed", seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  gap_lp = m["look_fine_linear_probe"] - m["ce_fine_linear_probe"]
  gap_knn = m["look_fine_knn"] - m["ce_fine_knn"]
  checks = {"fine_linear_probe_gain_ge_5pts": gap_lp >= 0.05,
            "coarse_knn_within_3pts": abs(m["look_coarse_knn"] - m["ce_coarse_knn"]) <= 0.03}
  analysis = (f"Fine 10-class probe of the backbone: linear LOOK {m['look_fine_linear_probe']:.3f} vs CE "
              f"{m['ce_fine_linear_probe']:.3f} ({gap_lp:+.3f}); kNN LOOK {m['look_fine_knn']:.3f} vs CE "
              f"{m['ce_fine_knn']:.3f} ({gap_knn:+.3f}). Coarse kNN: {m['look_coarse_knn']:.3f} vs {m['ce_coarse_knn']:.3f}.")
  failed = [k for k, v in checks.items() if not v]
  if failed:
    analysis += f" Not met: {failed}."
    if not checks["fine_linear_probe_gain_ge_5pts"] and gap_knn >= 0.05:
      analysis += (" CE's 128-d features still separate the fine classes linearly (a ridge probe on 1,437 examples "
                   "recovers them), but their neighbourhoods mix sub-classes, which the kNN probe exposes; LOOK's "
                   "advantage shows in the local structure, not in linear separability, at this scale.")
  return {"passed": not failed, "metrics": {"mean": m, "fine_linear_probe_gap": gap_lp, "fine_knn_gap": gap_knn,
                                            "per_seed": rows, "checks": checks}, "analysis": analysis}
