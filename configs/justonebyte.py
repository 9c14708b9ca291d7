"""Just One Byte (Zelikman et al. 2023): zeroth-order training where machines exchange one byte per
projected gradient and regenerate every perturbation from shared seeds.

Two stages: `pretrain` (first-order AdamW on digits 0–4 only) then `zeroth_order` (SPSA on all ten
digits, M=4 machines × k=2 perturbations per iteration, batch 32 each, int8 bytes with a shared
adaptive scale). Variants (`,variant=`): int8 (default), float (fp32 scalars), single (one machine,
k=8: the same forward passes as 4 × 2), churn (machine 3 leaves for rounds 10–20, machine 1 for 25–35).

Presets:
  tiny   (default) MLP 64→128→10 (9.6K params) on scikit-learn's digits (`builtin:digits`, offline):
         pretrain 100 steps, then 50 rounds × 20 iterations (1,000 ZO iterations):
           python -m paperjax.main --config=configs/justonebyte.py --workdir=runs/justonebyte
         Expect: ~1 min on 2 cores; the ZO train loss falls from ≈ 4.6 to ≈ 0.93 (held-out accuracy
         ≈ 0.79); every machine uploads 2 bytes per iteration (40 per round) against 38 KB for an fp32
         gradient; the summary's replica_spread is exactly 0 (bitwise-equal replicas).
  gpt2   the paper's demo shape: GPT-2-small-class decoder (12 layers, d=768) fine-tuned on
         `tfds:gsm8k` (prepare it), 4 machines × 16 samples, one GPU each or one H100 for all:
           python -m paperjax.main --config=configs/justonebyte.py:gpt2 --workdir=runs/justonebyte-gpt2
         Expect: MeZO-like slow progress (~10^5 iterations); unverified in this codebase.
"""

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "gpt2")
VARIANTS = {
    "int8": dict(quantization="int8"),
    "float": dict(quantization="none"),
    "single": dict(quantization="int8", machines=1, samples=8),
    "churn": dict(quantization="int8", leave=((3, 10, 20), (1, 25, 35))),
}


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("justonebyte")
  c.preset = preset
  c.data.update(kind="records", source="builtin:digits", batch_size=32)
  c.model = dict(kind="mlp", hidden=(128,), num_classes=10)
  population.configure(c, clients=4, clients_per_round=0, local_steps=20, batch_size=32, partition="iid")
  c.justonebyte = dict(phase="zeroth_order", variant="int8", samples=2, lr=2e-3, eps=1e-3, quantization="int8",
                       init_scale=1.0, pretrain_classes=(0, 1, 2, 3, 4), leave=())
  c.optimizer.update(name="adamw", lr=3e-3, warmup_steps=10)
  c.train.update(steps=50, log_every=10, eval_every=0, eval_batches=0, ckpt_every=0)
  c.stages = ({"name": "pretrain", "overrides": {"justonebyte.phase": "pretrain", "train.steps": 100,
                                                 "train.log_every": 50}},
              {"name": "zeroth_order", "overrides": {"justonebyte.phase": "zeroth_order"}})

  if preset == "gpt2":
    c.data.update(kind="text", source="tfds:gsm8k?field=question", tokenizer="sentencepiece", vocab_size=32000,
                  raw_length=256, max_chars=0, batch_size=16)
    c.model = task.decoder_config(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12, dtype="bfloat16")
    c.population.update(local_steps=50, batch_size=16)
    c.justonebyte.update(samples=16, lr=1e-6)
    c.train.update(steps=2000)
    c.stages = ({"name": "zeroth_order", "overrides": {"justonebyte.phase": "zeroth_order"}},)

  variant = kv.pop("variant", "int8")
  if variant not in VARIANTS:
    raise ValueError(f"Unknown variant {variant!r}; use one of {sorted(VARIANTS)}.")
  v = dict(VARIANTS[variant])
  if "machines" in v:
    c.population.clients = v.pop("machines")
  c.justonebyte.update(variant=variant, **v)
  return config_lib.apply_common_args(c, kv, f"configs/justonebyte.py:{arg}", "variant=, ")
