"""Scalable Data Ablation Approximations (Na et al. 2024): score data mixtures by averaging the
parameters of models continued-pretrained on each unit, instead of training on every mixture.

Stages: `base` (300 AdamW steps on Python's documentation) then `units` (6 members, one per stdlib
code package, 100 continued-pretraining steps each) — or, with `,phase=unions`, the ground truth:
10 members, one per candidate mixture of 2 units, each trained 200 steps on the union.

Presets:
  tiny   (default) 2-layer byte-level decoder, d=64, context 64, batch 8:
           python -m paperjax.main --config=configs/merge_ablation_proxy.py --workdir=runs/merge-units
           python -m paperjax.main --config=configs/merge_ablation_proxy.py:tiny,phase=unions --workdir=runs/merge-unions
         Expect: ~1 min each on 2 cores; `python -m paperjax.reproduce merge_ablation_proxy` then scores
         the 10 mixtures on 8 held-out sets both ways and reports the correlation (Pearson ≥ 0.8 expected).
  olmo   the paper's shape: a 1B decoder (OLMo-1B-like, 16 layers, d=2048) as θ₀, units = equal-size
         topical partitions of `tfds:c4/en` (prepare it), 1 GPU per unit run:
           python -m paperjax.main --config=configs/merge_ablation_proxy.py:olmo --workdir=runs/merge-olmo
         Expect: the paper's regime (proxy perplexity strongly correlated with union training); unverified.
"""

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "olmo")
UNITS = ("builtin:stdlib_code/email", "builtin:stdlib_code/json", "builtin:stdlib_code/asyncio",
         "builtin:stdlib_code/unittest", "builtin:stdlib_code/xml", "builtin:stdlib_code/http")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("merge_ablation_proxy")
  c.preset = preset
  c.data.update(source="builtin:pydoc", raw_length=64, batch_size=8, max_chars=0)
  c.model = task.decoder_config(d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=2)
  population.configure(c, clients=len(UNITS), clients_per_round=0, local_steps=10, batch_size=8,
                       inner_optimizer=population.adamw(1e-3, weight_decay=0.0))
  phase = kv.pop("phase", "units")
  if phase not in ("units", "unions"):
    raise ValueError(f"Unknown phase {phase!r}; use phase=units or phase=unions.")
  c.merge = dict(phase=phase, units=UNITS, extra_eval=("builtin:pydoc", "builtin:stdlib_code/logging"),
                 mixtures=10, mixture_size=2)
  c.optimizer.update(name="adamw", lr=3e-3, warmup_steps=20)
  c.train.update(steps=10 if phase == "units" else 20, log_every=5, eval_every=0, eval_batches=6, ckpt_every=0)
  c.stages = ({"name": "base", "overrides": {"merge.phase": "base", "train.steps": 300, "train.log_every": 100}},
              {"name": phase, "overrides": {"merge.phase": phase}})

  if preset == "olmo":
    c.data.update(source="tfds:c4/en", tokenizer="sentencepiece", vocab_size=50304, raw_length=2048, batch_size=32)
    c.model.update(d_model=2048, num_heads=16, head_dim=128, d_ff=8192, num_layers=16, dtype="bfloat16")
    c.train.update(steps=100 if phase == "units" else 200)
    c.stages = ({"name": phase, "overrides": {"merge.phase": phase}},)

  for k, v in kv.items():
    if k == "seed":
      c.seed = int(v)
    else:
      raise ValueError(f"Unknown config arg {k!r} in 'configs/merge_ablation_proxy.py:{arg}'; use phase= or seed= "
                       "(everything else via --config.<key>=<value>).")
  return c
