"""Image backbones from the config: `image_encoder(config.model)` → a module mapping [B,H,W,C] → [B,D].

config.model.kind:
  cnn     ConvNet(channels, convs_per_stage, width, dense_dim, norm)            (models/cnn.py)
  resnet  ResNet(depth | stage_sizes, width, block, base_channels, stem)        (models/resnet.py)
  vit     ViT(patch, d_model, num_layers, num_heads, d_ff, pool)                 (models/vit.py)
Fields a kind does not use are ignored, so one config block can switch kinds on the command line
(`--config.model.kind=resnet`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from paperjax.models import cnn, heads, resnet, vit

KINDS = {"cnn": cnn.ConvNet, "resnet": resnet.ResNet, "vit": vit.ViT}


def image_encoder(model_cfg, **overrides):
  cfg = {**dict(model_cfg), **overrides}
  kind = cfg.pop("kind", "cnn")
  if kind not in KINDS:
    raise ValueError(f"model.kind={kind!r} is not an image backbone; use one of {sorted(KINDS)}.")
  if kind == "resnet" and cfg.get("depth"):
    sizes, block = resnet.DEPTHS.get(int(cfg["depth"]), (None, None))
    if sizes is None:
      raise ValueError(f"model.depth={cfg['depth']} is not one of {sorted(resnet.DEPTHS)}.")
    cfg.update(stage_sizes=sizes, block=block)
  cls = KINDS[kind]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
  kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k in fields}
  return cls(**kw)


class Classifier(nn.Module):
  """image_encoder(model_cfg) ("encoder") → linear head ("head"): logits [B, num_classes].
  `features(x)` gives the encoder's output (for probes, kNN, distillation)."""
  model_cfg: dict
  num_classes: int

  def setup(self):
    self.encoder = image_encoder(self.model_cfg)
    self.head = heads.Linear(self.num_classes)

  def features(self, x):
    return self.encoder(x)

  def __call__(self, x):
    return self.head(self.encoder(x))

