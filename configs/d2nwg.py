"""D2NWG (Soro et al., 2025): a latent diffusion model over the weights of a model zoo, conditioned on
the dataset, generates weights for unseen datasets.

One run is two stages (each in `<workdir>/<stage>`): `zoo` — 36 binary digit tasks (class pairs in a
random label order; 9 more pairs are held out) × 5 seeds of an MLP 64-16-2 (1,090 weights), trained side
by side as one population, 200 steps of Adam; `generator` — an MLP-VAE over the standardised flattened
weights (latent 64, 1,000 steps), then a DDPM (T = 200, MLP 3×256 denoiser conditioned on the class-mean
inputs of 10 samples per class, in label order) on its latents (1,500 steps). Reports on the 9 held-out
tasks: accuracy of generated weights with no training (`generated_acc`), with another task's condition
(`shuffled_condition_acc`), of the nearest seen task's zoo members, of the zoo's mean weights and of random
initialisations; the VAE's reconstruction accuracy drop on the zoo; fine-tuning steps to 95% from generated
vs random weights.

Presets (`--config=configs/d2nwg.py:<preset>[,seed=0]`):

  tiny     (default) as above, `builtin:digits`, offline, 2 CPU cores (~2 min):
             python -m paperjax.main --config=configs/d2nwg.py --workdir=runs/d2nwg
           Expect: see paperjax/papers/d2nwg/result.json (`python -m paperjax.reproduce d2nwg`).
  large    the same recipe with a bigger zoo and generator (MLP 64-64-2 members, 20 seeds, VAE 512-256,
           denoiser 3×1024, 20k + 50k steps) — one GPU (A100/H100), ~1 h. The paper's own zoos (ResNet-18 /
           ViT on dozens of vision datasets, CLIP-conditioned) are far larger; this preset stays on digits.
             python -m paperjax.main --config=configs/d2nwg.py:large --workdir=runs/d2nwg_large
"""

from paperjax import config_lib, population

PRESETS = ("tiny", "large")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("d2nwg")
  c.preset = preset
  seeds, held_out = 5, 9
  c.d2nwg = dict(phase="zoo", member_hidden=(16,), seeds_per_task=seeds, held_out=held_out, shots=10, latent=64,
                 vae_hidden=(256,), beta=1e-4, diffusion_steps=200, vae_steps=1000, samples_per_task=5)
  population.configure(c, clients=(45 - held_out) * seeds, clients_per_round=0, local_steps=1, batch_size=32,
                       inner_optimizer=population.adamw(1e-2, weight_decay=0.0, clip_norm=0.0, b2=0.999))
  c.model = dict(kind="mlp", hidden=256, layers=3, emb_dim=128, embedding="positional", fourier_scale=16.0,
                 num_classes=0, dropout=0.0)
  c.data.update(batch_size=64)
  c.optimizer.update(name="adam", lr=1e-3, warmup_steps=0, schedule="constant", weight_decay=0.0)
  zoo_steps, gen_steps = 200, 2500
  if preset == "large":
    seeds = 20
    c.d2nwg.update(member_hidden=(64,), seeds_per_task=seeds, vae_hidden=(512, 256), vae_steps=20_000)
    c.population.clients = (45 - held_out) * seeds
    c.model.update(hidden=1024)
    c.data.update(batch_size=256)
    zoo_steps, gen_steps = 1000, 70_000
  c.train.update(steps=zoo_steps, log_every=100, eval_every=0, ckpt_every=0)
  c.stages = ({"name": "zoo", "overrides": {"d2nwg.phase": "zoo"}},
              {"name": "generator", "overrides": {"d2nwg.phase": "generator", "train.steps": gen_steps,
                                                  "train.log_every": 250}})
  return config_lib.apply_common_args(c, kv, f"configs/d2nwg.py:{arg}")
