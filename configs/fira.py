"""Fira (Chen et al., 2024): full-rank training under a low-rank optimizer-state constraint.

The optimizer is named by import path (`optimizer.name="paperjax.papers.fira.method:fira"`); kernels get
Fira (GaLore projection + norm-based scaling of the residual + norm-growth limiter), everything else Adam.

Presets (`,variant=` picks the optimizer of the comparison: fira (default), galore, adam, fira_no_limiter,
fira_no_scaling; `,seed=` a seed):
  tiny   (default) 2-layer decoder LM, d=64 (4 heads × 16, gated d_ff=192), byte-level, on Python's
         documentation text (`builtin:pydoc`), 64-byte windows, batch 16, 400 steps, rank 16 (d/4), T=50,
         α=0.25, γ=1.01, lr 0.01 (Adam baseline: 3e-3), offline, 2 CPU cores:
           python -m paperjax.main --config=configs/fira.py
         Expect: ~15 s of CPU; validation loss ≈ 1.77 nats/byte (GaLore ≈ 2.30, Adam 1.54 at lr 0.01 and 1.83
         at 3e-3); the summary prints the optimizer-state bytes (0.45 MiB vs Adam's 1.00 MiB; on the kernels
         31.7%). The comparison (paperjax/papers/fira/result.json): python -m paperjax.reproduce fira
  c4     the paper's LLaMA-60M setting shape: 8-layer decoder, d=512 (8 heads), d_ff=1376, SentencePiece 32K
         on `tfds:c4/en` (prepare it first), 256 tokens, batch 512, 10K steps, rank 128, T=200, α=0.25,
         lr 0.01, warmup 1000, one 8-GPU host (or a v5e-8), bf16:
           python -m paperjax.main --config=configs/fira.py:c4 --workdir=runs/fira-c4
         Expect: the paper's Table (60M: Fira ≈ 31.1 ppl vs GaLore 34.9, Adam 34.1); unverified here.
"""

from paperjax import config_lib
from paperjax.models import task

PRESETS = ("tiny", "c4")
M = "paperjax.papers.fira.method"
VARIANTS = {
    "fira": dict(name=f"{M}:fira"),
    "galore": dict(name=f"{M}:galore"),
    "fira_no_limiter": dict(name=f"{M}:fira", limiter=False),
    "fira_no_scaling": dict(name=f"{M}:fira", scaling=False),
    "adam": dict(name="adam", lr=3e-3),
}


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("fira")
  c.preset = preset
  c.data.update(source="builtin:pydoc", raw_length=64, batch_size=16, max_chars=400_000)
  c.model = task.decoder_config(d_model=64, num_heads=4, head_dim=16, d_ff=192, num_layers=2)
  # The paper's pre-training recipe (scripts/pre_training_c4/llama_60m.sh): lr 0.01, α 0.25, rank d/4,
  # T 200, no weight decay; β and ε are Adam's defaults of the official optimizer (0.9, 0.999, 1e-6).
  c.optimizer.update(name=f"{M}:fira", lr=0.01, warmup_steps=40, schedule="cosine", end_lr_frac=0.1, b1=0.9,
                     b2=0.999, eps=1e-6, weight_decay=0.0, clip_norm=0.0)
  c.optimizer.update(rank=16, update_proj_gap=50, alpha=0.25, gamma=1.01, residual=True, scaling=True, limiter=True)
  c.train.update(steps=400, log_every=50, eval_every=0, eval_batches=8, ckpt_every=0)

  if preset == "c4":
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=32000, raw_length=256, max_chars=0,
                  batch_size=512)
    c.model.update(d_model=512, num_heads=8, head_dim=64, d_ff=1376, num_layers=8, dtype="bfloat16",
                   tie_embeddings=False)
    c.optimizer.update(rank=128, update_proj_gap=200, warmup_steps=1000)
    c.train.update(steps=10_000, log_every=100, eval_every=1000, eval_batches=20, ckpt_every=1000)

  variant = kv.pop("variant", "fira")
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r} in 'configs/fira.py:{arg}'; use one of {sorted(VARIANTS)}.")
  c.optimizer.update(**VARIANTS[variant])
  c.variant = variant
  return config_lib.apply_common_args(c, kv, f"configs/fira.py:{arg}", "variant=, ")
