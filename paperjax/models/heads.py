"""Heads on top of a backbone's features: linear classifiers and MLP projection heads.

`ProjectionHead(dims)` is SimCLR(v2)'s projection g(·): Linear → norm → ReLU for every layer but the
last (Linear, no ReLU). It returns every layer's output so a fine-tune can start "from the middle
of the head" (SimCLRv2's `ft_proj_selector`): `outputs[k]` is the input after k layers.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn

from paperjax.models.cnn import dense


class Linear(nn.Module):
  """Logits = features · W (+ b); `zero_init` for new heads on a pretrained backbone."""
  num_outputs: int
  zero_init: bool = False

  @nn.compact
  def __call__(self, x_BD):
    return dense(self.num_outputs, "dense", axes=("embed", "classes"), zero_init=self.zero_init)(x_BD)


class ProjectionHead(nn.Module):
  """`activate_last=True` puts norm + ReLU after the last layer too: the first k layers of a
  pretrained head, reused as part of the encoder when fine-tuning (same parameter names)."""
  dims: Sequence[int] = (128, 128, 64)
  norm: bool = True
  activate_last: bool = False

  @nn.compact
  def __call__(self, x_BD) -> list:
    outputs = [x_BD]
    h = x_BD
    for i, d in enumerate(self.dims):
      h = dense(d, f"layer{i}", axes=("embed", "mlp"), use_bias=not self.norm)(h)
      if i < len(self.dims) - 1 or self.activate_last:
        if self.norm:
          h = nn.LayerNorm(name=f"norm{i}")(h)
        h = nn.relu(h)
      outputs.append(h)
    return outputs
