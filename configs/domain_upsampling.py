"""Domain upsampling at the end of training (Blakeney et al., 2024): the last fraction f of training
draws from a mix in which the domain data (code, math) is upweighted.

Presets (`--config=configs/domain_upsampling.py:<preset>[,f=<fraction>][,drop=<domain>]`):

  tiny   (default) a 2-layer byte-level decoder (d=64, 128-token rows) on three offline domains —
         web = Python's documentation prose, code = stdlib email source, math = two-digit addition
         ("41+7=48", trained on the answers) — base mix 90/5/5 for the first 85% of 400 steps, then
         40/30/30 (f = 0.15); 2 CPU cores:
           python -m paperjax.main --config=configs/domain_upsampling.py
         Expect: ~1 min; train metrics mix/<domain> show the realised proportions (≈ 0.83/0.09/0.09 at
         the end), eval/val/<domain> the held-out loss per domain and eval/em/math the addition exact
         match. f=0 is the baseline (no upsampling), f=1 the upsampled mix throughout; drop=code
         removes code from the final phase (the paper's cheap dataset-utility measurement).
  toy    the digest's toy scale, which the recorded claim runs (`python -m paperjax.reproduce
         domain_upsampling`): the same data and mixes, a 2-layer d=128 decoder (4 heads of 32), 1,500
         steps; ~3 min per run on 2 CPU cores:
           python -m paperjax.main --config=configs/domain_upsampling.py:toy,f=0.15
  base   a 7B-class decoder (32 layers, d=4096, SentencePiece 32K, 2,048-token rows) on prepared tfds
         corpora: web = tfds:c4/en, academic = tfds:scientific_papers/arxiv, books = tfds:pg19,
         math = tfds:math_dataset/arithmetic__add_or_sub (field question); base mix 85/5/5/5, final 20%
         at 40/20/10/30. Sized for a v4-512 slice or 256×H100 (FSDP, bf16, 4M tokens per step,
         250K steps ≈ 1T tokens):
           python -m paperjax.main --config=configs/domain_upsampling.py:base --workdir=gs://…/upsample
"""

from paperjax import mixture_lm

PRESETS = ("tiny", "toy", "base")


def get_config(arg: str | None = None):
  from paperjax import config_lib
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = mixture_lm.config(
      "domain_upsampling",
      sources={"web": "builtin:pydoc", "code": "builtin:stdlib_code/email", "math": "synthetic:arithmetic/2"},
      weights={"web": 0.90, "code": 0.05, "math": 0.05}, length=128)
  c.preset = preset
  c.upsampling = dict(fraction=0.15, weights={"web": 0.40, "code": 0.30, "math": 0.30}, drop="")
  c.train.update(steps=400, log_every=50)
  c.eval.em_examples = 200

  if preset == "toy":   # the digest's toy: 2 layers, d=128, 128-token context, 1,500 steps
    c.model.update(d_model=128, num_heads=4, head_dim=32, d_ff=384)
    c.train.update(steps=1500, log_every=100)
  if preset == "base":
    c.model.update(d_model=4096, num_heads=32, head_dim=128, d_ff=11008, num_layers=32, activation="silu",
                   dtype="bfloat16", tie_embeddings=False, scan_layers=True, remat="dots_no_batch")
    c.mixture.update(sources={"web": "tfds:c4/en", "academic": "tfds:scientific_papers/arxiv?field=article",
                              "books": "tfds:pg19", "math": "tfds:math_dataset/arithmetic__add_or_sub?field=question"},
                     weights={"web": 0.85, "academic": 0.05, "books": 0.05, "math": 0.05}, length=2048)
    c.upsampling.update(fraction=0.2, weights={"web": 0.4, "academic": 0.2, "books": 0.1, "math": 0.3})
    c.data.update(tokenizer="sentencepiece", vocab_size=32000, batch_size=2048, raw_length=2048)
    c.mesh.shape = (1, -1, 1)
    c.optimizer.update(lr=3e-4, warmup_steps=2000, schedule="cosine", weight_decay=0.1, b2=0.95)
    c.train.update(steps=250_000, log_every=100, eval_every=5000, eval_batches=20, ckpt_every=2000, ckpt_every_s=1800.0)
    c.eval.update(batch_size=64, em_examples=0)

  if "f" in kv:
    c.upsampling.fraction = float(kv.pop("f"))
  if "drop" in kv:
    c.upsampling.drop = kv.pop("drop")
  return mixture_lm.apply_args(c, kv, f"configs/domain_upsampling.py:{arg}", "f=, drop=, ")
