"""Streaming DiLoCo (Douillard et al. 2025): fragment-wise, overlapped, 4-bit outer synchronisation.

Presets (`,variant=` picks a row of the paper's comparison; `,seed=` a seed):
  tiny   (default) 6-layer decoder LM, d=32, byte-level, on Python's documentation text
         (`builtin:pydoc`), M=2 workers with iid shards, H=30 inner AdamW steps per round, 12 rounds
         (360 inner steps per worker), P=4 fragments (non-layer params + 3 strided layer groups),
         overlap τ=2, α=0.5, E3M0 4-bit exchange:
           python -m paperjax.main --config=configs/streaming_diloco.py
         Expect: ~30 s on 2 cores; validation loss ≈ 2.25–2.3 nats/byte, at or below DiLoCo's
         (`,variant=diloco`, ≈ 2.30); peak bytes per step 41.5 KB vs DiLoCo's 1.19 MB (fragments × 4-bit);
         the summary prints bytes per worker, peak and total (paperjax/papers/streaming_diloco/result.json).
  c4     the paper's 100M-class setting shape: 12-layer decoder (d=768), SentencePiece 32K on
         `tfds:c4/en` (prepare it first), M=2 workers, H=100, P=4 (+ non-layer fragment, 13 in all is
         the paper's; ours: 4), τ=5, one 8-GPU host (4 GPUs per worker) or a v5e-8:
           python -m paperjax.main --config=configs/streaming_diloco.py:c4 --workdir=runs/sdiloco-c4
         Expect: loss within ~1% of DiLoCo at ~P×8 lower peak bandwidth; unverified in this codebase.
Variants: streaming (default), diloco (P=1, τ=0, fp32), no_overlap (τ=0), fp32 (no quantisation),
alpha0 / alpha1 (α=0 or 1 with τ=5), data_parallel (gradients averaged every step).
"""

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "c4")
VARIANTS = {
    "streaming": dict(fragments=4, overlap=2, alpha=0.5, quantization="e3m0"),
    "diloco": dict(fragments=1, overlap=0, quantization="none"),
    "no_overlap": dict(fragments=4, overlap=0, quantization="none"),
    "overlap_fp32": dict(fragments=4, overlap=2, alpha=0.5, quantization="none"),
    "alpha0": dict(fragments=4, overlap=5, alpha=0.0, quantization="e3m0"),
    "alpha1": dict(fragments=4, overlap=5, alpha=1.0, quantization="e3m0"),
    "alpha05_tau5": dict(fragments=4, overlap=5, alpha=0.5, quantization="e3m0"),
    "data_parallel": dict(mode="data_parallel", fragments=1, overlap=0, quantization="none"),
}


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("streaming_diloco")
  c.preset = preset
  c.data.update(source="builtin:pydoc", raw_length=64, batch_size=8, max_chars=400_000)
  c.model = task.decoder_config(d_model=32, num_heads=2, head_dim=16, d_ff=64, num_layers=6)
  population.configure(c, clients=2, clients_per_round=0, local_steps=30, batch_size=8, partition="iid",
                       weighting="uniform",
                       inner_optimizer=population.adamw(3e-3, schedule="cosine", warmup_steps=30))
  c.streaming = dict(mode="streaming", variant="streaming", fragments=4, scheme="strided", overlap=2,
                     alpha=0.5, quantization="e3m0")
  # Outer optimizer, one state per fragment: Nesterov SGD, momentum 0.9, lr 0.7 (DiLoCo's values).
  c.optimizer.update(name="sgd", lr=0.7, schedule="constant", warmup_steps=0, clip_norm=0.0, momentum=0.9,
                     nesterov=True, weight_decay=0.0)
  c.train.update(steps=12, log_every=4, eval_every=0, eval_batches=8, ckpt_every=0)

  if preset == "c4":
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=32000, raw_length=1024,
                  max_chars=0, batch_size=64)
    c.model.update(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12, dtype="bfloat16")
    c.population.update(clients=2, local_steps=100, batch_size=64)
    c.population.inner_optimizer.update(lr=4e-4, warmup_steps=1000)
    c.streaming.update(fragments=5, overlap=5)
    c.train.update(steps=880, log_every=1, eval_every=10, ckpt_every=10)

  variant = kv.pop("variant", "streaming")
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {sorted(VARIANTS)}.")
  c.streaming.update(variant=variant, **VARIANTS[variant])
  return config_lib.apply_common_args(c, kv, f"configs/streaming_diloco.py:{arg}", "variant=, ")
