"""iCT (Song & Dhariwal, 2024): consistency training without an EMA teacher, pseudo-Huber distance,
lognormal noise levels, a doubling discretisation curriculum and λ = 1/(σ_{i+1} − σ_i).

Reports (evals/generative.py) for one-step and two-step samples of the evaluation EMA: on 2-D data
energy distance, MMD, modes covered and the share of samples within 3 std of a mode; on digits the
Fréchet distance of a cached digits classifier's features (`fd_digits`, a small-scale stand-in for
FID), its confident-prediction rate and the entropy of its predicted classes. Every evaluation writes
`<workdir>/samples/{one,two}_step_step<k>.png` (a scatter over the data, or an image grid).

Presets (`--config=configs/ict.py:<preset>[,variant=ct,steps=…,seed=0]`; `variant=ct` is the original
consistency-training recipe — EMA teacher μ0 = 0.9, squared L2, uniform i, λ = 1, N from 2 to 150):

  tiny     (default) `synthetic:ring` (8 Gaussians on the unit circle, std 0.08), MLP denoiser 3×128,
           batch 256, 3,000 steps, Adam 3e-4, evaluation EMA 0.999, evaluated every 1,000 steps:
             python -m paperjax.main --config=configs/ict.py --workdir=runs/ict
           Expect (~1-2 min on 2 CPU cores): two-step samples on 8/8 modes, one-step samples still blurred
           between them; iCT vs CT at equal steps: paperjax/papers/ict/result.json
           (`python -m paperjax.reproduce ict`).
  digits   `builtin:digits` 8x8 (D = 64), UNet 32 channels × (1, 2), batch 128, 3,000 steps:
             python -m paperjax.main --config=configs/ict.py:digits --workdir=runs/ict_digits
           Expect (~10 min on 2 CPU cores): digit-like one-step samples; fd_digits falls over training.
  cifar10  the paper's CIFAR-10 setting on `tfds:cifar10` (prepare it with tfds first): UNet 128
           channels × (1, 2, 2, 2), 2 res blocks, dropout 0.3, batch 1024, 400k steps, RAdam lr 1e-4,
           EMA 0.99993 — sized for 8×H100 (or a v4-32), days:
             python -m paperjax.main --config=configs/ict.py:cifar10 --workdir=runs/ict_cifar10
           Expect (paper, NCSN++): FID 2.51 one-step, 2.24 two-step. FID needs Inception-v3 weights,
           which this codebase does not ship: the run reports `fid_unavailable` and writes sample grids.
"""

from paperjax import config_lib

PRESETS = ("tiny", "digits", "cifar10")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("ict")
  c.preset = preset
  variant = kv.pop("variant", "ict")
  c.data.update(source="synthetic:ring", batch_size=256)
  c.model = dict(kind="mlp", hidden=128, layers=3, emb_dim=64, embedding="fourier", fourier_scale=0.02,
                 num_classes=0, dropout=0.0, channels=32, channel_mult=(1, 2), num_res_blocks=1)
  # Recipe fields left empty ("" / 0) take the variant's value (method.RECIPES); set one to ablate it.
  c.ict = dict(variant=variant, teacher="", distance="", weighting="", index="", curriculum="", s0=0, s1=0,
               sigma_min=0.002, sigma_max=80.0, sigma_data=0.5, rho=7.0, p_mean=-1.1, p_std=2.0, huber_c=0.0,
               mu0=0.9, sigma_mid=0.821, ema_decay=0.999, eval_ema=True)
  c.optimizer.update(name="adam", lr=3e-4, warmup_steps=100, schedule="constant", weight_decay=0.0)
  c.train.update(steps=3000, log_every=100, eval_every=1000, ckpt_every=0)
  c.eval = dict(batch_size=256, max_examples=2000, num_samples=1000)

  if preset == "digits":
    c.data.update(source="builtin:digits", batch_size=128)
    c.model.update(kind="unet", channels=32, channel_mult=(1, 2), num_res_blocks=1, emb_dim=128)
    c.optimizer.update(lr=5e-4)
    c.train.update(steps=3000, eval_every=1000)
    c.eval.update(max_examples=0, num_samples=500)
  elif preset == "cifar10":
    c.data.update(source="tfds:cifar10", batch_size=1024)
    c.model.update(kind="unet", channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2, emb_dim=512, dropout=0.3)
    c.ict.update(ema_decay=0.99993)
    c.optimizer.update(name="radam", lr=1e-4, warmup_steps=0)
    c.train.update(steps=400_000, log_every=100, eval_every=10_000, ckpt_every=5000, ckpt_every_s=1800.0)
    c.eval.update(max_examples=10_000, num_samples=1000)
  return config_lib.apply_common_args(c, kv, f"configs/ict.py:{arg}", "variant=, ")
