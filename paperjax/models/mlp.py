"""Small classifiers for population toys: an MLP and FedJAX's EMNIST CNN shape.

`MLP`      flatten → [Dense → ReLU] × len(hidden) → Dense(num_classes)   (digits toys)
`EmnistCNN` Conv(32, 3×3) → ReLU → Conv(64, 3×3) → ReLU → MaxPool(2) → Dropout(0.25) → Dense(128)
           → ReLU → Dropout(0.5) → Dense(num_classes): the `emnist_conv` model of FedJAX's EMNIST
           benchmark (Ro et al. 2021), VALID padding, 28×28×1 inputs, 62 classes.
Parameters carry logical names (`embed`, `mlp`) like the transformer, so the usual rules shard them.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import optax


def _dense(features: int, axes: tuple, name: str):
  return nn.Dense(features, name=name,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (axes[1],)))


class MLP(nn.Module):
  hidden: Sequence[int] = (64,)
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    del deterministic
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    for i, h in enumerate(self.hidden):
      x = nn.relu(_dense(h, ("embed", "mlp"), f"hidden_{i}")(x))
    return _dense(self.num_classes, ("mlp", "vocab"), "out")(x)


class EmnistCNN(nn.Module):
  num_classes: int = 62

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    x = x.astype(jnp.float32)
    x = nn.relu(nn.Conv(32, (3, 3), padding="VALID", name="conv1")(x))
    x = nn.relu(nn.Conv(64, (3, 3), padding="VALID", name="conv2")(x))
    x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.Dropout(0.25)(x, deterministic=deterministic)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128, name="dense1")(x))
    x = nn.Dropout(0.5)(x, deterministic=deterministic)
    return nn.Dense(self.num_classes, name="out")(x)


def classification_loss(model: nn.Module, image_key: str = "image"):
  """(params, batch, rng) -> (mean cross-entropy, {"accuracy"}) for integer `label`s."""
  def loss(params, batch, rng):
    deterministic = rng is None
    logits = model.apply({"params": params}, batch[image_key], deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return ce, {"accuracy": (logits.argmax(-1) == batch["label"]).mean()}
  return loss
