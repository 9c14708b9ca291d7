"""FedKSeed (Qin et al. 2024): federated zeroth-order tuning that exchanges only (seed, scalar) pairs.

Two stages: `pretrain` (first-order AdamW on Python's documentation, the "pretrained LLM") then
`federated` (FedKSeed on stdlib code: 5 packages as task domains, split over 20 clients by
Dirichlet(α=0.5), 4 sampled per round, τ ZO steps each on K candidate seeds).

Presets (`,pro=1` for FedKSeed-Pro's seed probabilities; `,seed=` a seed):
  tiny   (default) 2-layer decoder d=64, byte-level; pretrain 200 steps; 10 rounds × 4 clients × τ=50,
         K=512, ε=1e-3, lr 1e-3:
           python -m paperjax.main --config=configs/fedkseed.py --workdir=runs/fedkseed
         Expect: ~1 min on 2 cores; code validation loss falls a few percent over the 10 rounds;
         bytes per client per round 4K + 8τ = 2,448 (vs 4·|θ| ≈ 0.4 MB for FedAvg).
  llama  the paper's setting shape: a 1.3B decoder (24 layers, d=2048; e.g. converted DataJuicer-1.3B
         weights) on `tfds:natural_instructions` (prepare it; each task's definition, input and output
         as one document, the loss on all of it), N=200 clients, 5% active,
         τ=200, K=4096, ε=5e-4, lr 3e-7, 40 rounds, one GPU (H100, bf16 forward passes only):
           python -m paperjax.main --config=configs/fedkseed.py:llama --workdir=runs/fedkseed-llama
         Expect: the paper's Rouge-L regime; unverified here. Bytes per client per round: 17,984.
"""

from paperjax import config_lib, population
from paperjax.models import task

PRESETS = ("tiny", "llama")
CODE_DOMAINS = ("builtin:stdlib_code/email", "builtin:stdlib_code/json", "builtin:stdlib_code/asyncio",
                "builtin:stdlib_code/unittest", "builtin:stdlib_code/xml")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("fedkseed")
  c.preset = preset
  c.data.update(source="builtin:pydoc", raw_length=64, batch_size=16, max_chars=300_000)
  c.model = task.decoder_config(d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=2)
  population.configure(c, clients=20, clients_per_round=4, local_steps=50, batch_size=4,
                       partition="dirichlet", alpha=0.5, weighting="examples", domains=CODE_DOMAINS)
  c.fedkseed = dict(phase="federated", K=512, lr=1e-3, eps=1e-3, pro=bool(int(kv.pop("pro", "0"))), pro_clip=10.0)
  c.optimizer.update(name="adamw", lr=3e-3, warmup_steps=20)
  c.train.update(steps=10, log_every=2, eval_every=0, eval_batches=8, ckpt_every=0)
  c.stages = ({"name": "pretrain", "overrides": {"fedkseed.phase": "pretrain", "train.steps": 200,
                                                 "train.log_every": 50}},
              {"name": "federated", "overrides": {"fedkseed.phase": "federated"}})

  if preset == "llama":
    c.data.update(source="tfds:natural_instructions?field=definition,input,output", tokenizer="sentencepiece",
                  vocab_size=32000, raw_length=512, max_chars=0)
    c.model.update(d_model=2048, num_heads=16, head_dim=128, d_ff=5504, num_layers=24, dtype="bfloat16")
    c.population.update(clients=200, clients_per_round=10, local_steps=200, batch_size=1, domains=())
    c.fedkseed.update(K=4096, lr=3e-7, eps=5e-4)
    c.train.update(steps=40)
    c.stages = ({"name": "federated", "overrides": {"fedkseed.phase": "federated"}},)

  return config_lib.apply_common_args(c, kv, f"configs/fedkseed.py:{arg}", "pro=, ")
