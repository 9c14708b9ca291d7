"""MoDeST (de Vos et al. 2023): decentralized sampling — every node derives each round's sample and its
aggregators from md5(peer, round); no server. Compared with FedAvg and D-PSGD, with 80% of the nodes
crashing at round 30.

Variants (`,variant=`): modest (default; s=8 trainers, a=2 aggregators), fedavg (a server samples 8 of
all 40 uniformly), dpsgd (all 40 nodes train and gossip on a random 4-regular graph). `,fail=0` turns
the crash off.

Presets:
  tiny   (default) 2-layer MLP on scikit-learn's digits (`builtin:digits`, offline) split over 40 nodes by
         Dirichlet(α=0.5), 60 rounds of 4 local SGD steps (batch 10), evaluation every 5 rounds:
           python -m paperjax.main --config=configs/modest.py --workdir=runs/modest
         Expect: ~40 s on 2 cores; held-out accuracy ≈ 0.85 for MoDeST and FedAvg, still rising after the
         crash; MoDeST moves (a+1)·|θ| = 58 KB per trainer per round, D-PSGD 8·|θ| per node for all nodes.
  femnist the paper's FEMNIST shape: `tfds:emnist/byclass` (a Dirichlet stand-in for the writer split),
         EMNIST CNN, 355 nodes, s=10, one GPU:
           python -m paperjax.main --config=configs/modest.py:femnist --workdir=runs/modest-femnist
         Expect: FL-like convergence at 3–14× less traffic than D-PSGD (paper); unverified here.
"""

from paperjax import config_lib, population

PRESETS = ("tiny", "femnist")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("modest")
  c.preset = preset
  c.data.update(kind="records", source="builtin:digits", batch_size=10)
  c.model = dict(kind="mlp", hidden=(64,), num_classes=10)
  population.configure(c, clients=40, clients_per_round=8, local_steps=4, batch_size=10, partition="dirichlet",
                       alpha=0.5, weighting="examples",
                       inner_optimizer=population.sgd(0.1))
  c.modest = dict(variant="modest", aggregators=2, degree=4, fail_round=30, fail_fraction=0.8)
  c.optimizer.update(name="sgd", lr=1.0, schedule="constant", warmup_steps=0, clip_norm=0.0, momentum=0.0)
  c.train.update(steps=60, log_every=5, eval_every=5, eval_batches=0, ckpt_every=0)

  if preset == "femnist":
    c.data.update(source="tfds:emnist/byclass")
    c.model = dict(kind="cnn", hidden=(), num_classes=62)
    c.population.update(clients=355, clients_per_round=10, local_steps=20, alpha=0.1)
    c.train.update(steps=1000, log_every=10, eval_every=50)

  c.modest.variant = kv.pop("variant", "modest")
  if c.modest.variant not in ("modest", "fedavg", "dpsgd"):
    raise ValueError(f"Unknown variant {c.modest.variant!r}; use modest, fedavg or dpsgd.")
  if not int(kv.pop("fail", "1")):
    c.modest.fail_round = -1
  return config_lib.apply_common_args(c, kv, f"configs/modest.py:{arg}", "variant=, fail=, ")
