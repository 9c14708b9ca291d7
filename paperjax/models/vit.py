"""Vision Transformer (Dosovitskiy et al. 2021) on the shared transformer blocks.

patchify (a conv of kernel = stride = patch) → + learned position embeddings → the shared
bidirectional `transformer.Stack` (pre-RMSNorm blocks, gated MLP; its rotary embedding over the
patch order is kept, on top of the learned 2-D table) → mean pool ("gap", big_vision's default for
small ViTs) or a class token → features [B, D]. Logical axes as in the transformer
(`embed`, `heads`, `kv`, `mlp`), so the real presets shard the same way.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from paperjax.models.transformer import Stack, TransformerConfig


class ViT(nn.Module):
  patch: int = 4
  d_model: int = 192
  num_layers: int = 4
  num_heads: int = 3
  d_ff: int = 768
  pool: str = "gap"
  dtype: str = "float32"

  @property
  def features_dim(self) -> int:
    return self.d_model

  def _cfg(self) -> TransformerConfig:
    return TransformerConfig(vocab_size=1, d_model=self.d_model, num_heads=self.num_heads,
                             head_dim=self.d_model // self.num_heads, d_ff=self.d_ff, num_layers=self.num_layers,
                             kind="decoder", dtype=jnp.dtype(self.dtype))

  @nn.compact
  def __call__(self, x_BHWC, train: bool = False):
    del train
    cfg = self._cfg()
    B, H, W, _ = x_BHWC.shape
    if H % self.patch or W % self.patch:
      raise ValueError(f"Image size {H}x{W} is not divisible by model.patch={self.patch}; pick a divisor.")
    x = nn.Conv(self.d_model, (self.patch, self.patch), strides=(self.patch, self.patch), padding="VALID",
                name="patchify", dtype=cfg.dtype,
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), (None, None, None, "embed")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x_BHWC.astype(cfg.dtype))
    x = x.reshape(B, -1, self.d_model)
    pos = self.param("pos_embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, None, "embed")),
                     (1, x.shape[1], self.d_model))
    x = x + pos.astype(x.dtype)
    if self.pool == "token":
      cls = self.param("cls", nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")), (1, 1, self.d_model))
      x = jnp.concatenate([jnp.broadcast_to(cls, (B, 1, self.d_model)).astype(x.dtype), x], axis=1)
    L = x.shape[1]
    aux = dict(self_mask=None, positions=jnp.arange(L)[None])
    h = Stack(cfg, self.num_layers, causal=False, name="encoder")(x, aux)
    out = h[:, 0] if self.pool == "token" else jnp.mean(h, axis=1)
    return out.astype(jnp.float32)
