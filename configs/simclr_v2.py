"""SimCLRv2 (Chen et al., 2020): self-supervised pretraining → fine-tuning on few labels → distillation.

One run is the paper's three-step recipe as three stages (each in `<workdir>/<stage>`):
  pretrain  NT-Xent (τ=0.1) on every train image, no labels, 3-layer projection head
  finetune  CE on a label fraction, from the projection head's first layer
  distill   a width-1 student on the unlabelled images, soft targets of the frozen fine-tuned teacher

Reports (evals/classification.py): pretrain — linear_probe (ridge) and knn on frozen features;
finetune / distill — accuracy on the held-out split.

Presets (`--config=configs/simclr_v2.py:<preset>[,labels=0.05,width=4,student_width=1,seed=0]`):

  tiny      (default) `builtin:digits` (1,437 train / 360 test 8x8 digits), 5% labels (~70 images),
            pretrain 200 steps × 64 pairs, fine-tune 300 × 32, distil 300 × 64,
            GroupNorm CNN (16-32 channels × width 4 = 64-128), student width 1, offline, 2 CPU cores:
              python -m paperjax.main --config=configs/simclr_v2.py
            Expect (~1.5 min on 2 busy cores): pretrain linear probe ≈ 0.98, fine-tuned (5%) ≈ 0.92,
            distilled width-1 student ≈ 0.81; supervised-only on the same 5% ≈ 0.91 (result.json).
  supervised  the baseline: the fine-tune model trained from scratch on the same labels (one stage):
              python -m paperjax.main --config=configs/simclr_v2.py:supervised
  imagenet  ResNet-152 (width 3, no SK) on `tfds:imagenet2012` at 224 px, 1% labels, LARS lr 0.075·√B,
            wd 1e-4, batch 4096, 800 pretraining epochs — a v4-256 / 128-H100 job:
              python -m paperjax.main --config=configs/simclr_v2.py:imagenet,labels=0.01 --workdir=gs://…
            Expect (paper, with SK): 1% labels ≈ 74.9% top-1 for the big model, distilled RN-50 ≈ 73.9%
            (unverified in this codebase).
"""

from paperjax import config_lib

PRESETS = ("tiny", "supervised", "imagenet")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("simclr_v2")
  c.preset = preset
  labels = float(kv.pop("labels", 0.05))
  width = float(kv.pop("width", 4.0))
  student_width = float(kv.pop("student_width", 1.0))
  c.model.update(kind="cnn", channels=(16, 32), width=width, dense_dim=0)
  c.data.update(batch_size=64)
  # Every train image is "unlabelled" for pretraining and distillation; fine-tuning sees `labels` of them.
  c.data.subset = dict(view="images", unlabeled="rest", label_fraction=0.0, seed=0)
  c.simclr = dict(stage="pretrain", temperature=0.1, num_proj_layers=3, proj_dim=64, ft_layer=1, num_classes=10,
                  teacher_width=width, distill_temperature=1.0, augment="simclr", ft_augment="shift",
                  image_size=0, channels=1)
  c.optimizer.update(lr=2e-3, warmup_steps=20, weight_decay=1e-4)
  c.train.update(steps=200, log_every=50)
  finetune = {"simclr.stage": "finetune", "data.subset.view": "labeled", "data.subset.label_fraction": labels,
              "data.batch_size": 32, "train.steps": 300, "optimizer.lr": 1e-3, "optimizer.warmup_steps": 10}
  c.stages = (
      {"name": "pretrain", "overrides": {"simclr.stage": "pretrain"}},
      {"name": f"finetune_{labels:g}", "overrides": finetune},
      {"name": f"distill_{labels:g}_w{student_width:g}",
       "overrides": {"simclr.stage": "distill", "data.subset.view": "images", "data.subset.label_fraction": labels,
                     "model.width": student_width, "train.steps": 300, "optimizer.lr": 2e-3}},
  )

  if preset == "supervised":
    c.stages = ()
    for k, v in finetune.items():
      _set(c, k, v)
  elif preset == "imagenet":
    c.data.update(source="tfds:imagenet2012", batch_size=4096)
    c.model.update(kind="resnet", depth=152, width=3.0, base_channels=64, stem="imagenet", dtype="bfloat16")
    c.simclr.update(image_size=224, channels=3, proj_dim=128, teacher_width=3.0, augment="simclr", ft_augment="flip_crop")
    c.optimizer.update(name="lars", lr=0.075 * 4096 ** 0.5, warmup_steps=12_500, weight_decay=1e-4)
    c.train.update(steps=250_000, log_every=100, eval_every=10_000, ckpt_every=5000, ckpt_every_s=1800.0)
    c.eval.update(batch_size=1024, max_examples=10_000)
    c.stages[1]["overrides"].update({"data.batch_size": 1024, "train.steps": 60_000, "optimizer.lr": 0.005,
                                     "optimizer.name": "lars"})
    c.stages[2]["overrides"].update({"model.kind": "resnet", "model.depth": 50, "model.width": 1.0,
                                     "data.batch_size": 4096, "train.steps": 100_000})

  return config_lib.apply_common_args(c, kv, f"configs/simclr_v2.py:{arg}", "labels=, width=, student_width=, ")


def _set(c, dotted: str, value):
  node = c
  *parents, leaf = dotted.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value
