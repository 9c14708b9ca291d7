"""`python -m paperjax.reproduce <slug>`: run a paper's toy claim and record the honest outcome.

A paper's `paperjax/papers/<slug>/claim.py` defines `CLAIM` (one sentence: what should happen) and
`run(seeds, workdir) -> {"passed": bool, "metrics": {...}, "analysis": str}`. The outcome is written to
`paperjax/papers/<slug>/result.json` (committed, so the record travels with the code) whether the claim
held or not; a claim that does not reproduce is recorded as such, with the analysis.
"""

from __future__ import annotations

import datetime
import importlib
import json
import os
import platform
import tempfile
import time

from absl import app, flags

from paperjax import registry

_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to run the claim with.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the claim's runs go (default: a temporary folder).")
_OUT = flags.DEFINE_string("out", None, "Where to write result.json (default: next to the paper's method.py).")


def result_path(slug: str) -> str:
  return os.path.join(registry.PAPERS_DIR, slug, "result.json")


def load_result(slug: str) -> dict | None:
  path = result_path(slug)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def reproduce(slug: str, seeds: list[int], workdir: str | None = None, out: str | None = None) -> dict:
  registry.module(slug)  # a clear error for unknown slugs
  claim = importlib.import_module(f"paperjax.papers.{slug}.claim")
  import jax
  t0 = time.time()
  with tempfile.TemporaryDirectory() as tmp:
    outcome = claim.run(seeds, workdir or tmp)
  record = {
      "slug": slug,
      "claim": claim.CLAIM,
      "passed": bool(outcome["passed"]),
      "metrics": outcome["metrics"],
      "analysis": outcome.get("analysis", ""),
      "seeds": list(seeds),
      "wall_s": round(time.time() - t0, 1),
      "command": f"python -m paperjax.reproduce {slug}" + ("" if seeds == [0, 1, 2] else f" --seeds={','.join(map(str, seeds))}"),
      "date": datetime.date.today().isoformat(),
      "environment": {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                      "devices": jax.device_count(), "python": platform.python_version()},
  }
  path = out or result_path(slug)
  with open(path, "w") as f:
    json.dump(record, f, indent=2, sort_keys=False)
    f.write("\n")
  return record


def main(argv):
  if len(argv) != 2:
    raise app.UsageError(f"Usage: python -m paperjax.reproduce <slug>; known papers: {', '.join(registry.slugs())}.")
  from paperjax import errors
  with errors.one_sentence():
    record = reproduce(argv[1], [int(s) for s in _SEEDS.value], _WORKDIR.value, _OUT.value)
  verdict = "REPRODUCED" if record["passed"] else "NOT REPRODUCED"
  print(f"{argv[1]}: {verdict} — {record['claim']}")
  print(json.dumps(record["metrics"], indent=1))
  if record.get("analysis"):
    print(record["analysis"])
  print(f"recorded in {_OUT.value or result_path(argv[1])} ({record['wall_s']:.0f}s)")


if __name__ == "__main__":
  app.run(main)
