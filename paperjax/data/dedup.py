"""Near-duplicate detection with MinHash + LSH (datasketch), within each source or across all of them.

The rule is SlimPajama's (Shen et al. 2023; Cerebras modelzoo `slimpajama/dedup/to_hash.py`):
  1. normalise: lowercase, drop ASCII punctuation, collapse runs of whitespace to one space;
  2. features: the set of character 13-grams of the normalised text (a text shorter than 13
     characters is one feature);
  3. a 128-permutation MinHash signature per document; Pr[h_i(A) = h_i(B)] = J(A, B), so the fraction
     of equal slots estimates the Jaccard similarity;
  4. LSH with b bands of r rows (datasketch's optimum for threshold 0.8 and 128 permutations:
     b=9, r=13): two documents are candidates when all r rows of some band agree, which happens with
     probability 1 − (1 − s^r)^b at similarity s — an S-curve around (1/b)^(1/r) ≈ 0.84;
  5. candidate pairs are edges of a graph; each connected component keeps one document (the first
     by source order, then index) and the rest are removed.
  `verify=True` additionally drops candidate pairs whose estimated Jaccard is below the threshold
  (SlimPajama does not; it is off by default).

Scope. *local*: steps 4–5 within each source separately (a document duplicated across two sources
survives in both); *global*: over the union of all sources (SlimPajama's choice: cross-source copies
are removed too).

CLI, for a user's own corpus:
  python -m paperjax.data.dedup --scope=global --out=/tmp/dedup  corpus_dir/  more.jsonl  builtin:pydoc
Inputs: a directory (every text file under it is one document), a `.jsonl` file (one document per
line, field `--field`, default "text"), any other file (one document), or a source spec of
`sources.py` (`builtin:pydoc`, `tfds:...`; split `--split`). Writes `<out>/report.json` (counts per
source, removed fraction, LSH parameters, clusters) and `<out>/kept_ids.txt` (`source<TAB>id` lines).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import string
import sys
from collections.abc import Mapping, Sequence

import numpy as np

NGRAM = 13
NUM_PERM = 128
THRESHOLD = 0.8
_PUNCT = str.maketrans("", "", string.punctuation)
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
  return _SPACE.sub(" ", text.lower().translate(_PUNCT).strip())


def features(text: str, ngram: int = NGRAM) -> set[bytes]:
  s = normalise(text)
  if len(s) <= ngram:
    return {s.encode("utf-8")}
  return {s[i:i + ngram].encode("utf-8") for i in range(len(s) - ngram + 1)}


def jaccard(a: set, b: set) -> float:
  return len(a & b) / max(len(a | b), 1)


def signatures(docs: Sequence[str], num_perm: int = NUM_PERM, ngram: int = NGRAM, seed: int = 1) -> list:
  """One datasketch LeanMinHash per document (the same permutations for every document)."""
  from datasketch import LeanMinHash, MinHash  # pylint: disable=g-import-not-at-top
  out = []
  for d in docs:
    m = MinHash(num_perm=num_perm, seed=seed)
    m.update_batch(list(features(d, ngram)))
    out.append(LeanMinHash(m))
  return out


def lsh_params(threshold: float = THRESHOLD, num_perm: int = NUM_PERM) -> tuple[int, int]:
  """(bands, rows) that datasketch chooses for this threshold (minimising weighted FP + FN area)."""
  from datasketch import MinHashLSH  # pylint: disable=g-import-not-at-top
  lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
  return lsh.b, lsh.r


def candidate_probability(s, bands: int, rows: int):
  """Pr[two documents of Jaccard s share at least one band] = 1 − (1 − s^r)^b."""
  return 1.0 - (1.0 - np.asarray(s, np.float64) ** rows) ** bands


def candidate_pairs(sigs: Sequence, bands: int, rows: int) -> set[tuple[int, int]]:
  """Index pairs (i < j) that share a band of the LSH index."""
  from datasketch import MinHashLSH  # pylint: disable=g-import-not-at-top
  if not sigs:
    return set()
  lsh = MinHashLSH(num_perm=len(sigs[0].hashvalues), params=(bands, rows))
  pairs = set()
  for i, m in enumerate(sigs):
    for j in lsh.query(m):
      pairs.add((int(j), i))
    lsh.insert(i, m)
  return pairs


def components(n: int, pairs) -> np.ndarray:
  """Connected-component label (the smallest member index) of each of n nodes (union-find)."""
  parent = list(range(n))

  def find(x):
    while parent[x] != x:
      parent[x] = parent[parent[x]]
      x = parent[x]
    return x

  for i, j in pairs:
    a, b = find(i), find(j)
    if a != b:
      parent[max(a, b)] = min(a, b)
  return np.array([find(i) for i in range(n)])


@dataclasses.dataclass
class Result:
  scope: str
  bands: int
  rows: int
  names: list[str]
  kept: dict[str, list[int]]           # per source: ids kept
  removed: dict[str, list[int]]        # per source: ids removed
  clusters: list[list[tuple[str, int]]]  # every component with more than one member

  def report(self) -> dict:
    sizes = {n: len(self.kept[n]) + len(self.removed[n]) for n in self.names}
    total = sum(sizes.values())
    return {
        "scope": self.scope, "lsh": {"bands": self.bands, "rows": self.rows},
        "documents": sizes, "kept": {n: len(self.kept[n]) for n in self.names},
        "removed_fraction": {n: len(self.removed[n]) / max(sizes[n], 1) for n in self.names},
        "removed_fraction_total": sum(len(v) for v in self.removed.values()) / max(total, 1),
        "duplicate_clusters": len(self.clusters),
        "cross_source_clusters": sum(len({s for s, _ in c}) > 1 for c in self.clusters),
        "clusters": [[f"{s}:{i}" for s, i in c] for c in self.clusters[:1000]],
    }


def deduplicate(corpora: Mapping[str, Sequence[str]], scope: str = "global", threshold: float = THRESHOLD,
                num_perm: int = NUM_PERM, ngram: int = NGRAM, seed: int = 1, verify: bool = False,
                bands: int | None = None, rows: int | None = None, sigs: Mapping[str, list] | None = None) -> Result:
  """Near-duplicates of `corpora` ({source: documents}) by SlimPajama's rule, `scope` local or global.
  `sigs` reuses signatures computed once (local and global dedup of the same corpora)."""
  if scope not in ("local", "global"):
    raise ValueError(f"scope={scope!r} is unknown; use 'local' (within each source) or 'global' (across sources).")
  if bands is None or rows is None:
    bands, rows = lsh_params(threshold, num_perm)
  names = list(corpora)
  sigs = dict(sigs) if sigs is not None else {n: signatures(corpora[n], num_perm, ngram, seed) for n in names}
  ids = [(n, i) for n in names for i in range(len(corpora[n]))]
  flat = [sigs[n][i] for n, i in ids]
  groups = [list(range(len(ids)))] if scope == "global" else [
      [k for k, (n, _) in enumerate(ids) if n == name] for name in names]
  pairs = set()
  for g in groups:
    for a, b in candidate_pairs([flat[k] for k in g], bands, rows):
      if not verify or flat[g[a]].jaccard(flat[g[b]]) >= threshold:
        pairs.add((g[a], g[b]))
  label = components(len(ids), pairs)
  keep = label == np.arange(len(ids))  # the first member (source order, then index) of each component
  kept = {n: [] for n in names}
  removed = {n: [] for n in names}
  for k, (n, i) in enumerate(ids):
    (kept if keep[k] else removed)[n].append(i)
  members: dict[int, list] = {}
  for k, l in enumerate(label):
    members.setdefault(int(l), []).append(ids[k])
  clusters = [m for m in members.values() if len(m) > 1]
  return Result(scope, bands, rows, names, kept, removed, clusters)


# --------------------------------------------------------------------------- planted duplicates


def near_copy(text: str, rng: np.random.Generator, edits: int = 1) -> str:
  """`text` with `edits` words replaced by random lowercase words (a near-duplicate)."""
  words = text.split(" ")
  for _ in range(edits):
    k = int(rng.integers(len(words)))
    words[k] = "".join(rng.choice(list(string.ascii_lowercase), int(rng.integers(3, 8))))
  return " ".join(words)


def plant_duplicates(corpora: Mapping[str, Sequence[str]], fraction: float, cross_fraction: float, seed: int = 0,
                     edits_per_kchar: float = 0.5, min_chars: int = 1000):
  """Corpora with planted near-duplicates, and the ground truth.

  Of each source's m documents of ≥ `min_chars` characters, ⌊fraction·m⌋ get a near copy appended to
  the same source (within-source duplicates) and ⌊cross_fraction·m⌋ others a near copy appended to
  another source, drawn uniformly (cross-source duplicates). A copy replaces about `edits_per_kchar` words per 1,000 characters (at
  least one); only documents of ≥ `min_chars` characters are copied, so one edit keeps the copy's
  Jaccard similarity near 0.95 (on a 100-character docstring one edited word would drop it to ~0.7).
  Returns (corpora, planted) with planted = [((src, i), (dst, j)), ...]: copy (dst, j) of (src, i)."""
  rng = np.random.default_rng([seed, 6007])
  out = {n: list(d) for n, d in corpora.items()}
  names = list(corpora)
  planted = []
  for si, n in enumerate(names):
    docs = corpora[n]
    pool = [i for i in range(len(docs)) if len(docs[i]) >= min_chars]
    k_in, k_x = int(fraction * len(pool)), int(cross_fraction * len(pool)) if len(names) > 1 else 0
    if k_in + k_x > len(pool):
      raise ValueError(f"fraction + cross_fraction = {fraction + cross_fraction} copies more than all of "
                       f"source {n!r}'s long documents; keep the sum ≤ 1.")
    picks = rng.choice(pool, k_in + k_x, replace=False)
    for t, i in enumerate(picks):
      dst = n if t < k_in else names[(si + 1 + int(rng.integers(len(names) - 1))) % len(names)]
      edits = max(1, int(round(len(docs[i]) / 1000 * edits_per_kchar)))
      out[dst].append(near_copy(docs[i], rng, edits))
      planted.append(((n, int(i)), (dst, len(out[dst]) - 1)))
  return out, planted


def planted_recall(result: Result, planted) -> dict[str, float]:
  """Fraction of planted within- and cross-source copies that `result` puts in their original's cluster."""
  where = {}
  for c, members in enumerate(result.clusters):
    for m in members:
      where[m] = c
  hit = {"within": [], "cross": []}
  for orig, copy in planted:
    found = orig in where and where.get(copy) == where[orig]
    hit["within" if orig[0] == copy[0] else "cross"].append(found)
  return {k: float(np.mean(v)) if v else float("nan") for k, v in hit.items()}


