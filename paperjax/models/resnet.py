"""ResNet v2 with GroupNorm + Weight Standardisation (BiT, Kolesnikov et al. 2020), any depth and width.

`ResNet(stage_sizes, width, block)`: pre-activation residual stages; `width` multiplies every
channel count (SimCLRv2's 2×/3× wide ResNets, BiT's ×N); `stem="cifar"` is one 3x3 conv for 32x32
inputs, `"imagenet"` the 7x7/2 conv + 3x3/2 max-pool. Standard depths: `resnet(depth)` gives
18/34 (basic blocks) and 50/101/152 (bottlenecks). GroupNorm + WS rather than BatchNorm: no batch
statistics in the train state, same function at train and eval time, large-batch-free (big_vision's
BiT models make the same choice). Output: globally pooled features [B, D].
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from paperjax.models.cnn import CONV_AXES, norm_layer

DEPTHS = {18: ((2, 2, 2, 2), "basic"), 34: ((3, 4, 6, 3), "basic"), 50: ((3, 4, 6, 3), "bottleneck"),
          101: ((3, 4, 23, 3), "bottleneck"), 152: ((3, 8, 36, 3), "bottleneck")}


class StdConv(nn.Conv):
  """Conv with weight standardisation: kernel ← (kernel − mean) / std over (kh, kw, in)."""

  def param(self, name, init_fn, *init_args, **init_kwargs):
    p = super().param(name, init_fn, *init_args, **init_kwargs)
    if name == "kernel":
      p = p - jnp.mean(p, axis=(0, 1, 2), keepdims=True)
      p = p / jnp.sqrt(jnp.var(p, axis=(0, 1, 2), keepdims=True) + 1e-10)
    return p


def _conv(c, k, name, strides=1, dtype=jnp.float32):
  return StdConv(c, (k, k), strides=(strides, strides), padding="SAME", use_bias=False, dtype=dtype, name=name,
                 kernel_init=nn.with_logical_partitioning(nn.initializers.he_normal(), CONV_AXES))


class Block(nn.Module):
  channels: int
  strides: int
  kind: str
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x):
    dt = jnp.dtype(self.dtype)
    out = self.channels * (4 if self.kind == "bottleneck" else 1)
    h = nn.relu(norm_layer("group", x.shape[-1], "norm0")(x))
    shortcut = x
    if x.shape[-1] != out or self.strides != 1:
      shortcut = _conv(out, 1, "proj", self.strides, dt)(h)
    if self.kind == "bottleneck":
      h = _conv(self.channels, 1, "conv0", 1, dt)(h)
      h = _conv(self.channels, 3, "conv1", self.strides, dt)(nn.relu(norm_layer("group", self.channels, "norm1")(h)))
      h = _conv(out, 1, "conv2", 1, dt)(nn.relu(norm_layer("group", self.channels, "norm2")(h)))
    else:
      h = _conv(self.channels, 3, "conv0", self.strides, dt)(h)
      h = _conv(out, 3, "conv1", 1, dt)(nn.relu(norm_layer("group", self.channels, "norm1")(h)))
    return h + shortcut


class ResNet(nn.Module):
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width: float = 1.0
  block: str = "basic"
  base_channels: int = 64
  stem: str = "cifar"
  dtype: str = "float32"

  @property
  def features_dim(self) -> int:
    return int(self.base_channels * self.width) * 2 ** (len(self.stage_sizes) - 1) * (4 if self.block == "bottleneck" else 1)

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    del train
    dt = jnp.dtype(self.dtype)
    c0 = int(self.base_channels * self.width)
    x = x_BHWC.astype(dt)
    if self.stem == "imagenet":
      x = _conv(c0, 7, "stem", 2, dt)(x)
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    elif self.stem == "cifar":
      x = _conv(c0, 3, "stem", 1, dt)(x)
    else:
      raise ValueError(f"model.stem={self.stem!r} is unknown; use 'cifar' or 'imagenet'.")
    for s, n in enumerate(self.stage_sizes):
      for b in range(n):
        strides = 2 if (s > 0 and b == 0 and min(x.shape[1:3]) >= 2) else 1
        x = Block(c0 * 2 ** s, strides, self.block, self.dtype, name=f"stage{s}_block{b}")(x)
    x = nn.relu(norm_layer("group", x.shape[-1], "final_norm")(x))
    return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)


def resnet(depth: int, **kw) -> ResNet:
  if depth not in DEPTHS:
    raise ValueError(f"ResNet depth {depth} is not one of {sorted(DEPTHS)}; use one of them or give stage_sizes.")
  sizes, block = DEPTHS[depth]
  return ResNet(stage_sizes=sizes, block=block, **kw)
