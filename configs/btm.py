"""Branch-Train-Merge (Li et al. 2022): a seed LM branched into domain experts trained with no
communication, merged by a posterior-weighted ensemble or by parameter averaging.

Two stages: `seed` (150 AdamW steps on the mixture of 4 domains) then `branch` (4 experts on the
`clients` axis, one per domain, 150 steps each as 15 rounds of 10 local steps). Variants (`,variant=`):
domain (default), random (random-split experts: the paper's control), dense (one LM for the seed
budget + every expert's budget, on the mixture: the compute-matched baseline).

Domains: Python's documentation text and three stdlib code packages (email, asyncio, unittest).

Presets:
  tiny   (default) 2-layer byte-level decoder, d=64, context 64, batch 8:
           python -m paperjax.main --config=configs/btm.py --workdir=runs/btm
         Expect: ~1 min on 2 cores; per-domain held-out loss of the ensemble (`ens`, ≈ 2.06 nats/byte
         averaged over domains) below the uniform parameter average (`avg`, ≈ 2.25); posterior on the
         right expert ≈ 0.7 after 64 bytes. The dense baseline (`,variant=dense`) reaches ≈ 1.78.
  gpt3s  the paper's GPT-3-small-shaped experts (12 layers, d=768, 125M) on 8 `tfds` domains (e.g.
         `tfds:wikipedia/20230601.en`, `tfds:c4/en`, ...; prepare them), one expert per GPU of an 8-GPU
         host, seed 40% of the budget, 80K updates per expert in the paper (LR 5e-4):
           python -m paperjax.main --config=configs/btm.py:gpt3s --workdir=runs/btm-gpt3s
         Expect: the paper's regime (ensemble beats the compute-matched dense LM in domain); unverified.
"""

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "gpt3s")
DOMAINS = ("builtin:pydoc", "builtin:stdlib_code/email", "builtin:stdlib_code/asyncio", "builtin:stdlib_code/unittest")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("btm")
  c.preset = preset
  c.data.update(source="+".join(DOMAINS), raw_length=64, batch_size=8, max_chars=0)
  c.model = task.decoder_config(d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=2)
  population.configure(c, clients=len(DOMAINS), clients_per_round=0, local_steps=10, batch_size=8,
                       partition="domain", domains=DOMAINS,
                       inner_optimizer=population.adamw(2e-3))
  c.btm = dict(phase="branch", variant="domain", posterior_after=64)
  c.optimizer.update(name="adamw", lr=3e-3, warmup_steps=20)
  c.train.update(steps=15, log_every=5, eval_every=0, eval_batches=6, ckpt_every=0)
  seed_steps = 150
  c.stages = ({"name": "seed", "overrides": {"btm.phase": "seed", "train.steps": seed_steps, "train.log_every": 50}},
              {"name": "branch", "overrides": {"btm.phase": "branch"}})

  if preset == "gpt3s":
    c.model.update(d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12, dtype="bfloat16")
    c.data.update(raw_length=1024, tokenizer="sentencepiece", vocab_size=32000, batch_size=16)
    c.population.update(clients=8, local_steps=100, batch_size=16)
    c.population.inner_optimizer.update(lr=5e-4)
    c.train.update(steps=800)
    seed_steps = 53_000
    c.stages = ({"name": "seed", "overrides": {"btm.phase": "seed", "train.steps": seed_steps}},
                {"name": "branch", "overrides": {"btm.phase": "branch"}})

  variant = kv.pop("variant", "domain")
  if variant == "random":
    c.population.partition = "iid"
  elif variant == "dense":   # the compute-matched dense LM: seed budget + K experts' budgets, on the mixture
    total = seed_steps + int(c.population.clients) * int(c.train.steps) * int(c.population.local_steps)
    c.stages = ({"name": "seed", "overrides": {"btm.phase": "seed", "train.steps": total, "train.log_every": 100}},)
  elif variant != "domain":
    raise ValueError(f"Unknown variant {variant!r}; use domain, random or dense.")
  c.btm.variant = variant
  for k, v in kv.items():
    if k == "seed":
      c.seed = int(v)
    else:
      raise ValueError(f"Unknown config arg {k!r} in 'configs/btm.py:{arg}'; use variant= or seed= "
                       "(everything else via --config.<key>=<value>).")
  return c