# --------------------------------------------------------------------------- CLI


def _read_input(arg: str, field: str, split: str) -> Sequence[str]:
  if os.path.isdir(arg):
    docs = []
    for dirpath, dirnames, filenames in os.walk(arg):
      dirnames.sort()
      for f in sorted(filenames):
        with open(os.path.join(dirpath, f), encoding="utf-8", errors="replace") as fh:
          docs.append(fh.read())
    return docs
  if os.path.isfile(arg):
    with open(arg, encoding="utf-8", errors="replace") as fh:
      if arg.endswith(".jsonl"):
        docs = []
        for ln, line in enumerate(fh, 1):
          if line.strip():
            rec = json.loads(line)
            if field not in rec:
              raise ValueError(f"{arg}:{ln} has no field {field!r} (fields {sorted(rec)}); pass --field=<name>.")
            docs.append(str(rec[field]))
        return docs
      return [fh.read()]
  if ":" in arg:
    from paperjax.data import sources  # pylint: disable=g-import-not-at-top
    return sources.text_documents(arg, split)
  raise FileNotFoundError(f"Input {arg!r} is neither a file, a directory nor a source spec (builtin:pydoc, tfds:...); "
                          "check the path.")


def main(argv=None) -> dict:
  import argparse  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(prog="python -m paperjax.data.dedup", description=__doc__.split("\n\n")[0])
  p.add_argument("inputs", nargs="+", help="directories, files, .jsonl files or source specs; each is one source")
  p.add_argument("--scope", choices=("global", "local"), default="global")
  p.add_argument("--threshold", type=float, default=THRESHOLD)
  p.add_argument("--num_perm", type=int, default=NUM_PERM)
  p.add_argument("--ngram", type=int, default=NGRAM)
  p.add_argument("--verify", action="store_true", help="drop candidate pairs whose estimated Jaccard < threshold")
  p.add_argument("--field", default="text", help="the text field of .jsonl inputs")
  p.add_argument("--split", default="train", help="split of source-spec inputs")
  p.add_argument("--max_docs", type=int, default=0, help="read at most this many documents per input (0: all)")
  p.add_argument("--out", required=True, help="folder for report.json and kept_ids.txt")
  a = p.parse_args(argv)
  corpora = {}
  for arg in a.inputs:
    docs = _read_input(arg, a.field, a.split)
    corpora[arg] = [docs[i] for i in range(min(len(docs), a.max_docs or len(docs)))]
  res = deduplicate(corpora, a.scope, a.threshold, a.num_perm, a.ngram, verify=a.verify)
  os.makedirs(a.out, exist_ok=True)
  report = res.report()
  with open(os.path.join(a.out, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
  with open(os.path.join(a.out, "kept_ids.txt"), "w") as f:
    for n in res.names:
      f.writelines(f"{n}\t{i}\n" for i in res.kept[n])
  print(f"dedup ({a.scope}, b={res.bands} r={res.rows}): removed {report['removed_fraction_total']:.1%} of "
        f"{sum(report['documents'].values())} documents; {report['duplicate_clusters']} clusters "
        f"({report['cross_source_clusters']} across sources) → {a.out}/report.json, {a.out}/kept_ids.txt")
  return report


if __name__ == "__main__":
  try:
    main()
  except (ValueError, FileNotFoundError) as e:
    sys.exit(f"dedup: {e}")
