"""SLA (Lee, Hwang, Shin, 2020): joint labels over input rotations, aggregated inference, self-distillation.

Reports (evals/classification.py): ce / mt / sla_sd — accuracy (single head); sla / sla_sd —
aggregated_accuracy; sla — joint_identity_accuracy (joint head on the upright image only).

Presets (`--config=configs/sla.py:<preset>[,mode=ce|sla|sla_sd|mt,labels=20,seed=0]`):

  tiny   (default mode=sla) `builtin:digits` with 20 labels per class (200 images), rotations
         0/90/180/270 (M = 4), a GroupNorm CNN (16-32 channels), Adam 2e-3, 800 steps × 32, offline:
           python -m paperjax.main --config=configs/sla.py                    # SLA, aggregated inference
           python -m paperjax.main --config=configs/sla.py:tiny,mode=ce       # the CE baseline
           python -m paperjax.main --config=configs/sla.py:tiny,mode=sla_sd   # SLA + self-distillation
           python -m paperjax.main --config=configs/sla.py:tiny,mode=mt       # multi-task rotation baseline
         Expect (~15 s each on 2 busy cores): CE ≈ 0.90, SLA aggregated ≈ 0.915, SLA+SD single ≈ 0.89,
         multi-task ≈ 0.61 (3 seeds in paperjax/papers/sla/result.json).
  cifar100  ResNet-32-sized GroupNorm ResNet on `tfds:cifar100`, full labels, SGD 0.1 momentum 0.9,
         wd 5e-4, batch 128, 80K steps — one GPU:
           python -m paperjax.main --config=configs/sla.py:cifar100 --workdir=gs://…/sla-c100
         Expect (paper, ResNet-32, SLA+SD): ≈ 74% vs 70% for the CE baseline (unverified here).
"""

from paperjax import config_lib

PRESETS = ("tiny", "cifar100")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("sla")
  c.preset = preset
  c.model.update(kind="cnn", channels=(16, 32), dense_dim=64)
  c.data.update(batch_size=32)
  c.data.subset = dict(labels_per_class=int(kv.pop("labels", 20)), view="labeled", seed=0)
  c.sla = dict(mode=kv.pop("mode", "sla"), num_transforms=4, num_classes=10, temperature=1.0, beta=1.0,
               augment="shift")
  c.optimizer.update(lr=2e-3, warmup_steps=20, weight_decay=5e-4)
  c.train.update(steps=800, log_every=100)

  if preset == "cifar100":
    c.data.update(source="tfds:cifar100", batch_size=128)
    c.data.subset = dict(view="labeled")
    c.model.update(kind="resnet", stage_sizes=(5, 5, 5), block="basic", base_channels=16, stem="cifar")
    c.sla.update(num_classes=100, augment="flip_crop")
    c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, warmup_steps=0, weight_decay=5e-4, end_lr_frac=0.001)
    c.train.update(steps=80_000, log_every=200, eval_every=5000, ckpt_every=5000)
    c.eval.update(max_examples=10_000)

  return config_lib.apply_common_args(c, kv, f"configs/sla.py:{arg}", "mode=, labels=, ")
