"""A small CNN for 8x8–32x32 images: the toy backbone of the vision papers.

  stages: [conv3x3 → norm → relu] × convs_per_stage, then 2x2 max-pool (the last stage pools
  globally) → optional dense → features [B, D]

`width` multiplies every channel count (SimCLRv2's "bigger" models at toy scale). Normalisation is
GroupNorm (per example, so no batch statistics to carry in the train state and no train/eval
difference — the BiT choice), or "none". Parameters carry logical axis names: conv kernels
(None, None, "embed", "mlp"), dense ("embed", "mlp"), so the real presets shard like the transformer.
Shape suffixes: B batch, H/W spatial, C channels, D features.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

CONV_AXES = (None, None, "embed", "mlp")
DENSE_AXES = ("embed", "mlp")


def norm_layer(kind: str, channels: int, name: str):
  if kind == "group":
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if (channels % g == 0 and channels // g >= 4) or g == 1)
    return nn.GroupNorm(num_groups=groups, name=name,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("mlp",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))
  if kind == "layer":
    return nn.LayerNorm(name=name)
  if kind == "none":
    return lambda x: x
  raise ValueError(f"model.norm={kind!r} is unknown; use 'group', 'layer' or 'none'.")


def conv(features: int, kernel: int, name: str, strides: int = 1, use_bias: bool = True, dtype=jnp.float32):
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding="SAME", use_bias=use_bias,
                 dtype=dtype, name=name,
                 kernel_init=nn.with_logical_partitioning(nn.initializers.he_normal(), CONV_AXES),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)))


def dense(features: int, name: str, axes=DENSE_AXES, use_bias: bool = True, zero_init: bool = False, dtype=jnp.float32):
  init = nn.initializers.zeros if zero_init else nn.initializers.lecun_normal()
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, name=name,
                  kernel_init=nn.with_logical_partitioning(init, axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[-1],)))


class ConvNet(nn.Module):
  channels: Sequence[int] = (32, 64)
  convs_per_stage: int = 1
  width: float = 1.0
  dense_dim: int = 128          # 0: the pooled conv features are the output
  norm: str = "group"
  dtype: str = "float32"

  @property
  def features_dim(self) -> int:
    return self.dense_dim or int(round(self.channels[-1] * self.width))

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    del train  # no dropout or batch statistics: train and eval are the same function
    dt = jnp.dtype(self.dtype)
    x = x_BHWC.astype(dt)
    for s, c in enumerate(self.channels):
      c = int(round(c * self.width))
      for j in range(self.convs_per_stage):
        x = conv(c, 3, f"conv{s}_{j}", dtype=dt)(x)
        x = nn.relu(norm_layer(self.norm, c, f"norm{s}_{j}")(x))
      if s < len(self.channels) - 1 and min(x.shape[1:3]) >= 2:
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x_BD = jnp.mean(x, axis=(1, 2))
    if self.dense_dim:
      x_BD = nn.relu(dense(self.dense_dim, "dense", dtype=dt)(x_BD))
    return x_BD.astype(jnp.float32)
