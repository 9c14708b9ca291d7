"""SlimPajama-DC (Shen et al., 2023): global vs local MinHash dedup and source combinations at a fixed
token budget.

Presets (`--config=configs/slimpajama_dc.py:<preset>[,dc=<combination>][,dedup=none|local|global]`):

  tiny   (default) a 2-layer byte-level decoder (d=64, 128-token rows) on three offline sources —
         web = Python's documentation prose, code = stdlib email source, docs = the
         docstrings of five stdlib packages — with near-duplicates planted in the train split (20% of
         the documents of ≥ 600 characters
         copied within their source, 10% into another source), deduplicated globally; combination
         DC-3 (web 50 / code 25 / docs 25), 300 steps of 16 rows on 2 CPU cores:
           python -m paperjax.main --config=configs/slimpajama_dc.py
         Expect: ~1 min; the summary's data/dedup block shows the removed fraction per source and the
         planted recall (cross-source ≈ 1.0 with dedup=global, 0.0 with dedup=local); eval/val/<source>
         is the held-out loss per source, eval/val/mean their mean (≈ 2 nats/byte).
         Combinations: dc=1 web only, dc=2 web+code (50/50), dc=3 web/code/docs (50/25/25),
         dc=4 size-proportional.
  base   the paper's 1.3B decoder (24 layers, d=2048, 16 heads, SentencePiece 32K, 2,048-token rows;
         the paper used Cerebras-GPT with ALiBi + SwiGLU on 16 CS-2s, 330B tokens) on prepared tfds
         corpora standing in for SlimPajama's sources: web = tfds:c4/en, wiki = tfds:wiki40b/en,
         books = tfds:pg19, arxiv = tfds:scientific_papers/arxiv (field article); proportions of the
         full SlimPajama mix renormalised over these four (CC+C4 78.9, Wiki 3.8, Books 4.2, ArXiv 4.6);
         sized for a v4-128 slice or 64×H100 (FSDP, bf16, 1M tokens per step, 315K steps):
           python -m paperjax.main --config=configs/slimpajama_dc.py:base --workdir=gs://…/spdc
         Dedup is off here (slimpajama.dedup="none"): deduplicate the corpora offline, shard by shard,
         with `python -m paperjax.data.dedup`, and point the sources at the kept documents.
"""

from paperjax import mixture_lm

PRESETS = ("tiny", "base")
# Source proportions of the toy combinations (SlimPajama's DC-1 … DC-6 go from CommonCrawl only to all
# seven sources; these go from web only to all three).
COMBINATIONS = {
    "1": {"web": 1.0},
    "2": {"web": 0.5, "code": 0.5},
    "3": {"web": 0.5, "code": 0.25, "docs": 0.25},
    "4": {"web": 0.45, "code": 0.35, "docs": 0.2},   # ≈ proportional to the sources' train bytes
}


def get_config(arg: str | None = None):
  from paperjax import config_lib
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = mixture_lm.config(
      "slimpajama_dc",
      sources={"web": "builtin:pydoc", "code": "builtin:stdlib_code/email",
               "docs": "builtin:docstrings/email+docstrings/asyncio+docstrings/logging+docstrings/unittest+docstrings/http"},
      weights=COMBINATIONS["3"], length=128)
  c.preset = preset
  c.slimpajama = dict(
      dedup="global",            # none | local | global
      threshold=0.8, num_perm=128,
      plant_fraction=0.2,        # of each source's long documents, a near copy in the same source
      plant_cross_fraction=0.1,  # ... and in another source
      plant_seed=0, min_chars=600)
  dc = kv.pop("dc", "3")
  if dc not in COMBINATIONS:
    raise ValueError(f"Unknown combination dc={dc!r} in 'configs/slimpajama_dc.py:{arg}'; use one of {sorted(COMBINATIONS)}.")
  c.mixture.weights = COMBINATIONS[dc]
  c.slimpajama.dedup = kv.pop("dedup", "global")
  c.train.update(steps=300, log_every=50)

  if preset == "base":
    c.model.update(d_model=2048, num_heads=16, head_dim=128, d_ff=5461, num_layers=24, activation="silu",
                   dtype="bfloat16", tie_embeddings=False, scan_layers=True, remat="dots_no_batch")
    c.mixture.update(sources={"web": "tfds:c4/en", "wiki": "tfds:wiki40b/en", "books": "tfds:pg19",
                              "arxiv": "tfds:scientific_papers/arxiv?field=article"},
                     weights={"web": 78.9, "wiki": 3.8, "books": 4.2, "arxiv": 4.6}, length=2048)
    c.slimpajama.update(dedup="none", plant_fraction=0.0, plant_cross_fraction=0.0)
    c.data.update(tokenizer="sentencepiece", vocab_size=32000, batch_size=512, raw_length=2048)
    c.mesh.shape = (1, -1, 1)
    c.optimizer.update(lr=2e-4, warmup_steps=2000, schedule="cosine", weight_decay=0.1, b2=0.95)
    c.train.update(steps=315_000, log_every=100, eval_every=5000, eval_batches=20, ckpt_every=5000, ckpt_every_s=1800.0)
    c.eval.update(batch_size=64, em_examples=0)
  return mixture_lm.apply_args(c, kv, f"configs/slimpajama_dc.py:{arg}", "dc=, dedup=, ")
