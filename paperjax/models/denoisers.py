"""Denoisers for diffusion, flow-matching and consistency models: F(x, noise [, labels, cond]) → x-shaped.

  MLPDenoiser  low-dimensional data (2-D mixtures, flattened weights, 8x8 digits as 64-vectors):
               Dense(x) + Dense(emb) → [SiLU → Dense → + emb] × layers → Dense(D) (zero-initialised)
  UNet         images [B, H, W, C] (8x8 digits up to 32x32 CIFAR-10): DDPM/EDM-style residual blocks
               with GroupNorm, SiLU and an additive embedding, `channel_mult` resolutions (stride-2
               conv down, nearest up), skip concatenations, zero-initialised output conv

`noise` is a per-example scalar (σ's c_noise, a flow time t, ...) embedded by Fourier features of
fixed random frequencies (`embedding="fourier"`, scale `fourier_scale`: iCT's 0.02 is far less
sensitive than CT's 16) or DDPM sinusoids (`"positional"`), then a 2-layer MLP. Optional conditioning
is added to the embedding: `labels` int32[B] (`num_classes` > 0; the id `num_classes` is the
"unconditional" token for classifier-free guidance) and `cond` float[B, K] (e.g. a dataset
embedding). Dropout (`dropout` > 0) is active when `rngs={"dropout": ...}` is passed with
deterministic=False. Parameters carry logical axis names like the CNN (models/cnn.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from paperjax.models.cnn import conv, dense, norm_layer


def noise_features(noise_B: jax.Array, dim: int, kind: str = "fourier", scale: float = 16.0) -> jax.Array:
  """[B] → [B, dim] sin/cos features. Fourier frequencies are fixed N(0, scale²) draws (EDM/NCSN++);
  positional ones are the DDPM geometric frequencies 1/10000^(k/half)."""
  half = dim // 2
  noise_B = noise_B.astype(jnp.float32).reshape(-1)
  if kind == "fourier":
    freqs = jax.random.normal(jax.random.PRNGKey(0), (half,)) * scale
    arg = 2 * math.pi * noise_B[:, None] * freqs[None]
  elif kind == "positional":
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half) / half)
    arg = noise_B[:, None] * freqs[None]
  else:
    raise ValueError(f"model.embedding={kind!r} is unknown; use 'fourier' or 'positional'.")
  return jnp.concatenate([jnp.cos(arg), jnp.sin(arg)], -1)


class NoiseEmbedding(nn.Module):
  dim: int = 128
  kind: str = "fourier"
  fourier_scale: float = 16.0
  num_classes: int = 0

  @nn.compact
  def __call__(self, noise_B, labels_B=None, cond_BK=None):
    e = noise_features(noise_B, self.dim, self.kind, self.fourier_scale)
    e = dense(self.dim, "emb0")(e)
    if self.num_classes and labels_B is not None:
      e = e + nn.Embed(self.num_classes + 1, self.dim, name="label_emb")(labels_B)
    if cond_BK is not None:
      e = e + dense(self.dim, "cond_emb")(cond_BK.reshape(cond_BK.shape[0], -1).astype(jnp.float32))
    return dense(self.dim, "emb1")(nn.silu(e))


class MLPDenoiser(nn.Module):
  hidden: int = 128
  layers: int = 3
  emb_dim: int = 64
  embedding: str = "fourier"
  fourier_scale: float = 16.0
  num_classes: int = 0
  dropout: float = 0.0
  out_dim: int = 0        # 0: x-shaped output (a denoiser); > 0: [B, out_dim] (e.g. a router's logits)

  @nn.compact
  def __call__(self, x, noise_B, labels_B=None, cond_BK=None, deterministic: bool = True):
    shape = x.shape
    x_BD = x.reshape(shape[0], -1).astype(jnp.float32)
    emb = NoiseEmbedding(self.emb_dim, self.embedding, self.fourier_scale, self.num_classes, name="embed")(
        noise_B, labels_B, cond_BK)
    h = dense(self.hidden, "in")(x_BD)
    for i in range(self.layers):
      h = h + dense(self.hidden, f"emb_proj{i}")(nn.silu(emb))
      h = dense(self.hidden, f"layer{i}")(nn.silu(h))
      h = nn.Dropout(self.dropout)(h, deterministic=deterministic or self.dropout == 0)
    if self.out_dim:
      return dense(self.out_dim, "out", zero_init=True)(nn.silu(h))
    out = dense(x_BD.shape[-1], "out", zero_init=True)(nn.silu(h))
    return out.reshape(shape)


class ResBlock(nn.Module):
  channels: int
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, emb, deterministic: bool = True):
    h = conv(self.channels, 3, "conv0")(nn.silu(norm_layer("group", x.shape[-1], "norm0")(x)))
    h = h + dense(self.channels, "emb")(nn.silu(emb))[:, None, None, :]
    h = nn.silu(norm_layer("group", self.channels, "norm1")(h))
    h = nn.Dropout(self.dropout)(h, deterministic=deterministic or self.dropout == 0)
    h = nn.Conv(self.channels, (3, 3), padding="SAME", name="conv1", kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.channels:
      x = conv(self.channels, 1, "skip")(x)
    return (x + h) / math.sqrt(2.0)


class UNet(nn.Module):
  channels: int = 32
  channel_mult: Sequence[int] = (1, 2)
  num_res_blocks: int = 1
  emb_dim: int = 128
  embedding: str = "fourier"
  fourier_scale: float = 16.0
  num_classes: int = 0
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x_BHWC, noise_B, labels_B=None, cond_BK=None, deterministic: bool = True):
    emb = NoiseEmbedding(self.emb_dim, self.embedding, self.fourier_scale, self.num_classes, name="embed")(
        noise_B, labels_B, cond_BK)
    h = conv(self.channels, 3, "in")(x_BHWC.astype(jnp.float32))
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for b in range(self.num_res_blocks):
        h = ResBlock(self.channels * mult, self.dropout, name=f"down{level}_{b}")(h, emb, deterministic)
        skips.append(h)
      if level < len(self.channel_mult) - 1:
        h = conv(h.shape[-1], 3, f"downsample{level}", strides=2)(h)
        skips.append(h)
    c_mid = self.channels * self.channel_mult[-1]
    h = ResBlock(c_mid, self.dropout, name="mid0")(h, emb, deterministic)
    h = ResBlock(c_mid, self.dropout, name="mid1")(h, emb, deterministic)
    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for b in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], -1)
        h = ResBlock(self.channels * mult, self.dropout, name=f"up{level}_{b}")(h, emb, deterministic)
      if level > 0:
        B, H, W, C = h.shape
        h = jax.image.resize(h, (B, 2 * H, 2 * W, C), "nearest")
        h = conv(C, 3, f"upsample{level}")(h)
    h = nn.silu(norm_layer("group", h.shape[-1], "out_norm")(h))
    return nn.Conv(x_BHWC.shape[-1], (3, 3), padding="SAME", name="out", kernel_init=nn.initializers.zeros)(h)


def build(model_cfg, data_shape: tuple[int, ...], **overrides) -> nn.Module:
  """The denoiser `model_cfg.kind` names ("mlp" or "unet") for examples of `data_shape`."""
  cfg = {**dict(model_cfg), **overrides}
  kind = cfg.pop("kind", "mlp")
  common = {k: cfg[k] for k in ("embedding", "fourier_scale", "num_classes", "dropout", "emb_dim") if k in cfg}
  if kind == "mlp":
    return MLPDenoiser(hidden=int(cfg.get("hidden", 128)), layers=int(cfg.get("layers", 3)),
                       out_dim=int(cfg.get("out_dim", 0)), **common)
  if kind == "unet":
    if len(data_shape) != 3:
      raise ValueError(f"model.kind='unet' needs images [H, W, C]; the data's examples are shaped {data_shape}. "
                       "Use model.kind='mlp' for vectors.")
    mult = tuple(cfg.get("channel_mult", (1, 2)))
    if data_shape[0] % 2 ** (len(mult) - 1):
      raise ValueError(f"model.channel_mult={mult} halves {data_shape[0]}x{data_shape[1]} images "
                       f"{len(mult) - 1} times; use fewer levels.")
    return UNet(channels=int(cfg.get("channels", 32)), channel_mult=mult,
                num_res_blocks=int(cfg.get("num_res_blocks", 1)), **common)
  raise ValueError(f"model.kind={kind!r} is not a denoiser; use 'mlp' or 'unet'.")
