"""Greedy decoding with the shared transformer (for demos, infilling examples and generative evals).

No KV cache: each step re-runs the decoder over the fixed-length buffer and reads one position,
which keeps the code tiny and shape-static (one compilation). Fine for toy and eval sizes; a cached
decoder belongs in a serving path, not here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from paperjax.models.transformer import Transformer


@functools.partial(jax.jit, static_argnames=("model", "length", "eos_id"))
def greedy_encdec(model: Transformer, params, inputs_BS, *, length: int, eos_id: int = 1):
  """Targets [B, length] decoded greedily for encoder inputs [B, S]; 0 after the first eos."""
  B = inputs_BS.shape[0]

  def body(t, out):
    logits = model.apply({"params": params}, {"inputs": inputs_BS, "targets": out})
    nxt = jnp.argmax(logits[:, t], axis=-1).astype(out.dtype)
    done = jnp.any(out == eos_id, axis=1) if eos_id is not None else jnp.zeros((B,), bool)
    return out.at[:, t].set(jnp.where(done, 0, nxt))

  return jax.lax.fori_loop(0, length, body, jnp.zeros((B, length), jnp.int32))


@functools.partial(jax.jit, static_argnames=("model", "length", "eos_id"))
def greedy_decoder(model: Transformer, params, tokens_BL, prompt_len_B, *, length: int, eos_id: int = 1):
  """Continue each row of tokens [B, L] after its prompt (prompt_len_B tokens) for `length` tokens.
  For prefix_lm models the prompt is the bidirectional prefix."""
  B, L = tokens_BL.shape
  batch = {"tokens": tokens_BL, "prefix_len": prompt_len_B}
  idx_L = jnp.arange(L)

  def body(i, buf):
    logits = model.apply({"params": params}, {**batch, "tokens": buf})
    pos = jnp.minimum(prompt_len_B + i, L - 1)
    nxt = jnp.argmax(jnp.take_along_axis(logits, (pos - 1)[:, None, None], axis=1)[:, 0], axis=-1)
    # Ended once an eos was generated (after the prompt, before pos): every later token is 0.
    generated = (idx_L[None] >= prompt_len_B[:, None]) & (idx_L[None] < pos[:, None])
    ended = jnp.any(generated & (buf == eos_id), axis=1)
    return buf.at[jnp.arange(B), pos].set(jnp.where(ended, 0, nxt.astype(buf.dtype)))

  return jax.lax.fori_loop(0, length, body, tokens_BL)
