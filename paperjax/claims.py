"""The loop every toy claim shares: train a few variants of one config per seed, quietly, each in its
own workdir, and hand back their summaries. A paper's `claim.py` then only extracts its metrics and
judges them (its `judge` is what its tests check by hand)."""

from __future__ import annotations

import os
from typing import Callable, Sequence


def run_variants(get_config: Callable, variants: Sequence[str], seed: int, workdir: str | Callable[[str], str],
                 args: str = "", steps: int | None = None, adjust: Callable | None = None) -> dict:
  """{variant: summary} of `train.run` for `get_config(f"{variant},{args},seed={seed}")`.

  `workdir` is a folder (each variant gets `<variant>-seed<seed>` in it) or a function of the variant.
  `steps` overrides train.steps (for quick checks of a claim's plumbing); `adjust(config)` edits each
  config in place before it runs (e.g. more evaluation batches for a tighter estimate)."""
  from paperjax import train  # pylint: disable=g-import-not-at-top
  out = {}
  for variant in variants:
    c = get_config(",".join(p for p in (variant, args, f"seed={seed}") if p))
    if steps:
      c.train.steps = steps
    c.train.progress = False
    if adjust is not None:
      adjust(c)
    wd = workdir(variant) if callable(workdir) else os.path.join(workdir, f"{variant.replace('=', '_').replace(',', '_')}-seed{seed}")
    out[variant] = train.run(c, wd)
  return out


def collect(runs: dict, variants: dict, into: dict, keys: Sequence[str] | None = None) -> None:
  """Append each named variant's eval metrics (every one, or only `keys`) to `into[name][metric]`:
  `runs` is `run_variants`'s output, `variants` {name: variant string}; per-seed lists for a judge."""
  for name, variant in variants.items():
    ev = runs[variant]["eval"]
    for k in (keys if keys is not None else sorted(ev)):
      into.setdefault(name, {}).setdefault(k, []).append(float(ev[k]))


def workdir_of(workdir: str, seed: int) -> Callable[[str], str]:
  """`<workdir>/<variant without , and =>-seed<seed>`: a readable folder per variant and seed."""
  return lambda v: os.path.join(workdir, f"{v.replace(',', '_').replace('=', '')}-seed{seed}")


def mean_over_seeds(rows: Sequence[dict]) -> dict:
  """{metric: mean over the per-seed rows} — what every judge compares (rows share their keys)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def not_met(checks: dict) -> list[str]:
  """The sentence a judge's analysis ends on when checks failed (`lines += not_met(checks)`), or []."""
  failed = [k for k, v in checks.items() if not v]
  return [f"Not met: {failed}."] if failed else []
