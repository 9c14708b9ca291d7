"""The train state: one pytree that holds everything a step reads or writes.

`extras` carries what some papers add beside the parameters (an EMA copy, a teacher, a memory bank,
per-client state); it is checkpointed and sharded like the rest, so methods never keep state in
Python objects.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  extras: Any = flax.struct.field(default_factory=dict)

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation, rng, extras=None) -> "TrainState":
    # The optimizer sees plain arrays: a logical-axis box on a parameter does not describe an
    # optimizer leaf of another rank (Adafactor's factored moments). `step.state_specs` gives the
    # optimizer state its shardings from the parameters'.
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(nn.meta.unbox(params)),
               rng=rng, extras=extras or {})

  def apply_gradients(self, grads, tx: optax.GradientTransformation, **changes) -> "TrainState":
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)
