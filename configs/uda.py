"""UDA (Xie et al., 2020): consistency between predictions on unlabelled images and their RandAugment copies.

Reports (evals/classification.py): accuracy (held-out split), labeled_train_accuracy (the labelled subset).

Presets (`--config=configs/uda.py:<preset>[,mode=uda|supervised|noise,labels=5,seed=0]`):

  tiny   (default) `builtin:digits` with 5 labels per class (50 labelled images), the other 1,387
         train images unlabelled, 5 unlabelled per labelled example in each batch (16 + 80), a
         GroupNorm CNN (16-32 channels), Adam, 600 steps, offline on 2 CPU cores:
           python -m paperjax.main --config=configs/uda.py
           python -m paperjax.main --config=configs/uda.py:tiny,mode=supervised   # the baseline
         Expect (~40 s each on 2 busy cores): test accuracy UDA ≈ 0.91, supervised-only ≈ 0.84,
         Gaussian-noise consistency ≈ 0.85 (3 seeds in paperjax/papers/uda/result.json).
  cifar10  WRN-28-2-sized ResNet (GroupNorm) on `tfds:cifar10`, 4,000 labels, unsup ratio 5 with
         batch 32 + 160, 200K steps, Nesterov SGD lr 0.03 with 20K warm-up and cosine to 0.004×,
         wd 5e-4 (google-research/uda scripts) — one GPU/TPU host:
           python -m paperjax.main --config=configs/uda.py:cifar10 --workdir=gs://…/uda-cifar10
         Expect (paper, WRN-28-2): 5.29% test error with 4,000 labels (unverified here).
"""

from paperjax import config_lib

PRESETS = ("tiny", "cifar10")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("uda")
  c.preset = preset
  mode = kv.pop("mode", "uda")
  labels = int(kv.pop("labels", 5))
  c.model.update(kind="cnn", channels=(32, 64), dense_dim=128)
  c.data.update(batch_size=16)   # labelled examples per batch; each carries `unlabeled_ratio` unlabelled images
  c.data.subset = dict(labels_per_class=labels, unlabeled="rest", view="semi", unlabeled_ratio=5, seed=0)
  c.uda = dict(mode=mode, coeff=1.0, temperature=-1.0, confidence=-1.0, tsa="", augment="randaugment",
               sup_augment="shift", noise_std=0.1, num_classes=10)
  c.optimizer.update(lr=2e-3, warmup_steps=30, weight_decay=5e-4)
  c.train.update(steps=1500, log_every=100)

  if preset == "cifar10":
    c.data.update(source="tfds:cifar10", batch_size=32)
    c.data.subset.update(labels_per_class=400)
    c.model.update(kind="resnet", stage_sizes=(4, 4, 4), block="basic", base_channels=32, width=1.0, stem="cifar")
    c.uda.update(sup_augment="flip_crop")
    c.optimizer.update(name="sgd", momentum=0.9, nesterov=True, lr=0.03, warmup_steps=20_000, end_lr_frac=0.004,
                       weight_decay=5e-4)
    c.train.update(steps=200_000, log_every=200, eval_every=10_000, ckpt_every=10_000, ckpt_every_s=1800.0)
    c.eval.update(max_examples=10_000)

  return config_lib.apply_common_args(c, kv, f"configs/uda.py:{arg}", "mode=, labels=, ")
