"""Rethinking the Value of Labels for Class-Imbalanced Learning (Yang & Xu, 2020): pseudo-labelled
unlabelled data, and self-supervised (rotation) pre-training, both before long-tailed training.

Reports (evals/classification.py): accuracy, accuracy_balanced (mean per-class recall) and
accuracy/class<c> on the balanced held-out split; the rotation stage a linear_probe.

Presets (`--config=configs/imbalanced_semi_self.py:<preset>[,rho=20,rho_u=1,seed=0]`):

  tiny   (default) the semi-supervised route on `builtin:digits`-LT: n_c = ⌊40·20^(−c/9)⌋ labelled
         (40 … 2, 151 images), an unlabelled set of 2×151 images with its own ratio ρ_U, a GroupNorm
         CNN; stages `base` (CE on D_L) → `pseudo_rhoU<ρ_U>` (a new model on D_L ∪ pseudo-labelled D_U):
           python -m paperjax.main --config=configs/imbalanced_semi_self.py
  ssp    the self-supervised route: `rotation` (4-way rotation prediction on D_L's images) → `train`
         (CE on D_L from the SSP backbone):
           python -m paperjax.main --config=configs/imbalanced_semi_self.py:ssp
  ce     the baseline, CE on D_L alone (the `base` stage as a run of its own):
           python -m paperjax.main --config=configs/imbalanced_semi_self.py:ce
         Expect (~30 s per stage on 2 busy cores), balanced test accuracy: CE ≈ 0.69 (tail 0.43),
         + pseudo-labels ρ_U=1 ≈ 0.65, ρ_U=20 ≈ 0.59, rotation SSP + CE ≈ 0.70 — the paper's gains do not
         appear at this scale (paperjax/papers/imbalanced_semi_self/result.json).
  cifar10_lt  ResNet-32-sized GroupNorm ResNet on `tfds:cifar10` with ρ=100 (n_max 5,000), unlabelled
         data from a held-out pool with size factor 5, SGD 0.1, wd 2e-4, batch 256, 200 epochs — one GPU:
           python -m paperjax.main --config=configs/imbalanced_semi_self.py:cifar10_lt --workdir=…
         (the paper's unlabelled source, 80M TinyImages, has been withdrawn; point data.subset at
         another pool). Expect (paper): CE 70.4 → 74.8 with pseudo-labels at ρ=100 (unverified here).
"""

from paperjax import config_lib

PRESETS = ("tiny", "ssp", "ce", "cifar10_lt")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("imbalanced_semi_self")
  c.preset = preset
  rho, rho_u = float(kv.pop("rho", 20)), float(kv.pop("rho_u", 1))
  c.data.update(batch_size=64)
  # ρ_U only enters the pseudo stage, so runs with different ρ_U share (resume) the same `base` stage.
  c.data.subset = dict(long_tail_n_max=40, long_tail_rho=rho, unlabeled="none", unlabeled_size_factor=2,
                       unlabeled_rho=1.0, view="labeled", seed=0)
  c.iss = dict(stage="base", num_classes=10, augment="shift")
  c.optimizer.update(lr=2e-3, warmup_steps=20, weight_decay=2e-4)
  c.train.update(steps=300, log_every=50)

  pseudo = {"iss.stage": "pseudo", "data.subset.unlabeled": "long_tail", "data.subset.view": "union",
            "data.subset.unlabeled_rho": rho_u}
  if preset == "tiny":
    c.stages = ({"name": "base", "overrides": {"iss.stage": "base"}},
                {"name": f"pseudo_rhoU{rho_u:g}", "overrides": pseudo})
  elif preset == "ssp":
    c.stages = ({"name": "rotation", "overrides": {"iss.stage": "rotation", "data.subset.view": "images"}},
                {"name": "train", "overrides": {"iss.stage": "train"}})
  elif preset == "cifar10_lt":
    c.data.update(source="tfds:cifar10", batch_size=256)
    c.data.subset.update(long_tail_n_max=5000, long_tail_rho=100.0, unlabeled_size_factor=5)
    c.model.update(kind="resnet", stage_sizes=(5, 5, 5), block="basic", base_channels=16, stem="cifar")
    c.iss.update(augment="flip_crop")
    c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, warmup_steps=200, weight_decay=2e-4)
    c.train.update(steps=16_000, log_every=100, eval_every=2000, ckpt_every=2000)
    c.eval.update(max_examples=10_000)
    c.stages = ({"name": "base", "overrides": {"iss.stage": "base"}},
                {"name": f"pseudo_rhoU{rho_u:g}", "overrides": pseudo})

  return config_lib.apply_common_args(c, kv, f"configs/imbalanced_semi_self.py:{arg}", "rho=, rho_u=, ")
