"""Language-model plumbing shared by every LM paper: building the model from the config, the
teacher-forced loss for each architecture, and its FLOPs for MFU.

Batch fields by architecture (all int32, padded with 0):
  encdec             inputs [B, Li], targets [B, Lt], targets_mask [B, Lt]
  decoder/prefix_lm  tokens [B, L], loss_mask [B, L] (1 where tokens[t] is predicted from tokens[<t]),
                     prefix_len [B] (prefix_lm: bidirectional attention over the first prefix_len)
Packed rows (several examples per row, `data.pipeline.Packing`) add `<feature>_segment_ids` (1, 2, …
per example, 0 = padding) and `<feature>_positions` (restarting at 0 in each example) for each
sequence feature (encdec: inputs and targets; decoder: tokens); see `Transformer`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from paperjax import losses, metrics
from paperjax.models.transformer import Transformer, TransformerConfig, unembedding


def build(config, vocab_size: int) -> tuple[Transformer, TransformerConfig]:
  cfg = TransformerConfig.from_config(config.model, vocab_size)
  return Transformer(cfg), cfg


def targets_and_mask(batch: dict, kind: str):
  """The positions a teacher-forced LM is scored on, aligned with the model's outputs."""
  if kind == "encdec":
    return batch["targets"], batch["targets_mask"]
  # Position t predicts token t+1: shift the targets left and drop the last position.
  mask = jnp.pad(batch["loss_mask"][:, 1:], ((0, 0), (0, 1)))
  if "tokens_segment_ids" in batch:  # packed: never score a segment's first token from the one before
    seg = batch["tokens_segment_ids"]
    mask = mask * jnp.pad(seg[:, 1:] == seg[:, :-1], ((0, 0), (0, 1))).astype(mask.dtype)
  return jnp.pad(batch["tokens"][:, 1:], ((0, 0), (0, 1))), mask


def loss_sums(model: Transformer, params, batch: dict, *, rng=None, chunk: int = 0, z_loss: float = 0.0,
              impl: str = "fused"):
  """(loss_sum, weight_sum) of next-token cross-entropy on the batch's target positions.

  chunk=0: full logits. chunk>0: never the full [B, L, V] logits — impl="fused" computes loss and
  gradients chunk by chunk with no recompute (`losses.fused_linear_cross_entropy`, `chunk` rows of
  B·L at a time); impl="remat" rematerialises chunks of `chunk` positions in the backward pass."""
  deterministic = rng is None or model.cfg.dropout == 0.0
  rngs = None if deterministic else {"dropout": rng}
  targets, mask = targets_and_mask(batch, model.cfg.kind)
  if chunk:
    h = model.apply({"params": params}, batch, deterministic=deterministic, return_hidden=True, rngs=rngs)
    if impl == "fused":
      h, w = unembedding(params, h, model.cfg)
      rows = nn.logical_to_mesh_axes(("batch", "vocab"))  # the logits' rows and vocabulary, for a kernel
      return losses.fused_linear_cross_entropy(h, w, targets, mask, chunk, z_loss, xent_impl=model.cfg.xent_impl,
                                               row_spec=tuple(rows), xent_tiles=model.cfg.xent_tiles)
    if impl != "remat":
      raise ValueError(f"model.loss_impl={impl!r} is unknown; use 'fused' or 'remat'.")
    logits_fn = lambda hc: model.apply({"params": params}, hc, method=Transformer.logits)
    return losses.chunked_token_cross_entropy(logits_fn, h, targets, mask, chunk, z_loss)
  logits = model.apply({"params": params}, batch, deterministic=deterministic, rngs=rngs)
  s, w, _ = losses.token_cross_entropy(logits, targets, mask, z_loss)
  return s, w


def real_tokens(batch) -> int:
  """Positions of a (packed or padded) host batch that hold a token: every input and target token
  (encdec), every non-pad token (decoder layouts). Pad id 0."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if "inputs" in batch:
    return int((np.asarray(batch["inputs"]) != 0).sum() + np.asarray(batch["targets_mask"]).sum())
  return int((np.asarray(batch["tokens"]) != 0).sum())


def packing_metrics(batch: dict) -> dict:
  """For packed batches, how many examples a row held on average ({} for unpacked ones)."""
  seg = batch.get("targets_segment_ids", batch.get("tokens_segment_ids"))
  return {} if seg is None else {"examples_per_row": seg.max(axis=1).mean(dtype=jnp.float32)}


def per_example_loss(model: Transformer, params, batch: dict):
  """Mean loss of each example [B] (for per-denoiser / per-domain breakdowns)."""
  targets, mask = targets_and_mask(batch, model.cfg.kind)
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
