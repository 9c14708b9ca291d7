"""iCT's toy claim: at equal training steps, the improved recipe beats the original consistency-training
recipe on the 8-Gaussian ring.

Per seed, the tiny preset (MLP 3×128, batch 256, 3,000 steps, Adam 3e-4) trained twice: `variant=ict`
(no EMA teacher, pseudo-Huber, lognormal i, λ = 1/(σ_{i+1} − σ_i), N doubling 10 → 1280) and
`variant=ct` (EMA teacher μ0 = 0.9, squared L2, uniform i, λ = 1, N from 2 to 150). Both evaluate the
same evaluation EMA (0.999) on 1,000 samples against 2,000 held-out points. Checks (fixed before the
first run):
  (i)  main: iCT's one-step energy distance < CT's (mean of 3 seeds);
  (ii) recorded: iCT's two-step energy distance < CT's; the digest's absolute bar for one-step iCT
       samples (≥ 7/8 modes covered and ≥ 80% of samples within 3 std of a mode).
The claim passes on (i).
"""

from __future__ import annotations

from paperjax import claims

CLAIM = ("On the 8-Gaussian ring at equal steps, iCT (no EMA teacher, pseudo-Huber, lognormal noise levels, "
         "doubling curriculum, 1/Δσ weights) gives one-step samples with a lower energy distance to held-out data "
         "than the original consistency-training recipe.")
VARIANTS = {"ict": "tiny,variant=ict", "ct": "tiny,variant=ct"}
METRICS = ("one_step_energy_distance", "one_step_mmd", "one_step_modes_covered", "one_step_within_3std",
           "two_step_energy_distance", "two_step_mmd", "two_step_modes_covered", "two_step_within_3std")


def run(seeds, workdir: str, steps: int | None = None) -> dict:
  from configs import ict as cfg_lib
  rows = []
  for seed in seeds:
    out = claims.run_variants(cfg_lib.get_config, list(VARIANTS.values()), seed, workdir, steps=steps)
    row = {f"{name}/{m}": float(out[v]["eval"][m]) for name, v in VARIANTS.items() for m in METRICS}
    rows.append(row)
    print("ict claim: seed", seed, {k: round(v, 4) for k, v in row.items()}, flush=True)
  return judge(rows)


def judge(rows: list[dict]) -> dict:
  m = claims.mean_over_seeds(rows)
  checks = {
      "i_one_step_energy_ict_below_ct": m["ict/one_step_energy_distance"] < m["ct/one_step_energy_distance"],
      "ii_two_step_energy_ict_below_ct": m["ict/two_step_energy_distance"] < m["ct/two_step_energy_distance"],
      "ii_one_step_ict_covers_7_of_8_modes_80pct_within_3std": (m["ict/one_step_modes_covered"] >= 7
                                                                and m["ict/one_step_within_3std"] >= 0.8),
  }
  passed = checks["i_one_step_energy_ict_below_ct"]
  wins = sum(r["ict/one_step_energy_distance"] < r["ct/one_step_energy_distance"] for r in rows)
  lines = [f"One-step energy distance: iCT {m['ict/one_step_energy_distance']:.4f} vs CT "
           f"{m['ct/one_step_energy_distance']:.4f} (iCT lower in {wins}/{len(rows)} seeds); two-step: iCT "
           f"{m['ict/two_step_energy_distance']:.4f} vs CT {m['ct/two_step_energy_distance']:.4f}.",
           f"Modes covered (of 8), one-step / two-step: iCT {m['ict/one_step_modes_covered']:.1f} / "
           f"{m['ict/two_step_modes_covered']:.1f}, CT {m['ct/one_step_modes_covered']:.1f} / "
           f"{m['ct/two_step_modes_covered']:.1f}; within 3 std: iCT {m['ict/one_step_within_3std']:.2f} / "
           f"{m['ict/two_step_within_3std']:.2f}, CT {m['ct/one_step_within_3std']:.2f} / {m['ct/two_step_within_3std']:.2f}."]
  lines += claims.not_met(checks)
  if not checks["ii_one_step_ict_covers_7_of_8_modes_80pct_within_3std"]:
    lines.append("One-step samples of a 3×128 MLP after 3,000 steps are still blurred between the modes (σ_max = 80 "
                 "is 80× the data's scale, and one network evaluation must undo it); a second step from σ_mid = 0.821 "
                 "sharpens them.")
  if m["ct/one_step_within_3std"] < 0.05 and m["ct/two_step_within_3std"] < 0.1:
    lines.append("The CT baseline stays collapsed: its one- and two-step samples sit in a blob around the origin, "
                 "where the zero-initialised network starts (f ≈ c_skip·x), while its squared-L2 consistency loss "
                 "falls to ~1e-4 — with an EMA teacher (μ → 0.998 as N grows to 150), λ = 1 and uniform i, "
                 "matching a slowly moving teacher at neighbouring noise levels is satisfied by a near-constant map, "
                 "and 3,000 steps do not get it out. The gap therefore measures how much faster iCT leaves that "
                 "solution at toy scale, not the paper's CIFAR-10 FID ratio.")
  return {"passed": passed, "metrics": {"mean": m, "per_seed": rows, "checks": checks}, "analysis": " ".join(lines)}
