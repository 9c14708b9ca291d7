"""Step Law (Li et al., 2025): one (N, D, B) slice of a learning-rate grid, trained as a vmapped population.

Each run trains K learning rates together (`sweep.lrs`, same init and batches, one vmap on the population
axis); a scaling-law fit needs many runs over model sizes, token budgets and batch sizes
(`python -m paperjax.reproduce step_law` runs the toy grid and fits it). Preset args: `d=` (width; the
model has 2 layers, d_ff = 2d), `batch=` (sequences), `tokens=` (the budget D; steps = D / (batch × 64)),
`seed=`. The published law for any (N, D): `python -m paperjax.papers.step_law.predict --N=1e8 --D=1e10`.

Presets:
  tiny   (default) 2-layer decoder LM, d=32 (≈20K non-embedding params), byte-level, on Python's documentation
         text (`builtin:pydoc`), 64-byte sequences, batch 8, D = 64K tokens (128 steps), 10 learning rates
         4e-3 … 0.091 (×√2, the paper's grid spacing) as one population, AdamW (β 0.9/0.95, wd 0.1, clip 1), 10% warmup, cosine:
           python -m paperjax.main --config=configs/step_law.py
         Expect: ~20 s of CPU; the summary lists each member's smoothed loss (train/loss/member<k>),
         lowest near lr 3e-2–5e-2 (≈ 2.5 nats/byte).
  c4     the paper's grid shape at its smallest scale: decoder d=512, 8 layers (≈25M non-embedding params),
         SentencePiece 32K on `tfds:c4/en` (prepare it first), 2048-token sequences, batch 64 sequences,
         D = 2B tokens, 8 learning rates 2^-11 … 2^-7.5 as one population over the 8 GPUs of one H100 host
         (one member per GPU on the `clients` axis):
           python -m paperjax.main --config=configs/step_law.py:c4 --workdir=runs/step-law-c4
         Expect: an optimum near Step Law's prediction (η* ≈ 1.79·N^-0.713·D^0.307 ≈ 2.0e-3); unverified here.
"""

import numpy as np

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "c4")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("step_law")
  c.preset = preset
  d, batch, tokens, seq = int(kv.pop("d", 32)), int(kv.pop("batch", 8)), int(float(kv.pop("tokens", 65536))), 64
  lrs = tuple(float(x) for x in 4e-3 * 2.0 ** np.arange(0, 4.6, 0.5))
  if preset == "c4":
    d, batch, tokens, seq = int(kv.pop("d", 512)), int(kv.pop("batch", 64)), int(float(kv.pop("tokens", 2e9))), 2048
    lrs = tuple(float(x) for x in 2.0 ** np.arange(-11, -7.4, 0.5))
  heads = max(1, d // 16)
  c.model = task.decoder_config(d_model=d, num_heads=heads, head_dim=d // heads, d_ff=2 * d, num_layers=2)
  c.data.update(source="builtin:pydoc", raw_length=seq, batch_size=batch, max_chars=400_000)
  steps = max(1, tokens // (batch * seq))
  population.configure(c, clients=len(lrs))   # members = lrs × sweep.seeds (the mesh axis fills the devices)
  # Members' optimizer (peak lr = each member's sweep.lrs entry); the trainer's own is unused and stateless.
  c.sweep = dict(lrs=lrs, seeds=(0,), tokens=tokens, optimizer=population.adamw(1.0, schedule="cosine", warmup_steps=max(1, steps // 10),
                                                                    weight_decay=0.1))
  c.optimizer.update(name="sgd", lr=0.0, schedule="constant", warmup_steps=0, clip_norm=0.0, momentum=0.0,
                     weight_decay=0.0)
  # The last window of the log is the last 10% of steps: its mean is the smoothed final loss.
  c.train.update(steps=steps, log_every=max(1, steps // 10), eval_every=0, ckpt_every=0)
  if preset == "c4":
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=32000, max_chars=0)
    c.model.update(num_layers=8, dtype="bfloat16", tie_embeddings=False)
    c.train.update(ckpt_every=1000)
  return config_lib.apply_common_args(c, kv, f"configs/step_law.py:{arg}", "d=, batch=, tokens=, ")
