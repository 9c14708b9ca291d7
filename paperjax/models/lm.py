"""Language-model plumbing shared by every LM paper: building the model from the config, the
teacher-forced loss for each architecture, and its FLOPs for MFU.

Batch fields by architecture (all int32, padded with 0):
  encdec             inputs [B, Li], targets [B, Lt], targets_mask [B, Lt]
  decoder/prefix_lm  tokens [B, L], loss_mask [B, L] (1 where tokens[t] is predicted from tokens[<t]),
                     prefix_len [B] (prefix_lm: bidirectional attention over the first prefix_len)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from paperjax import losses, metrics
from paperjax.models.transformer import Transformer, TransformerConfig


def build(config, vocab_size: int) -> tuple[Transformer, TransformerConfig]:
  cfg = TransformerConfig.from_config(config.model, vocab_size)
  return Transformer(cfg), cfg


def loss_sums(model: Transformer, params, batch: dict, *, rng=None, chunk: int = 0, z_loss: float = 0.0):
  """(loss_sum, weight_sum) of next-token cross-entropy on the batch's target positions."""
  deterministic = rng is None or model.cfg.dropout == 0.0
  rngs = None if deterministic else {"dropout": rng}
  if model.cfg.kind == "encdec":
    targets, mask = batch["targets"], batch["targets_mask"]
  else:
    # Position t predicts token t+1: shift the targets left and drop the last position.
    targets = jnp.pad(batch["tokens"][:, 1:], ((0, 0), (0, 1)))
    mask = jnp.pad(batch["loss_mask"][:, 1:], ((0, 0), (0, 1)))
  if chunk:
    h = model.apply({"params": params}, batch, deterministic=deterministic, return_hidden=True, rngs=rngs)
    logits_fn = lambda hc: model.apply({"params": params}, hc, method=Transformer.logits)
    return losses.chunked_token_cross_entropy(logits_fn, h, targets, mask, chunk, z_loss)
  logits = model.apply({"params": params}, batch, deterministic=deterministic, rngs=rngs)
  s, w, _ = losses.token_cross_entropy(logits, targets, mask, z_loss)
  return s, w


def per_example_loss(model: Transformer, params, batch: dict):
  """Mean loss of each example [B] (for per-denoiser / per-domain breakdowns)."""
  if model.cfg.kind == "encdec":
    targets, mask = batch["targets"], batch["targets_mask"]
  else:
    targets = jnp.pad(batch["tokens"][:, 1:], ((0, 0), (0, 1)))
    mask = jnp.pad(batch["loss_mask"][:, 1:], ((0, 0), (0, 1)))
  logits = model.apply({"params": params}, batch)
  _, _, per_tok = losses.token_cross_entropy(logits, targets, mask)
  return per_tok.sum(-1), mask.sum(-1).astype(jnp.float32)


def flops_per_example(cfg: TransformerConfig, lengths: dict) -> dict:
  """Training FLOPs per example for the architecture at these lengths (see metrics.py)."""
  if cfg.kind == "encdec":
    return metrics.encdec_flops_per_example(cfg, lengths["inputs"], lengths["targets"])
  L = lengths["tokens"]
  f = metrics.transformer_flops_per_token(cfg, L, causal=True)
  return {"full": f["full"] * L, "causal": f["causal"] * L}


def init(model: Transformer, rng, example: dict):
  return model.init({"params": rng}, jax.tree.map(jnp.asarray, example))["params"]
