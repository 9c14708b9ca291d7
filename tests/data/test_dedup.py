"""Shared dedup module: normalisation, components, planting, and the CLI on a user's files."""

import json

import numpy as np

from paperjax.data import dedup


def _long_docs(n, seed=0, words=250):
  rng = np.random.default_rng(seed)
  vocab = [f"w{i}" for i in range(3000)]
  return [" ".join(rng.choice(vocab, words)) for _ in range(n)]


def test_normalise_and_features_follow_slimpajama():
  assert dedup.normalise("  Hello,\tWORLD!\n\nfoo ") == "hello world foo"
  f = dedup.features("abcdefghijklmnop", ngram=13)
  assert f == {b"abcdefghijklm", b"bcdefghijklmn", b"cdefghijklmno", b"defghijklmnop"}
  assert dedup.features("short") == {b"short"}


def test_components_keep_the_first_member():
  label = dedup.components(6, [(1, 3), (3, 5), (2, 4)])
  assert label.tolist() == [0, 1, 2, 1, 2, 1]


def test_exact_copies_after_normalisation_are_one_cluster():
  docs = _long_docs(5)
  corpora = {"a": docs + [docs[2].upper()], "b": [docs[0] + " !!"]}
  res = dedup.deduplicate(corpora, "global")
  assert res.kept == {"a": [0, 1, 2, 3, 4], "b": []}
  assert sorted(res.removed["a"]) == [5]
  local = dedup.deduplicate(corpora, "local")
  assert local.kept["b"] == [0] and local.removed["a"] == [5]


def test_cli_reads_dirs_jsonl_and_writes_kept_ids(tmp_path):
  docs = _long_docs(4, seed=1)
  d = tmp_path / "corpus"
  d.mkdir()
  for i, t in enumerate(docs[:3]):
    (d / f"{i}.txt").write_text(t)
  jl = tmp_path / "more.jsonl"
  jl.write_text("\n".join(json.dumps({"text": t}) for t in (docs[3], docs[1].replace("w1 ", "w2 ", 1))))
  out = tmp_path / "out"
  rep = dedup.main([str(d), str(jl), "--scope=global", f"--out={out}"])
  assert rep["documents"] == {str(d): 3, str(jl): 2}
  kept = (out / "kept_ids.txt").read_text().splitlines()
  assert kept == [f"{d}\t0", f"{d}\t1", f"{d}\t2", f"{jl}\t0"]
  assert json.loads((out / "report.json").read_text())["cross_source_clusters"] == 1
  rep = dedup.main([str(d), str(jl), "--scope=local", f"--out={out}"])
  assert rep["cross_source_clusters"] == 0 and rep["removed_fraction_total"] == 0.0
