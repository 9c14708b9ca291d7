"""FedAvg (McMahan et al. 2017) — the federated baseline, on the population axis (method `fedopt`).

Presets:
  tiny   (default) 2-layer MLP on scikit-learn's digits (`builtin:digits`, offline), 20 clients with
         Dirichlet(α=0.5) label skew, 5 sampled per round, 5 local SGD steps of batch 10, 60 rounds:
           python -m paperjax.main --config=configs/fedavg.py
         Expect: ~30 s on 2 cores; held-out accuracy ≈ 0.93; each client uploads and downloads
         the 4.8K-parameter model (19 KB each way) per round, ~1.1 MB in total (the summary prints it).
  emnist FedJAX's EMNIST-62 recipe shape: the `emnist_conv` CNN, 3,400 clients (tfds `emnist/byclass`
         split by Dirichlet α=0.1 as a stand-in for the writer split), 10 clients per round, client
         batch 10, 1,500 rounds, inner SGD lr 0.1; one GPU (H100) or a v5e-8:
           python -m paperjax.main --config=configs/fedavg.py:emnist --workdir=runs/fedavg-emnist
         Expect: the FedJAX baseline regime (≈ 0.84 accuracy); unverified in this codebase.
Change the data partition with `--config.population.partition=iid|dirichlet` and α with
`--config.population.alpha=0.1`.
"""

from paperjax import config_lib, population

PRESETS = ("tiny", "emnist")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("fedopt")
  c.preset = preset
  c.data.update(kind="records", source="builtin:digits", batch_size=10)
  c.model = dict(kind="mlp", hidden=(64,), num_classes=10)
  population.configure(c, clients=20, clients_per_round=5, local_steps=5, batch_size=10,
                       partition="dirichlet", alpha=0.5, weighting="examples", keep_inner_state=False,
                       inner_optimizer=population.sgd(0.1))
  # The server step: θ ← θ − 1·Δ, i.e. the weighted mean of the clients' models (FedAvg).
  c.optimizer.update(name="sgd", lr=1.0, schedule="constant", warmup_steps=0, clip_norm=0.0, momentum=0.0)
  c.train.update(steps=60, log_every=10, eval_every=20, eval_batches=0, ckpt_every=0)

  if preset == "emnist":
    c.data.update(source="tfds:emnist/byclass", batch_size=10)
    c.model = dict(kind="cnn", hidden=(), num_classes=62)
    c.population.update(clients=3400, clients_per_round=10, local_steps=20, batch_size=10, alpha=0.1)
    c.train.update(steps=1500, log_every=50, eval_every=250, ckpt_every=250)

  return config_lib.apply_common_args(c, kv, f"configs/fedavg.py:{arg}", "")
