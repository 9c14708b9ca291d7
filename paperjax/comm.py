"""Communication accounting: bytes exchanged, computed from what is actually sent.

For the population papers (federated learning, DiLoCo, zeroth-order seed exchange) communication *is*
the result, so every such method reports it the same way, from here:

  message bytes   Σ over the message's arrays of ⌈size × bits / 8⌉, where bits is the dtype's width or,
                  after quantisation, the width actually sent (4 for E3M0, 8 for one byte per scalar).
                  Computed from the arrays' static shapes at trace time, so it is exact and free.
  framing         parameter-server view: a participating client *uploads* its message and *downloads*
                  the aggregate (or the model). An all-reduce among M workers moves 2(M−1)/M × size per
                  worker with a ring; we report up + down = 2 × size, the same order, and say so.

Metrics (all per train-loop step, i.e. per round; logged like any metric):
  comm/up_bytes_per_client     what one participating client sends in the round
  comm/down_bytes_per_client   what one participating client receives in the round
  comm/bytes                   Σ over participating clients of up + down, this round
  comm/peak_bytes_per_step     the most bytes exchanged on any single inner step of the round
  comm/total_bytes             cumulative since step 0 (carried in the state, so it survives a resume)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

PREFIX = "comm/"
# The metrics a method lists in `summary_keys` so that the end-of-run summary shows them.
SUMMARY_KEYS = ("comm/up_bytes_per_client", "comm/down_bytes_per_client", "comm/peak_bytes_per_step",
                "comm/total_bytes")


def array_bytes(x, bits: int | None = None) -> int:
  """Bytes of one array sent with `bits` per element (default: its dtype's width)."""
  width = bits if bits is not None else jnp.dtype(x.dtype).itemsize * 8
  return math.ceil(math.prod(x.shape) * width / 8)


def tree_bytes(tree, bits: int | None = None) -> int:
  """Bytes of a pytree message (arrays or ShapeDtypeStructs), each leaf rounded up to whole bytes."""
  return sum(array_bytes(x, bits) for x in jax.tree.leaves(tree))


def init_totals() -> dict:
  """Cumulative counters for `TrainState.extras`: a float32 sum with its Kahan compensation, so that
  millions of rounds add up to within one float32 ulp of the exact total."""
  return {"total_bytes": jnp.zeros((), jnp.float32), "total_bytes_c": jnp.zeros((), jnp.float32)}


def add_total(totals: dict, nbytes) -> dict:
  y = jnp.asarray(nbytes, jnp.float32) - totals["total_bytes_c"]
  t = totals["total_bytes"] + y
  return {"total_bytes": t, "total_bytes_c": (t - totals["total_bytes"]) - y}


def round_metrics(totals: dict, *, up_per_client, down_per_client, participants, peak_per_step=None):
  """(new totals, metrics) for one round in which `participants` clients each sent `up_per_client`
  and received `down_per_client` bytes. `peak_per_step` defaults to the whole round's bytes (every
  message of a synchronous round is exchanged on its last step)."""
  n = jnp.asarray(participants, jnp.float32)
  up = jnp.asarray(up_per_client, jnp.float32)
  down = jnp.asarray(down_per_client, jnp.float32)
  round_bytes = n * (up + down)
  totals = add_total(totals, round_bytes)
  metrics = {
      "comm/up_bytes_per_client": up, "comm/down_bytes_per_client": down, "comm/bytes": round_bytes,
      "comm/peak_bytes_per_step": round_bytes if peak_per_step is None else jnp.asarray(peak_per_step, jnp.float32),
      "comm/total_bytes": totals["total_bytes"],
  }
  return totals, metrics


# --------------------------------------------------------------------------- quantisers for messages

E3M0_BITS = 4


def e3m0(x):
  """4-bit float with a 3-bit exponent and no mantissa (sign + exponent; code 0 is zero), per-tensor
  scaled: q(x) = sign(x) · s · 2^k with s = max|x| (sent once per tensor, fp32) and k = round(log2(|x|/s))
  clipped to −6..0; |x| < s·2^−6.5 becomes 0. Rounding is deterministic (nearest in log2), so
  q(q(x)) = q(x). Returns the dequantised fp32 values (what the receiver reconstructs)."""
  x = x.astype(jnp.float32)
  s = jnp.max(jnp.abs(x))
  safe = jnp.where(s > 0, s, 1.0)
  k = jnp.clip(jnp.round(jnp.log2(jnp.maximum(jnp.abs(x), 1e-38) / safe)), -6, 0)
  q = jnp.sign(x) * safe * jnp.exp2(k)
  return jnp.where((jnp.abs(x) >= safe * 2.0 ** -6.5) & (s > 0), q, 0.0)


def e3m0_bytes(tree) -> int:
  """Bytes of a tree sent in E3M0: 4 bits per element plus one fp32 scale per tensor."""
  return tree_bytes(tree, E3M0_BITS) + 4 * len(jax.tree.leaves(tree))
