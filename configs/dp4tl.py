"""DP4TL (Zhang et al., 2023): prune source classes by the target's votes, pretrain on the rest, fine-tune.

One run is three stages (each in `<workdir>/<stage>`): `surrogate` (a network on the full source)
→ `pretrain_<kind>` (a fresh network on the kept source classes, the same number of epochs, so the
steps scale with the kept fraction) → `finetune_<kind>` (the pretrained network, new head, on the target).

Presets (`--config=configs/dp4tl.py:<preset>[,keep=10,seed=0]`):

  tiny            (default) LM pruning on a toy source of 40 classes — digits split A (×3 with ±1 px
                  shifts, 10 classes) + 30 procedural glyph classes (216 each) — keeping k = 10 classes
                  (25%); target = digits split B with 10% of its labels (≈ 70 images), tested on the
                  360 held-out digits; MLP 64→256→C; surrogate 200 steps, full pretraining 400 steps
                  (pruned: 100), fine-tuning 200 steps:
                    python -m paperjax.main --config=configs/dp4tl.py
                  Expect (~40 s): the kept classes are the 10 digit classes; ≈ 0.85 target accuracy
                  (see result.json, 3 seeds).
  fm              feature-mapping pruning (nearest class-mean of surrogate features)
  random_classes  k source classes at random (the paper's random-pruning baseline)
  full            pretraining on every source class (400 steps)
  scratch         no pretraining: the target model trained from scratch on the target labels
                    python -m paperjax.main --config=configs/dp4tl.py:random_classes
  imagenet        the paper's setting: source `tfds:imagenet2012` (1,000 classes), ResNet-18 surrogate,
                  ResNet-50 pretraining on the kept classes (k = 500) for 16 epochs, fine-tuned on
                  `tfds:oxford_flowers102`; 8 × A100/H100 (or a v4-32), prepare both datasets with tfds first:
                    python -m paperjax.main --config=configs/dp4tl.py:imagenet --workdir=gs://…/dp4tl
                  Expect (paper, Fig. 3): transfer accuracy of LM at 50% kept ≈ full-source pretraining
                  (unverified in this codebase).
"""

from paperjax import config_lib, selection

PRESETS = ("tiny", "fm", "random_classes", "full", "scratch", "imagenet")
SOURCE_CLASSES = 40


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("dp4tl")
  c.preset = preset
  keep = int(kv.pop("keep", 10))
  kind = {"tiny": "lm", "imagenet": "lm"}.get(preset, preset)
  c.model = dict(kind="mlp", hidden=(256,), num_classes=SOURCE_CLASSES)
  c.data.update(batch_size=64)
  c.selection = selection.config_block(kind=kind if kind != "scratch" else "full", fraction=1.0, round_steps=0, seed=0)
  c.dp4tl = dict(role="source", keep_classes=keep, glyphs_per_class=216, target_label_fraction=0.1,
                 source_spec="", target_spec="")
  c.optimizer.update(lr=3e-3, warmup_steps=10, weight_decay=1e-4)
  c.train.update(steps=200, log_every=50, eval_every=0, target_metric="", target_value=0.0)
  full_steps, surrogate_steps, ft_steps = 400, 200, 200
  pre_steps = full_steps if kind == "full" else max(1, full_steps * keep // SOURCE_CLASSES)
  finetune = {"dp4tl.role": "target", "selection.kind": "full", "model.num_classes": 10, "train.steps": ft_steps,
              "data.batch_size": 32, "optimizer.lr": 1e-3}

  if preset == "imagenet":
    c.data.update(source="tfds:imagenet2012", batch_size=1024)
    c.model = dict(kind="resnet", depth=18, width=1.0, base_channels=64, stem="imagenet", num_classes=1000)
    c.dp4tl.update(source_spec="tfds:imagenet2012", target_spec="tfds:oxford_flowers102", keep_classes=keep if "keep" in (arg or "") else 500)
    c.optimizer.update(name="sgd", lr=0.4, momentum=0.9, nesterov=True, weight_decay=5e-5, warmup_steps=1000)
    c.train.update(log_every=100, ckpt_every=2000)
    steps_per_epoch = 1_281_167 // 1024
    surrogate_steps, full_steps = 16 * steps_per_epoch, 16 * steps_per_epoch
    pre_steps = full_steps * c.dp4tl.keep_classes // 1000 if kind != "full" else full_steps
    finetune.update({"model.num_classes": 102, "train.steps": 5000, "data.batch_size": 256, "optimizer.lr": 0.01,
                     "model.depth": 50})

  if kind == "scratch":
    c.stages = ({"name": "finetune_scratch", "overrides": finetune},)
  else:
    c.stages = (
        # The surrogate is the same for every preset (a claim resumes it from one workdir for all).
        {"name": "surrogate", "overrides": {"preset": "surrogate", "selection.kind": "full",
                                            "train.steps": surrogate_steps}},
        {"name": f"pretrain_{kind}", "overrides": {"selection.kind": kind, "train.steps": pre_steps,
                                                   **({"model.depth": 50} if preset == "imagenet" else {})}},
        {"name": f"finetune_{kind}", "overrides": finetune},
    )
  return selection.apply_args(c, kv, f"configs/dp4tl.py:{arg}", "keep=, ")
