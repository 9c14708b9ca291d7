"""Dataset Quantization (Zhou et al., 2023): GraphCut bins per class, a uniform sample from every bin.

Presets (`--config=configs/dataset_quantization.py:<preset>[,fraction=0.1,arch=mlp,seed=0]`); each
selects once before training and trains a fresh network on the kept set for the same steps:

  tiny      (default) DQ on `builtin:digits` (1,437 train / 360 test): PCA-32 pixel features,
            K = 10 bins per class, keep ρ = 10% (≈144 images), MLP 64→128→10 (`arch=cnn`: a
            GroupNorm ConvNet 16-32 channels, the architecture-transfer check), 200 steps × 48, Adam:
              python -m paperjax.main --config=configs/dataset_quantization.py
            Expect (~10 s): ≈ 0.9 test accuracy (see result.json for DQ vs the baselines, 3 seeds).
  graphcut  one GraphCut coreset of ρ·n_c per class (the plain submodular selection)
  static_random, kcenter   the shared baselines of paperjax/selection.py (k-center on pixels)
              python -m paperjax.main --config=configs/dataset_quantization.py:graphcut,arch=cnn
  cifar10   the paper's CIFAR-10 setting: ρ = 10%, ResNet-18 trained 200 epochs on the kept set
            (batch 128, SGD lr 0.1 cosine, wd 5e-4), `tfds:cifar10` prepared beforehand; one GPU, ~10 min
            (features: PCA of pixels here; the paper's pretrained-ViT features are not wired in):
              python -m paperjax.main --config=configs/dataset_quantization.py:cifar10 --workdir=runs/dq_cifar10
            Expect (paper, Table 1, ViT features): ≈ 85% at 10% of CIFAR-10 (unverified in this codebase).
"""

from paperjax import config_lib, selection

PRESETS = ("tiny", "graphcut", "static_random", "kcenter", "cifar10")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("dataset_quantization")
  c.preset = preset
  fraction = float(kv.pop("fraction", 0.1))
  arch = kv.pop("arch", "mlp")
  if arch == "mlp":
    c.model = dict(kind="mlp", hidden=(128,), num_classes=10)
  elif arch == "cnn":
    c.model.update(kind="cnn", channels=(16, 32), dense_dim=0, num_classes=10)
  else:
    raise ValueError(f"arch={arch!r} is unknown; use arch=mlp or arch=cnn.")
  c.data.update(batch_size=48)
  kind = {"tiny": "dq", "cifar10": "dq"}.get(preset, preset)
  c.selection = selection.config_block(kind=kind, fraction=fraction, round_steps=0, seed=0)
  c.dq = dict(num_bins=10, lam=1.0, feature_dim=32)
  c.optimizer.update(lr=1e-2 if arch == "mlp" else 3e-3, warmup_steps=10, weight_decay=1e-4)
  c.train.update(steps=200, log_every=50, eval_every=0, target_metric="", target_value=0.0)

  if preset == "cifar10":
    c.data.update(source="tfds:cifar10", batch_size=128)
    c.model = dict(kind="resnet", depth=18, width=1.0, base_channels=64, stem="cifar", num_classes=10)
    c.dq.feature_dim = 128
    c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_steps=0)
    c.train.update(steps=200 * int(fraction * 50_000) // 128, log_every=100, ckpt_every=2000)
    c.eval.update(batch_size=1000)

  return selection.apply_args(c, kv, f"configs/dataset_quantization.py:{arg}", "fraction=, arch=, ")
