"""Data: sources (`tfds:`, `builtin:`, `synthetic:`), tokenizers, grain pipelines.

`build_source(config, split, tokenizer)` turns `config.data` into a random-access source:
  text     documents → one token stream → chunks of `data.raw_length` tokens (np.int32 arrays)
  records  dict records as the source gives them (digits, shapes, tables, tfds image datasets); on the
           train split, `data.subset` picks a label budget / long tail / unlabelled view (subsets.py)
"""

from __future__ import annotations

import os

from paperjax.data import pipeline


def build_tokenizer(data_cfg, cache_dir: str | None):
  from paperjax.data import sources, tokenizers
  if data_cfg.get("kind", "text") != "text":
    return None
  corpus = None
  if data_cfg.tokenizer != "byte":
    corpus = sources.text_documents(data_cfg.source, "train")
  return tokenizers.make_tokenizer(
      data_cfg.tokenizer, specials=tuple(data_cfg.get("specials", ("[NLU]", "[NLG]", "[S2S]"))),
      num_sentinels=int(data_cfg.get("num_sentinels", 100)), vocab_size=data_cfg.get("vocab_size") or None,
      corpus=corpus, cache_dir=cache_dir)


def build_source(data_cfg, split: str, tokenizer=None, cache_dir: str | None = None):
  from paperjax.data import sources
  kind = data_cfg.get("kind", "text")
  if kind == "text":
    docs = sources.text_documents(data_cfg.source, split)
    if len(docs) == 0:
      raise ValueError(f"data.source={data_cfg.source!r} has no documents in split {split!r}; "
                       "point data.source at a non-empty corpus.")
    max_chars = int(data_cfg.get("max_chars", 0)) or None
    stream = pipeline.token_stream(docs, tokenizer, max_chars=max_chars, cache_dir=cache_dir,
                                   cache_key=f"{data_cfg.source}|{split}")
    return pipeline.TokenChunks(stream, int(data_cfg.raw_length))
  if kind == "records":
    recs = sources.records(data_cfg.source, split)
    subset = data_cfg.get("subset", None)
    if subset is not None and split == data_cfg.get("train_split", "train"):
      from paperjax.data import subsets  # label budgets, long tails, labelled/unlabelled views
      recs = subsets.apply(recs, subset)
    return recs
  raise ValueError(f"data.kind={kind!r} is unknown; use 'text' or 'records'.")


def cache_dir_for(workdir: str | None) -> str | None:
  root = os.environ.get("PAPERJAX_DATA_CACHE")
  if root:
    return root
  return os.path.join(workdir, "cache") if workdir else None
