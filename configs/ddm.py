"""Decentralized Diffusion Models (McAllister et al., 2025): K flow-matching experts, one per k-means
cluster, trained with no communication; a router r(k | x_t, t); ensemble / top-k sampling.

One run is two stages (each in `<workdir>/<stage>`): `experts` (the K experts side by side on the
population axis, each on its cluster; `train.steps` rounds of `population.local_steps` steps) then
`router` (a K-way classifier of the cluster from noisy inputs, experts frozen). Reports
(evals/generative.py) for ensemble, top-1 and top-2 sampling (Euler, `ddm.sample_steps` steps): energy
distance, MMD and mode coverage on 2-D data (fd_digits on digits), plus the router's accuracy at
t = 0.05 / 0.5 / 0.95; each evaluation writes `<workdir>/router/samples/<mode>_step<k>.png`.

Presets (`--config=configs/ddm.py:<preset>[,variant=monolith,experts=4,seed=0]`):

  tiny     (default) `synthetic:ring` (8 Gaussians), K = 4 experts (k-means on the coordinates), MLP 3×128
           each, batch 128, 1,000 steps per expert, router 400 steps, 32 Euler steps:
             python -m paperjax.main --config=configs/ddm.py --workdir=runs/ddm
           `variant=monolith`: one MLP of the same shape trained K × 1,000 = 4,000 steps (equal training
           FLOPs) — the baseline:
             python -m paperjax.main --config=configs/ddm.py:tiny,variant=monolith --workdir=runs/ddm_mono
           Expect (~2 min each on 2 CPU cores): see paperjax/papers/ddm/result.json
           (`python -m paperjax.reproduce ddm`).
  digits   `builtin:digits` as 64-vectors, k-means on 16 PCA components, MLP 3×256, 2,000 steps per expert.
  cifar10  `tfds:cifar10` (prepare it with tfds first), K = 8 UNet experts (128 channels × (1, 2, 2, 2)),
           k-means on 16 PCA components of the pixels (the paper: DINOv2 features), batch 256 per expert,
           100k steps each; sized for 8 GPUs with one expert per GPU (the experts need no interconnect;
           on one 8×H100 node ≈ 1 day):
             python -m paperjax.main --config=configs/ddm.py:cifar10 --workdir=runs/ddm_cifar10
           FID needs Inception-v3 weights (not shipped): the run reports `fid_unavailable` and writes grids.
"""

from paperjax import config_lib, population

PRESETS = ("tiny", "digits", "cifar10")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("ddm")
  c.preset = preset
  variant = kv.pop("variant", "decentralized")
  experts = int(kv.pop("experts", 8 if preset == "cifar10" else 4))
  c.data.update(source="synthetic:ring", batch_size=128)
  c.model = dict(kind="mlp", hidden=128, layers=3, emb_dim=64, embedding="positional", fourier_scale=16.0,
                 num_classes=0, dropout=0.0, channels=32, channel_mult=(1, 2), num_res_blocks=1)
  population.configure(c, clients=experts, clients_per_round=0, local_steps=1, batch_size=128, partition="kmeans",
                       inner_optimizer=population.adamw(1e-3, weight_decay=0.0, clip_norm=0.0, b2=0.999))
  c.ddm = dict(phase="experts", experts=experts, pca_dims=16, sample_steps=32, router_eval_seed=0)
  c.optimizer.update(name="adam", lr=1e-3, warmup_steps=0, schedule="constant", weight_decay=0.0)
  expert_steps, router_steps = 1000, 400
  c.eval = dict(batch_size=256, max_examples=2000, num_samples=1000)
  if preset == "digits":
    c.data.update(source="builtin:digits")
    c.model.update(hidden=256)
    expert_steps = 2000
    c.eval.update(max_examples=0, num_samples=500)
  elif preset == "cifar10":
    c.data.update(source="tfds:cifar10", batch_size=256)
    c.model.update(kind="unet", channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, emb_dim=512, dropout=0.1)
    c.population.update(batch_size=256)
    c.population.inner_optimizer.update(lr=2e-4)
    c.ddm.update(sample_steps=100)
    expert_steps, router_steps = 100_000, 10_000
    c.eval.update(max_examples=10_000, num_samples=1000)
  c.train.update(steps=expert_steps, log_every=100, eval_every=0, ckpt_every=0)
  c.stages = ({"name": "experts", "overrides": {"ddm.phase": "experts"}},
              {"name": "router", "overrides": {"ddm.phase": "router", "train.steps": router_steps}})
  if variant == "monolith":   # equal training FLOPs: K × the experts' steps, one model, all data
    c.stages = ()
    c.ddm.phase = "monolith"
    c.train.steps = experts * expert_steps
    c.optimizer.update(**{k: v for k, v in c.population.inner_optimizer.items() if k in ("lr", "b2", "weight_decay")})
  elif variant != "decentralized":
    raise ValueError(f"Unknown variant {variant!r} in 'configs/ddm.py:{arg}'; use decentralized or monolith.")
  c.ddm.variant = variant
  return config_lib.apply_common_args(c, kv, f"configs/ddm.py:{arg}", "variant=, experts=, ")
