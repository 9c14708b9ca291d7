"""LOOK (Feng et al., 2022): supervised pretraining with a leave-one-out kNN loss over a memory bank.

Reports (evals/classification.py): fine_linear_probe, fine_knn (10 digit classes) and
coarse_linear_probe, coarse_knn on the frozen backbone; ce mode also coarse_accuracy of its head.

Presets (`--config=configs/look.py:<preset>[,mode=look|ce,seed=0]`):

  tiny   (default mode=look) `builtin:digits` relabelled into 3 deliberately multi-modal coarse
         classes {0,6,8,9} / {1,4,7} / {2,3,5}; a GroupNorm CNN (32-64, dense 128) + 2-layer
         projection to 64-d; memory of all 1,437 train embeddings (k=20, τ=0.1, momentum 0.5);
         Adam, 800 steps × 64; offline on 2 CPU cores:
           python -m paperjax.main --config=configs/look.py
           python -m paperjax.main --config=configs/look.py:tiny,mode=ce        # the CE baseline
         Expect (~20 s each on 2 busy cores): coarse kNN ≈ 0.95 for both; fine 10-class probe of the
         backbone: linear ≈ 0.95 for both, kNN ≈ 0.94 (LOOK) vs 0.85 (CE) (paperjax/papers/look/result.json).
  imagenet  ResNet-50 on `tfds:imagenet2012` (1,000 classes as the "coarse" labels; transfer is
         evaluated downstream), memory of 1.28M × 128 in the train state, SGD 0.1 momentum 0.9,
         batch 1024, 100 epochs — one v4-32 / 16 H100s:
           python -m paperjax.main --config=configs/look.py:imagenet --workdir=gs://…/look
         Expect: the paper's transfer gains over CE pretraining (unverified here).
"""

from paperjax import config_lib

PRESETS = ("tiny", "imagenet")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("look")
  c.preset = preset
  c.data.update(batch_size=64)
  c.data.subset = dict(with_index=True, view="labeled")
  c.look = dict(mode=kv.pop("mode", "look"), k=20, temperature=0.1, momentum=0.5, proj_dims=(128, 64),
                coarse_classes=((0, 6, 8, 9), (1, 4, 7), (2, 3, 5)), augment="shift")
  c.optimizer.update(lr=1e-3, warmup_steps=20)
  c.train.update(steps=800, log_every=100)

  if preset == "imagenet":
    c.data.update(source="tfds:imagenet2012", batch_size=1024)
    c.model.update(kind="resnet", depth=50, width=1.0, stem="imagenet", dtype="bfloat16")
    c.look.update(k=200, proj_dims=(2048, 128), coarse_classes=tuple((i,) for i in range(1000)), augment="flip_crop")
    c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, warmup_steps=5000, weight_decay=1e-4)
    c.train.update(steps=125_000, log_every=200, eval_every=10_000, ckpt_every=5000, ckpt_every_s=1800.0)
    c.eval.update(max_examples=10_000)

  return config_lib.apply_common_args(c, kv, f"configs/look.py:{arg}", "mode=, ")
