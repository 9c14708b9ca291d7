"""SlimPajama-DC: Understanding Data Combinations for LLM Training (Shen et al., 2023).
https://arxiv.org/abs/2309.10818

Rule. Two data knobs at a fixed token budget, no new loss:
  dedup scope  MinHash-LSH near-duplicate removal (character 13-grams of lowercased, punctuation-free,
               whitespace-collapsed text; 128 permutations; Jaccard threshold 0.8 → 9 bands × 13 rows;
               connected components of candidate pairs, one document kept per component), either
               *local* (within each source) or *global* (across all sources, SlimPajama's choice);
  combination  the proportions of the sources in the training mixture (DC-1 … DC-6: from CommonCrawl
               only to the full seven-source SlimPajama mix), every configuration trained on the same
               number of tokens.
Both are shared code: the dedup rule is `paperjax/data/dedup.py` (datasketch), the mixture
`paperjax/data/mixture.py`, the LM and its per-source evaluation `paperjax/mixture_lm.py`. This file
only turns the sources into deduplicated training rows.

Toy (configs/slimpajama_dc.py): three offline sources stand in for SlimPajama's — `web` = Python's
documentation prose (the CommonCrawl analogue), `code` = stdlib source, `docs` = stdlib docstrings
(which overlap both). Near-duplicates are planted into the train split (`slimpajama.plant_*`, see
`dedup.plant_duplicates`): within each source and across sources, so global and local dedup differ
in exactly the way the paper describes. Validation data is never planted into or deduplicated.

Deviations. The paper's 1.3B/330B-token runs and its benchmark suite are replaced by a tiny byte-level
decoder and held-out loss per source. The real preset trains on tfds corpora with `dedup="none"`:
deduplicating billions of documents needs a sharded job (the CLI `python -m paperjax.data.dedup` is
single-process); run it per shard offline and train on the kept ids.
"""

from __future__ import annotations

import dataclasses
import functools

from paperjax import mixture_lm
from paperjax.data import dedup, mixture, pipeline, sources
from paperjax.method import Method, PaperInfo

PAPER = PaperInfo(slug="slimpajama_dc", title="SlimPajama-DC: Understanding Data Combinations for LLM Training",
                  authors="Shen, Tao, Ma, Neiswanger, Liu, Wang, Tan, Hestness, Vassilieva, Soboleva, Xing",
                  year=2023, url="https://arxiv.org/abs/2309.10818", family="lm-data-mixture")
SCOPES = ("none", "local", "global")


@functools.lru_cache(maxsize=4)
def planted_corpora(specs: tuple, fraction: float, cross_fraction: float, seed: int, min_chars: int):
  """({source: train documents with planted near-duplicates}, planted pairs) — cached per process."""
  corpora = {n: list(sources.text_documents(spec, "train")) for n, spec in specs}
  if fraction <= 0 and cross_fraction <= 0:
    return corpora, []
  return dedup.plant_duplicates(corpora, fraction, cross_fraction, seed=seed, min_chars=min_chars)


@functools.lru_cache(maxsize=4)
def deduplicated(specs: tuple, fraction: float, cross_fraction: float, seed: int, min_chars: int,
                 threshold: float, num_perm: int):
  """{scope: dedup.Result} of the planted corpora (signatures computed once for both scopes)."""
  corpora, _ = planted_corpora(specs, fraction, cross_fraction, seed, min_chars)
  sigs = {n: dedup.signatures(d, num_perm) for n, d in corpora.items()}
  return {scope: dedup.deduplicate(corpora, scope, threshold, num_perm, sigs=sigs) for scope in ("local", "global")}


def _key(config):
  s = config.slimpajama
  specs = tuple((n, spec) for n, spec in dict(config.mixture.sources).items())
  return specs, float(s.plant_fraction), float(s.plant_cross_fraction), int(s.plant_seed), int(s.min_chars)


def train_documents(config) -> tuple[dict, dict]:
  """({source: the documents trained on}, dedup report or {}) for `slimpajama.dedup`."""
  scope = str(config.slimpajama.dedup)
  if scope not in SCOPES:
    raise ValueError(f"slimpajama.dedup={scope!r} is unknown; use one of {SCOPES}.")
  corpora, planted = planted_corpora(*_key(config))
  if scope == "none":
    return corpora, {}
  res = deduplicated(*_key(config), float(config.slimpajama.threshold), int(config.slimpajama.num_perm))[scope]
  report = {k: v for k, v in res.report().items() if k != "clusters"}
  if planted:
    report["planted_recall"] = dedup.planted_recall(res, planted)
  return {n: [corpora[n][i] for i in res.kept[n]] for n in corpora}, report


def make(config, ctx) -> Method:
  holder: dict = {}

  def rows_fn(config_, ctx_, split):
    if split != config_.data.get("train_split", "train"):
      return mixture_lm.rows(config_, ctx_, split)  # held-out data is never planted into nor deduplicated
    from paperjax import data as data_lib  # pylint: disable=g-import-not-at-top
    docs, holder["dedup"] = train_documents(config_)
    cache = data_lib.cache_dir_for(ctx_.workdir)
    m = config_.mixture
    out = {}
    for i, (n, d) in enumerate(docs.items()):
      key = f"slimpajama|{n}|{config_.slimpajama.to_json()}|{dict(m.sources)[n]}"
      stream = pipeline.token_stream(d, ctx_.tokenizer, max_chars=int(m.get("max_chars", 0) or 0) or None,
                                     cache_dir=cache, cache_key=key)
      out[n] = mixture.TextRows(pipeline.TokenChunks(stream, int(m.length)), i)
    return out

  m = mixture_lm.method(config, ctx, rows_fn=rows_fn)
  make_iterator = m.make_iterator

  def make_iterator_with_report(ctx_):
    it = make_iterator(ctx_)
    it.info = {"dedup": holder.get("dedup", {})}  # into the run's summary["data"]
    return it

  return dataclasses.replace(m, make_iterator=make_iterator_with_report)
