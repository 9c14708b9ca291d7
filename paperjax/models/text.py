"""A text tower for two-tower (CLIP-style) models, on the shared transformer blocks.

tokens [B, L] (0 = pad) → embedding → bidirectional `transformer.Stack` with a padding mask →
the feature at the last real token (the eos, CLIP's "EOT token" pooling) or the mean over real
tokens → [B, D]. Same blocks and logical axes as the language models.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from paperjax.models.transformer import Embed, Stack, TransformerConfig


class TextEncoder(nn.Module):
  vocab_size: int
  d_model: int = 128
  num_layers: int = 2
  num_heads: int = 4
  d_ff: int = 256
  pool: str = "eos"
  dtype: str = "float32"

  @property
  def features_dim(self) -> int:
    return self.d_model

  @nn.compact
  def __call__(self, tokens_BL):
    cfg = TransformerConfig(vocab_size=self.vocab_size, d_model=self.d_model, num_heads=self.num_heads,
                            head_dim=self.d_model // self.num_heads, d_ff=self.d_ff, num_layers=self.num_layers,
                            kind="decoder", dtype=jnp.dtype(self.dtype))
    valid = tokens_BL != 0
    x = Embed(self.vocab_size, self.d_model, dtype=cfg.dtype, name="embed",
                 embedding_init=nn.with_logical_partitioning(nn.initializers.normal(0.02), ("vocab", "embed")))(tokens_BL)
    B, L = tokens_BL.shape
    aux = dict(self_mask=valid[:, None, :, None] & valid[:, None, None, :],
               positions=jnp.arange(L)[None])
    h = Stack(cfg, self.num_layers, causal=False, name="encoder")(x, aux)
    if self.pool == "eos":
      last = jnp.maximum(valid.sum(-1) - 1, 0)
      out = jnp.take_along_axis(h, last[:, None, None], axis=1)[:, 0]
    elif self.pool == "mean":
      out = (h * valid[..., None]).sum(1) / jnp.maximum(valid.sum(-1, keepdims=True), 1)
    else:
      raise ValueError(f"text pool={self.pool!r} is unknown; use 'eos' or 'mean'.")
    return out.astype(jnp.float32)
