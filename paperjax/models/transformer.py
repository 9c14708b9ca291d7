"""One transformer for every language paper: decoder-only, prefix-LM and encoder-decoder.

The three variants differ only in their attention masks and in whether an encoder exists:

  decoder    causal self-attention over `tokens`                           (GPT)
  prefix_lm  bidirectional over the first `prefix_len` tokens, causal rest  (UL2 decoder-only, T5 prefix-LM)
  encdec     bidirectional encoder over `inputs`; causal decoder over `targets` with cross-attention (T5)

Modern T5.1.1/PaLM-style blocks: pre-RMSNorm, gated MLP, rotary positions, no biases. Every
parameter carries logical axis names (`vocab`, `embed`, `heads`, `kv`, `mlp`, `layers`) that
`paperjax.sharding` maps to mesh axes, so the same module runs on one CPU or FSDP over a pod.
Attention goes through `jax.nn.dot_product_attention` so that on GPU the cuDNN flash kernel is
used (`attention_impl="cudnn"`). Shape suffixes: B batch, L/S query/key length, D model, H heads,
K head dim, F feed-forward, V vocab.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from paperjax.models import fused_mlp, fused_norm, fused_rope, fused_xent, pallas_dispatch

Array = jax.Array
KINDS = ("decoder", "prefix_lm", "encdec")
REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "save_qkv_out": jax.checkpoint_policies.save_only_these_names("qkv", "attn_out", "mlp_out"),
}


# Packed batches on cuDNN: the default of `TransformerConfig.max_segments`, the one number a packer's
# cap comes from (`data.pipeline.Packing.max_segments`). cuDNN pays for every slot, used or not: its
# packed layout runs B·max_segments sequences (its statistics, the dO·O and dQ passes of the backward
# are that many rows long). T5-base UL2 at 512/128, B=256, one H100 (notes/perf.md, run 6): 347.3
# ms/step at 16, 278.1 at 4, 267.9 at 2 (251.2 unpacked); packing puts 1.089 / 1.089 / 1.084 UL2
# examples in a row at 16 / 4 / 2.
MAX_SEGMENTS = 2


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  vocab_size: int
  d_model: int = 128
  num_heads: int = 4
  head_dim: int = 32
  d_ff: int = 512
  num_layers: int = 2            # decoder layers (the only stack for decoder / prefix_lm)
  num_encoder_layers: int = 2    # used by encdec only
  kind: str = "encdec"
  activation: str = "gelu"       # gated: act(x W0) * (x W1), T5.1.1 uses gelu, PaLM/LLaMA silu
  dropout: float = 0.0
  dtype: Any = jnp.float32       # compute dtype (bf16 on accelerators)
  param_dtype: Any = jnp.float32
  logits_dtype: Any = jnp.float32
  tie_embeddings: bool = True
  rope_theta: float = 10_000.0
  scan_layers: bool = False
  remat: str = "none"            # key of REMAT_POLICIES
  attention_impl: str | None = None   # None (XLA picks), "xla" or "cudnn"
  # Opt-in: pass the encoder's padding to attention as per-example lengths instead of a dense
  # [B,1,L,S] mask. Requires right-padded inputs (pad id 0 only at the end, as the UL2 denoisers
  # write them). Same loss and gradients; outputs at pad positions become 0 instead of a uniform
  # average. With cuDNN it selects the kernel's PADDING mode rather than a mask turned into a bias
  # tensor (which cuDNN reads, and differentiates, for every layer).
  padding_as_lengths: bool = False
  # Opt-in: one kernel per fused projection instead of several — q/k/v as [D, 3, H, K] (k/v as
  # [D, 2, H, K] in cross-attention) and the gated MLP's wi_0/wi_1 as [D, 2, F]: fewer, larger GEMMs
  # on accelerators (notes/perf.md). The same function and the same init; a different parameter
  # layout, so checkpoints of one layout do not load into the other (see `fuse_params`).
  fused_projections: bool = False
  # "pallas": each block's residual add and the RMSNorm after it run as one fused GPU kernel each way
  # (models/fused_norm.py; Triton; elsewhere its slow interpreter). "auto": those kernels in programs
  # compiled for a GPU, plain JAX in programs for any other platform (and with tensor-parallel
  # activations). "xla": plain JAX. The same function and parameters.
  norm_impl: str = "xla"
  # Packed batches (`<feature>_segment_ids` / `<feature>_positions`, seqio's convention; see
  # `Transformer`) on cuDNN: the most segments one row may hold. cuDNN's packed ("ragged") layout
  # takes per-row segment tables of this static size; the packer must not put more in a row
  # (`data.pipeline.Packing.max_segments`). Unused by XLA's attention, which takes a mask.
  max_segments: int = MAX_SEGMENTS
  # "gated": act(x W0) * (x W1) then W2 (T5.1.1, PaLM, LLaMA); "dense": act(x W1) then W2 (GPT-2, BERT,
  # the original Transformer). With d_ff = 4d a dense MLP holds the weights of a gated one at 8d/3.
  mlp: str = "gated"
  # "rope": rotary positions in every self-attention layer (Su et al. 2021); "learned": a learned
  # absolute position table added to the token embeddings (GPT-2), one per stack, `max_length` rows.
  positions: str = "rope"
  max_length: int = 0            # rows of each learned position table (positions="learned" only)
  # Packed batches: 0, every row through cuDNN's packed layout; R > 0, only the last R rows of the batch
  # (of each batch shard's block of it: `batch_blocks`) may hold more than one example — the packer caps
  # and sorts them so (`data.pipeline.Packing.multi_rows`) — and no row needs the packed layout: every row runs through
  # cuDNN's padded layout (which skips each row's padding and has none of the packed layout's per-slot
  # passes or selects) for its first example, and the R rows' later examples through it again, each
  # rolled to the front of its row (`MixedLayout`). The same loss and gradients when the batch is so. A
  # GPU setting: off cuDNN the same calls run on XLA's attention (how the CPU tests check it), correct
  # but no faster than the segment mask that 0 uses.
  packed_rows: int = 0
  # The MLP's element-wise work: "xla", passes of its own between XLA's GEMMs; "pallas", inside GEMM kernels
  # of ours (models/fused_mlp.py; Triton; elsewhere its slow interpreter) — gated, the gate in the
  # up-projection's kernel and its gradient in the down-projection's dgrad kernel; dense, act'(h) in that
  # dgrad kernel; "auto", those kernels in programs compiled for a GPU, "xla" elsewhere. The same function
  # and parameters (with dropout active in training, "xla"). `mlp_tiles`: the kernels' tiles,
  # "bm,bn,bk,warps,stages" (Triton) or "mgpu:bm,bn,bk,stages" (Mosaic GPU, Hopper) for both, or "up|down"
  # (fused_mlp.Tiles; "" its defaults).
  mlp_impl: str = "xla"
  mlp_tiles: str = ""
  # Rotary positions: "xla", a pass of their own over q and k after XLA's projection GEMMs; "pallas", inside
  # the query / key projections' GEMM kernel (models/fused_rope.py; Triton; elsewhere its interpreter), which
  # writes each head's dims interleaved — q·k, hence attention, unchanged; "auto", the kernel in programs
  # compiled for a GPU, "xla" elsewhere. The same function and parameters. Not with fused_projections.
  rope_impl: str = "xla"
  # The chunked, fused cross-entropy's log-sum-exp and logits gradient (`lm.loss_sums` with a loss_chunk):
  # "xla", XLA's row reduction then an element-wise pass, each reading the chunk's logits; "pallas", one
  # kernel that reads each row twice from one program, the second time meant to come from L2
  # (models/fused_xent.py; Triton; elsewhere its interpreter); "auto", that kernel on GPUs, "xla" elsewhere.
  # `xent_tiles`: its "tile,programs,warps" ("" the defaults, fused_xent.parse_tiles).
  xent_impl: str = "xla"
  xent_tiles: str = ""
  # Encoder-decoder: the gradient of the encoder's output is the sum over the decoder's
  # layers of its cross-attention key and value projections' input gradients. Autodiff adds them one at a
  # time, and XLA's GPU compiler folds only every other add into a cuBLAS GEMM as its C operand (its
  # matcher takes the running sum, itself such a GEMM's result, for the GEMM to fuse into, and gives up);
  # the rest are passes of their own, a read of two [B·S, D] operands and a write each (2.2 ms of packed
  # T5-base's step on an H100; a scanned stack's loop has such a pass too). True: each layer's projections are
  # one op (`kv_chain`) that also hands the encoder's output itself on in the stack's
  # carry, and whose backward adds the later layers' sum, carried back along it, into its own two GEMMs — every
  # add a GEMM's C. The same function and parameters; with fused_projections, no effect.
  cross_kv_chain: bool = False
  # Self-attention the same way: the gradient of a layer's normed input is the sum of its query, key and value
  # projections' input gradients. Without this, the norm hands the query projection and the key/value
  # projections copies of its output and its fused backward kernel reads their two gradients (cuBLAS adds one
  # of the three as a GEMM's C; the rotary kernels' `rope_impl` none). True: one copy, and the three arrive as
  # one sum — through `kv_chain` (x's gradient dv·Wvᵀ + (dk·Wkᵀ + dq·Wqᵀ), every add a GEMM's C), or with the
  # rotary kernels through one dgrad kernel for the query and key (`fused_rope.rope_qk_projection`) and the
  # value GEMM's C. One [rows, D] read less in every layer's norm backward. The same function and parameters;
  # with fused_projections (one GEMM, one gradient already), no effect.
  qkv_chain: bool = False
  # With norm_impl "pallas"/"auto": where each block's residual add runs. "norm": inside the norm kernel after
  # it (which reads x and delta and writes the sum and the normed rows: four passes over [rows, D]). "gemm": as
  # x + delta in XLA, which folds it into the GEMM that writes delta (the attention's output projection, the
  # MLP's down-projection) as its C operand; the norm kernel then reads the sum and writes the normed rows: two
  # passes. The backward is the same kernel either way. The same function and parameters.
  residual_add: str = "norm"

  def __post_init__(self):
    if self.mlp_impl not in pallas_dispatch.IMPLS:
      raise ValueError(f"model.mlp_impl={self.mlp_impl!r} is not 'xla', 'pallas' (the fused GPU kernels) or "
                       "'auto' (the kernels on GPUs only).")
    fused_mlp.Tiles.parse_pair(self.mlp_tiles)
    if self.rope_impl not in pallas_dispatch.IMPLS:
      raise ValueError(f"model.rope_impl={self.rope_impl!r} is not 'xla', 'pallas' (rotary inside the q/k "
                       "projections' GEMM kernel) or 'auto' (that kernel on GPUs only).")
    if self.xent_impl not in pallas_dispatch.IMPLS:
      raise ValueError(f"model.xent_impl={self.xent_impl!r} is not 'xla', 'pallas' (the cross-entropy's "
                       "log-sum-exp and gradient in one kernel) or 'auto' (that kernel on GPUs only).")
    fused_xent.parse_tiles(self.xent_tiles)
    if self.rope_impl != "xla" and self.fused_projections:
      raise ValueError(f"model.rope_impl={self.rope_impl!r} takes the query and key projections apart; it does "
                       "not work with model.fused_projections=True — set one of them back.")
    if self.mlp not in ("gated", "dense"):
      raise ValueError(f"model.mlp={self.mlp!r} is not 'gated' (act(xW0)·xW1, T5.1.1/LLaMA) or 'dense' "
                       "(act(xW1), GPT-2).")
    if self.positions not in ("rope", "learned"):
      raise ValueError(f"model.positions={self.positions!r} is not 'rope' or 'learned'.")
    if self.positions == "learned" and self.max_length <= 0:
      raise ValueError("model.positions='learned' needs model.max_length > 0 (the position table's rows); "
                       "set it to the longest sequence the model will see.")
    if self.packed_rows < 0:
      raise ValueError(f"model.packed_rows={self.packed_rows} is negative; use 0 (every packed row through "
                       "cuDNN's packed layout) or the number of rows, last in each batch, that may hold several examples.")
    if self.norm_impl not in ("xla", "pallas", "auto"):
      raise ValueError(f"model.norm_impl={self.norm_impl!r} is not 'xla', 'pallas' (the fused GPU kernel) "
                       "or 'auto' (the kernel on GPUs only).")
    if self.residual_add not in ("norm", "gemm"):
      raise ValueError(f"model.residual_add={self.residual_add!r} is not 'norm' (inside the norm kernel) or "
                       "'gemm' (XLA's add, folded into the GEMM before it).")
    if self.kind not in KINDS:
      raise ValueError(f"model.kind={self.kind!r} is not one of {KINDS}; pick one of them in the config.")
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f"model.remat={self.remat!r} is unknown; use one of {sorted(REMAT_POLICIES)}.")

  @classmethod
  def from_config(cls, model_cfg, vocab_size: int) -> "TransformerConfig":
    fields = {f.name for f in dataclasses.fields(cls)}
    kw = {k: v for k, v in dict(model_cfg).items() if k in fields}
    kw["vocab_size"] = vocab_size
    for name in ("dtype", "param_dtype", "logits_dtype"):
      if isinstance(kw.get(name), str):
        kw[name] = jnp.dtype(kw[name])
    if kw.get("attention_impl") == "auto":
      kw["attention_impl"] = auto_attention(kw.get("dtype", jnp.float32), jax.default_backend())
    elif kw.get("attention_impl") == "":
      kw["attention_impl"] = None
    return cls(**kw)


def auto_attention(dtype, platform: str) -> str | None:
  """What `attention_impl="auto"` means for compute `dtype` on `platform` ("gpu", "cpu", "tpu"):
  cuDNN's flash kernel on GPUs (it needs 16-bit q/k/v: 2.1x faster than XLA's attention for GPT-2
  on an H100, notes/perf.md); XLA's (None) everywhere else. The trainer asks with this process's
  backend; deviceless GPU compiles (`bench --target`, `preflight --topology=gpu:…`) with "gpu"."""
  half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
  return "cudnn" if platform == "gpu" and half else None


class Proj(nn.Module):
  """A bias-free projection written as one einsum, e.g. "BLD,DHK->BLHK".

  (Rather than nn.DenseGeneral, which reshapes its kernel to 2-D and so drops the kernel's
  3-D logical sharding annotation inside a mesh.)"""
  equation: str
  shape: tuple
  axes: tuple
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x=None):
    """The projection of x; with no x, the kernel itself in the compute dtype (for a fused op that takes
    the weights, e.g. `fused_mlp.mlp`: the same parameter, name and init)."""
    x_spec, k_spec = self.equation.split("->")[0].split(",")
    fan_in = math.prod(n for n, c in zip(self.shape, k_spec) if c in x_spec)  # contracted dims (LeCun init)
    init = nn.initializers.normal(stddev=fan_in ** -0.5)
    kernel = self.param("kernel", nn.with_logical_partitioning(init, self.axes), self.shape, self.cfg.param_dtype)
    if x is None:
      return kernel.astype(self.cfg.dtype)
    return jnp.einsum(self.equation, x.astype(self.cfg.dtype), kernel.astype(self.cfg.dtype))


def _norm_scale(module: nn.Module, d: int):
  return module.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (d,),
                      module.cfg.param_dtype)


class RMSNorm(nn.Module):
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x):
    return fused_norm.rmsnorm(x, _norm_scale(self, x.shape[-1]), self.cfg.dtype)


class AddRMSNorm(nn.Module):
  """(x + delta, RMSNorm(x + delta)): a residual add and the norm after it, with RMSNorm's own
  parameter (so a block's parameters are the same whichever runs). With `norm_impl="pallas"` both
  run as one fused kernel each way (models/fused_norm.py)."""
  cfg: TransformerConfig
  copies: int = 1  # (h, y, y, ...): one y per use, so the fused backward sums their gradients itself

  @nn.compact
  def __call__(self, x, delta):
    """delta None: x is the sum already (`residual_add="gemm"`)."""
    scale = _norm_scale(self, x.shape[-1])
    if self.cfg.norm_impl != "xla":  # rows sharded as the activations are (the kernels run per device)
      if delta is not None and self.cfg.residual_add == "gemm":  # XLA folds it into the GEMM that wrote delta
        x, delta = residual_sum(x, delta), None
      spec = nn.logical_to_mesh_axes(("batch", "length", "act_embed"))
      return fused_norm.add_rmsnorm(x, None if delta is None else delta.astype(x.dtype), scale, self.cfg.dtype,
                                    impl=self.cfg.norm_impl, copies=self.copies, row_spec=spec)
    return fused_norm.add_rmsnorm(x, delta, scale, self.cfg.dtype, impl="xla", copies=self.copies)


def residual_sum(x, delta):
  """x + delta as [rows, D] (the GEMM's own result shape, so that no bitcast sits between it and the add)."""
  d = x.shape[-1]
  return (x.reshape(-1, d) + delta.astype(x.dtype).reshape(-1, d)).reshape(x.shape)


def rope_tables(positions_BL: Array, head_dim: int, theta: float) -> tuple[Array, Array]:
  """sin and cos of the rotary angles (Su et al. 2021), each [B, L, 1, K/2] fp32, for `rotary`.
  Positions shared by every row come as [1, L] (the model's own), so the tables are B times smaller.
  Computed once per layer stack (`Stack`) and read by every layer's rotary pass. (XLA's GPU compiler
  already hoists the per-layer sin/cos into one small kernel when each layer computes them itself:
  the H100 program of the older per-layer code, compiled by `paperjax.bench --target=h100`, holds
  one sine; so this is structure, not speed.)"""
  half = head_dim // 2
  freqs = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions_BL[..., None, None].astype(jnp.float32) * freqs       # B L 1 K/2
  return jnp.sin(angles), jnp.cos(angles)


def rotary(x_BLHK: Array, sin_cos: tuple[Array, Array]) -> Array:
  """Rotary position embedding on the last axis, computed in fp32, from `rope_tables`."""
  sin, cos = sin_cos
  x1, x2 = jnp.split(x_BLHK.astype(jnp.float32), 2, axis=-1)
  out = jnp.concatenate(fused_rope.rotate(x1, x2, sin, cos), axis=-1)
  return out.astype(x_BLHK.dtype)


class Attention(nn.Module):
  cfg: TransformerConfig
  use_rope: bool = True
  cross: bool = False   # keys/values from another sequence (kv_BSD), queries from x_BLD
  chain: bool = False   # take kv_acc and return (output, kv_acc handed on): `TransformerConfig.cross_kv_chain`

  @nn.compact
  def __call__(self, x_BLD, kv_BSD, mask_B1LS, q_rope, k_rope, is_causal: bool, q_len_B=None, kv_len_B=None,
               packed=None, kv_acc=None):
    """q_rope / k_rope: `rope_tables` of the query / key positions (unused when `use_rope` is off).
    packed: (q `SegmentLayout`, kv `SegmentLayout`) of a packed batch: with cuDNN, attention runs in
    its packed layout (segment i of the queries attends to segment i of the keys, `is_causal` within
    each); elsewhere `mask_B1LS` says the same. Or a `MixedLayout` (`TransformerConfig.packed_rows`):
    the same attention through the padded layout only, on any implementation."""
    cfg = self.cfg
    shape, axes = (cfg.d_model, cfg.num_heads, cfg.head_dim), ("embed", "heads", "kv")
    stacked = lambda n: (cfg.d_model, n, cfg.num_heads, cfg.head_dim)
    stacked_axes = ("embed", "stack", "heads", "kv")
    if cfg.fused_projections and not self.cross:
      q, k, v = Proj("BLD,DCHK->CBLHK", stacked(3), stacked_axes, cfg, name="qkv")(x_BLD)
    elif self.cross and self.chain and not cfg.fused_projections:
      q = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="query")(x_BLD)
      wk, wv = (Proj("BLD,DHK->BLHK", shape, axes, cfg, name=n)() for n in ("key", "value"))
      k, v, kv_acc = kv_chain(kv_BSD.astype(cfg.dtype), wk, wv, kv_acc)
    elif cfg.fused_projections:
      q = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="query")(x_BLD)
      k, v = Proj("BSD,DCHK->CBSHK", stacked(2), stacked_axes, cfg, name="kv")(kv_BSD)
    elif self.use_rope and cfg.rope_impl != "xla":  # the rotation inside the projections' GEMM kernel
      rows, heads = nn.logical_to_mesh_axes(("batch", "length", "act_embed")), nn.logical_to_mesh_axes(("heads",))[0]
      wq, wk = (Proj("BLD,DHK->BLHK", shape, axes, cfg, name=n)() for n in ("query", "key"))
      if cfg.qkv_chain and x_BLD is kv_BSD:  # x's gradient from q and k as one sum (one dgrad kernel)
        q, k = fused_rope.rope_qk_projection(x_BLD, wq, wk, q_rope, k_rope, impl=cfg.rope_impl, row_spec=rows,
                                             head_spec=heads)
      else:
        q, k = (fused_rope.rope_projection(inp, w, sc, impl=cfg.rope_impl, row_spec=rows, head_spec=heads)
                for inp, w, sc in ((x_BLD, wq, q_rope), (kv_BSD, wk, k_rope)))
      v = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="value")(kv_BSD)
    elif cfg.qkv_chain and x_BLD is kv_BSD:  # x's gradient summed inside cuBLAS's GEMMs (see `kv_chain`)
      wk, wv = (Proj("BLD,DHK->BLHK", shape, axes, cfg, name=n)() for n in ("key", "value"))
      k, v, x_q = kv_chain(x_BLD.astype(cfg.dtype), wk, wv, x_BLD)
      q = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="query")(x_q)
    else:
      q = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="query")(x_BLD)
      k = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="key")(kv_BSD)
      v = Proj("BLD,DHK->BLHK", shape, axes, cfg, name="value")(kv_BSD)
    if self.use_rope and cfg.rope_impl == "xla":
      q, k = rotary(q, q_rope), rotary(k, k_rope)
    q = nn.with_logical_constraint(q, ("batch", "length", "act_heads", "kv"))
    k = nn.with_logical_constraint(k, ("batch", "length", "act_heads", "kv"))
    v = nn.with_logical_constraint(v, ("batch", "length", "act_heads", "kv"))
    q, k, v = (checkpoint_name(t, "qkv") for t in (q, k, v))
    # A pure causal mask is passed as is_causal (no mask array) so the cuDNN kernel can skip
    # the masked blocks instead of reading a B x L x S boolean tensor.
    if isinstance(packed, MixedLayout):
      out_BLHK = mixed_attention(q, k, v, packed, is_causal=is_causal, impl=cfg.attention_impl)
    elif packed is not None and cfg.attention_impl == "cudnn":
      out_BLHK = packed_attention(q, k, v, *packed, is_causal=is_causal)
    else:
      out_BLHK = jax.nn.dot_product_attention(
          q, k, v, mask=mask_B1LS, is_causal=is_causal and mask_B1LS is None,
          query_seq_lengths=q_len_B, key_value_seq_lengths=kv_len_B, implementation=cfg.attention_impl)
    out_BLHK = checkpoint_name(out_BLHK, "attn_out")
    out = Proj("BLHK,HKD->BLD", (cfg.num_heads, cfg.head_dim, cfg.d_model), ("heads", "kv", "embed"), cfg,
               name="out")(out_BLHK)
    return (out, kv_acc) if self.chain else out


@jax.custom_vjp
def kv_chain(x_BSD: Array, wk_DHK: Array, wv_DHK: Array, acc_BSD: Array) -> tuple[Array, Array, Array]:
  """(x·Wk, x·Wv, acc): a cross-attention layer's key and value projections of the encoder's output x, and
  `acc` passed on — the same array as x, handed from layer to layer in the stack's carry
  (`TransformerConfig.cross_kv_chain`). x's gradient is routed through acc: the backward returns none for x
  and, for acc, dv·Wvᵀ + (dk·Wkᵀ + acc's own cotangent, the later layers' sum) — each add's first operand a
  fresh GEMM, the form XLA's GPU compiler folds into that GEMM as its C operand. So x itself stays what it was
  (in a scanned stack a loop invariant, not a residual saved per layer). Correct only where acc is x, as the
  stack passes them."""
  return _kv(x_BSD, wk_DHK, wv_DHK) + (acc_BSD,)


def _kv(x_BSD, wk_DHK, wv_DHK):
  return tuple(jnp.einsum("BSD,DHK->BSHK", x_BSD, w) for w in (wk_DHK, wv_DHK))


def _kv_chain_fwd(x_BSD, wk_DHK, wv_DHK, acc_BSD):
  return kv_chain(x_BSD, wk_DHK, wv_DHK, acc_BSD), (x_BSD, wk_DHK, wv_DHK)


def _kv_chain_bwd(res, g):
  x_BSD, wk_DHK, wv_DHK = res
  dk, dv, d_later = g
  back = lambda d, w: jnp.einsum("BSHK,DHK->BSD", d, w)
  d_acc = back(dv, wv_DHK) + (back(dk, wk_DHK) + d_later)
  dw = lambda d: jnp.einsum("BSD,BSHK->DHK", x_BSD, d)
  return None, dw(dk), dw(dv), d_acc


kv_chain.defvjp(_kv_chain_fwd, _kv_chain_bwd)


@dataclasses.dataclass(frozen=True)
class SegmentLayout:
  """A packed row's segments as cuDNN's packed layout takes them. Segment ids are 1, 2, … in order
  from position 0, each segment contiguous, 0 after the last (the packer's convention).
    valid [B, L] bool: position in some example;  seqlen [B, M]: segment lengths, -1 past the row's
    last;  offsets [B, M+1]: segment starts, -1 past the row's last (jax's cuDNN API).
  `covers_padding` (static): the row's last segment is stretched over the padding after it, so that
  cuDNN writes every position of the row (see `packed_attention` for where that is exact)."""
  valid: Array
  seqlen: Array
  offsets: Array
  covers_padding: bool = False

  @classmethod
  def of(cls, segment_ids_BL: Array, max_segments: int, covers_padding: bool = False) -> "SegmentLayout":
    ids = jnp.arange(1, max_segments + 1, dtype=segment_ids_BL.dtype)
    counts = (segment_ids_BL[:, :, None] == ids).sum(1, dtype=jnp.int32)          # B M
    starts = jnp.cumsum(counts, axis=1, dtype=jnp.int32) - counts
    present = counts > 0
    if covers_padding:  # the padding's length added to the last present segment's
      last = present & ~jnp.pad(present[:, 1:], ((0, 0), (0, 1)))
      counts = counts + last * (segment_ids_BL.shape[1] - counts.sum(1, keepdims=True))
    offsets = jnp.concatenate([jnp.where(present, starts, -1),
                               jnp.full((counts.shape[0], 1), -1, jnp.int32)], axis=1)
    return cls(segment_ids_BL > 0, jnp.where(present, counts, -1), offsets, covers_padding)


jax.tree_util.register_dataclass(SegmentLayout, data_fields=["valid", "seqlen", "offsets"],
                                 meta_fields=["covers_padding"])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _zero_outside(x_BLHK: Array, valid_BL: Array, backward: bool) -> Array:
  """0 at positions outside every segment: in the values (`backward=False`; the cotangent passes
  through) or in the cotangent only (`backward=True`; the values pass through). A select, not a
  product, so whatever was left in those positions never mixes into anything."""
  return x_BLHK if backward else _select(x_BLHK, valid_BL)


def _select(x, valid):
  return jnp.where(valid[:, :, None, None], x, jnp.zeros((), x.dtype))


def _zero_outside_fwd(x, valid, backward):
  return _zero_outside(x, valid, backward), valid


def _zero_outside_bwd(backward, valid, g):
  return (_select(g, valid) if backward else g), None


_zero_outside.defvjp(_zero_outside_fwd, _zero_outside_bwd)


def packed_attention(q_BLHK, k_BSHK, v_BSHK, q_seg: SegmentLayout, kv_seg: SegmentLayout, *, is_causal: bool,
                     guard: bool = True):
  """cuDNN flash attention over packed rows: segment i of a query row attends to segment i of its key
  row only (and causally within it if `is_causal`); cuDNN skips every block outside the segments.

  Nothing says cuDNN writes the outputs or input gradients of positions outside every segment (jax's
  own test of this layout masks both before comparing), and what the buffers hold there would reach
  the weight gradients through the projections (dW = xᵀ·dq sums over every position). So, per side:
  * queries: the last segment stretched over the row's padding (`covers_padding`) — the padding's
    queries then attend to the last example, harmlessly: nothing reads their outputs (their
    cotangent is 0), and every output and query gradient is written;
  * keys: stretched the same way only under a causal mask (the padding comes after every real
    query, so no real query sees it); otherwise the key and value gradients are selected to 0
    outside the segments, and the output too when the queries do not cover the padding
    (`_zero_outside`: a select, one way each).
  The selects are not optional: `guard=False` (only `bench --check_unwritten`'s `packed_unguarded` case
  uses it) trusts cuDNN to leave 0 there, and on an H100 under XLA's command buffers (the `tuned` flags)
  it does not: NaN key/value gradients, and a NaN loss within 24 steps of T5-base (notes/perf.md,
  seventh run; clean with command buffers off, as XLA's zero-fill of cuDNN's results then survives)."""
  if kv_seg.covers_padding and not is_causal:
    raise ValueError("Keys may cover the padding only under a causal mask: real queries would attend to it.")
  q = q_BLHK if q_seg.covers_padding else _zero_outside(q_BLHK, q_seg.valid, True)
  k, v = (x if kv_seg.covers_padding or not guard else _zero_outside(x, kv_seg.valid, True) for x in (k_BSHK, v_BSHK))
  out = cudnn_packed(q, k, v, q_seg, kv_seg, is_causal=is_causal)
  return out if q_seg.covers_padding else _zero_outside(out, q_seg.valid, False)


def cudnn_packed(q_BLHK, k_BSHK, v_BSHK, q_seg: SegmentLayout, kv_seg: SegmentLayout, *, is_causal: bool):
  """cuDNN's packed layout as it is, nothing guarded: `packed_attention` without its covering and
  selects (`bench --check_unwritten` asks what it leaves outside the segments)."""
  from jax._src.cudnn import fused_attention_stablehlo as cudnn_attn  # pylint: disable=g-import-not-at-top
  mask = cudnn_attn.MaskType.PADDING_CAUSAL if is_causal else cudnn_attn.MaskType.PADDING
  return cudnn_attn.dot_product_attention(
      q_BLHK, k_BSHK, v_BSHK, q_seqlen=q_seg.seqlen, kv_seqlen=kv_seg.seqlen, q_offsets=q_seg.offsets,
      kv_offsets=kv_seg.offsets, scale=1.0 / math.sqrt(q_BLHK.shape[-1]), mask_type=mask)


@dataclasses.dataclass(frozen=True)
class MixedLayout:
  """A packed batch whose rows hold one example each except, at most, the last `rows` of each of `groups`
  equal blocks of the batch (one block per batch shard, `batch_blocks()`: `data.pipeline.Packing.multi_rows`
  sorts the rows so, `make_iterator` hands each process its strided share and deals it to the process's
  shards; `TransformerConfig.packed_rows`). Attention
  then needs no packed layout at all (whose cost is per row and per slot, and whose unwritten rows need
  selects: notes/perf.md, runs 6 and 7): every row runs through the padded layout with per-row lengths
  — its first segment's, which is the whole example in a one-example row — and, for the tail rows only,
  segment s ≥ 2 runs through the padded layout once more, each row rolled so that the segment starts
  at position 0 (attention within a segment does not depend on where the segment sits: positions are
  in q and k already).
    q_len, kv_len [B]: the first call's lengths (≥ 1);  q_seg [R, L]: the tail rows' query segment ids;
    q_shift, kv_shift, q_slen, kv_slen [M-1, R]: where segment s = 2..M of each tail row starts, and its
    length (≥ 1: a call over an absent segment computes a row nobody reads)."""
  q_len: Array
  kv_len: Array
  q_seg: Array
  q_shift: Array
  kv_shift: Array
  q_slen: Array
  kv_slen: Array
  ok: Array = True  # the batch is laid out so (else `poison` makes the stack's input NaN: loud, not wrong)
  rows: int = 0
  groups: int = 1

  @classmethod
  def of(cls, q_seg_BL: Array, kv_seg_BS: Array, rows: int, max_segments: int,
         groups: int | None = None) -> "MixedLayout":
    """`groups`: the batch's blocks (default `batch_blocks()`: one per device of the mesh's batch axes, at
    least one per process — the blocks `data.pipeline.make_iterator(batch_shards=…)` fills)."""
    groups = batch_blocks() if groups is None else groups
    B = q_seg_BL.shape[0]
    if rows >= B:  # (e.g. `init` on one row) every row a tail row: right for any batch
      rows, groups = B, 1
    if B % groups or rows % groups:
      raise ValueError(f"model.packed_rows={rows} does not split evenly over a batch of {B} rows in {groups} "
                       f"blocks (one per batch shard); use a multiple of {groups} (and a batch that is one).")
    ids = jnp.arange(2, max_segments + 1, dtype=q_seg_BL.dtype)[:, None, None]          # M-1 1 1
    def segments(seg):  # the first call's lengths [B]; each later segment's start and length [M-1, R]
      first = jnp.maximum((seg == 1).sum(-1, dtype=jnp.int32), 1)
      t = take_tail(seg, rows, groups)[None]
      start = ((t > 0) & (t < ids)).sum(-1, dtype=jnp.int32)
      return first, start, jnp.maximum((t == ids).sum(-1, dtype=jnp.int32), 1)
    (q_len, q_shift, q_slen), (kv_len, kv_shift, kv_slen) = segments(q_seg_BL), segments(kv_seg_BS)

    def laid_out(seg):  # one example in every row outside the tail, at most max_segments in any
      most = seg.max(-1).reshape(groups, -1)
      head = most[:, :most.shape[1] - rows // groups]
      return (head <= 1).all() & (most <= max_segments).all()
    return cls(q_len, kv_len, take_tail(q_seg_BL, rows, groups), q_shift, kv_shift, q_slen, kv_slen,
               laid_out(q_seg_BL) & laid_out(kv_seg_BS), rows, groups)

  @staticmethod
  def poison(x: Array, *layouts) -> Array:
    """x, or NaN everywhere if a batch is not laid out as its `MixedLayout`s need (a multi-example row
    outside a block's tail would have its later examples silently unattended: a data pipeline whose
    blocks differ from the model's, say). One select, fused into the embedding's kernel."""
    ok = functools.reduce(jnp.logical_and, [l.ok for l in layouts if isinstance(l, MixedLayout)], jnp.bool_(True))
    return jnp.where(ok, x, jnp.asarray(jnp.nan, x.dtype))


def batch_blocks() -> int:
  """The contiguous blocks a global batch is split into across devices: the mesh's batch axes (under a
  mesh and logical-axis rules), at least one per process."""
  return max(jax.process_count(), pallas_dispatch.mesh_ways(nn.logical_to_mesh_axes(("batch",))[0]))


jax.tree_util.register_dataclass(
    MixedLayout, data_fields=["q_len", "kv_len", "q_seg", "q_shift", "kv_shift", "q_slen", "kv_slen", "ok"],
    meta_fields=["rows", "groups"])


def take_tail(x: Array, rows: int, groups: int) -> Array:
  """The last rows/groups rows of each of `groups` equal blocks of x's leading axis, stacked: [rows, ...]."""
  per = x.shape[0] // groups
  return x.reshape(groups, per, *x.shape[1:])[:, per - rows // groups:].reshape(rows, *x.shape[1:])


def put_tail(x: Array, tail: Array, rows: int, groups: int) -> Array:
  """x with `take_tail`'s rows replaced by `tail` (an in-place update of those rows only)."""
  per = x.shape[0] // groups
  blocks = x.reshape(groups, per, *x.shape[1:])
  blocks = jax.lax.dynamic_update_slice_in_dim(blocks, tail.reshape(groups, rows // groups, *x.shape[1:]),
                                               per - rows // groups, axis=1)
  return blocks.reshape(x.shape)


@jax.custom_vjp
def roll_rows(x_BL: Array, shift_B: Array) -> Array:
  """Row b rolled left by shift[b] along axis 1: out[b, i] = x[b, (i + shift[b]) mod L]. Its gradient is
  the opposite roll (a gather, not autodiff's scatter-add)."""
  L = x_BL.shape[1]
  idx = (jnp.arange(L)[None] + shift_B[:, None]) % L
  return jnp.take_along_axis(x_BL, idx.reshape(*idx.shape, *(1,) * (x_BL.ndim - 2)), axis=1,
                             mode="promise_in_bounds")  # (in bounds by construction: no clamp or select)


roll_rows.defvjp(lambda x, shift: (roll_rows(x, shift), shift),
                 lambda shift, g: (roll_rows(g, -shift), np.zeros(shift.shape, jax.dtypes.float0)))


def mixed_attention(q_BLHK, k_BSHK, v_BSHK, layout: MixedLayout, *, is_causal: bool, impl: str | None):
  """Attention over a `MixedLayout` batch (see there): one padded-layout call over every row, and one
  over the tail rows for each later segment, its rows rolled to put the segment first and its output
  rolled back into that segment's positions. A custom VJP combines the gradients in place (the tail's
  rows of the first call's query, key and value gradients plus the later segments', disjoint by
  construction) instead of autodiff's full-size sums."""
  return _mixed(q_BLHK, k_BSHK, v_BSHK, layout, is_causal, impl)


def _mixed_calls(layout: MixedLayout, is_causal: bool, impl):
  def padded(q, k, v, q_len, kv_len):
    return jax.nn.dot_product_attention(q, k, v, is_causal=is_causal, query_seq_lengths=q_len,
                                        key_value_seq_lengths=kv_len, implementation=impl)

  def first(q, k, v):
    return padded(q, k, v, layout.q_len, layout.kv_len)

  def later(q, k, v):  # the tail rows' segments 2..M, each in its own positions; 0 elsewhere
    out = jnp.zeros_like(q)
    for i in range(layout.q_shift.shape[0]):
      qs, ks = layout.q_shift[i], layout.kv_shift[i]
      o = padded(roll_rows(q, qs), roll_rows(k, ks), roll_rows(v, ks), layout.q_slen[i], layout.kv_slen[i])
      out = jnp.where((layout.q_seg == i + 2)[:, :, None, None], roll_rows(o, -qs), out)
    return out
  return first, later


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _mixed(q, k, v, layout, is_causal, impl):
  return _mixed_fwd(q, k, v, layout, is_causal, impl)[0]


def _mixed_fwd(q, k, v, layout, is_causal, impl):
  first, later = _mixed_calls(layout, is_causal, impl)
  rows, groups = layout.rows, layout.groups
  out, vjp_first = jax.vjp(first, q, k, v)
  out_later, vjp_later = jax.vjp(later, *(take_tail(x, rows, groups) for x in (q, k, v)))
  in_later = (layout.q_seg > 1)[:, :, None, None]
  combined = put_tail(out, jnp.where(in_later, out_later, take_tail(out, rows, groups)), rows, groups)
  # cuDNN's backward reads the forward's output (D = rowsum(dO·O)). Handed the combined output instead it
  # computes the same: the two differ only at later segments' queries, whose cotangent the first call
  # never gets (below). So the tail is written into the first call's output in place, not into a copy
  # kept alive for the backward.
  return combined, (swap_residual(vjp_first, out, combined), vjp_later, layout)


def swap_residual(vjp_fn, old: Array, new: Array):
  """`vjp_fn` (from `jax.vjp`) with the residual that is `old` itself (the same traced value: a function
  that saves its own output) replaced by `new`; unchanged if it saves no such residual."""
  leaves, tree = jax.tree.flatten(vjp_fn)
  return jax.tree.unflatten(tree, [new if leaf is old else leaf for leaf in leaves])


def _mixed_bwd(is_causal, impl, res, g):
  vjp_first, vjp_later, layout = res
  rows, groups = layout.rows, layout.groups
  g_tail = take_tail(g, rows, groups)
  in_later = (layout.q_seg > 1)[:, :, None, None]
  zero = jnp.zeros((), g.dtype)
  # Each call gets the cotangent of the positions it produced: the first call none of the later segments'
  # (whose queries lie past its lengths, and whose keys it masks), the later calls only theirs; so their
  # query, key and value gradients have disjoint supports and add up to the whole.
  first = vjp_first(put_tail(g, jnp.where(in_later, zero, g_tail), rows, groups))
  later = vjp_later(jnp.where(in_later, g_tail, zero))
  zero_layout = jax.tree.map(lambda x: np.zeros(x.shape, jax.dtypes.float0), layout)
  return (*(put_tail(f, take_tail(f, rows, groups) + t, rows, groups) for f, t in zip(first, later)), zero_layout)


_mixed.defvjp(_mixed_fwd, _mixed_bwd)


def segment_mask(q_seg_BL: Array, kv_seg_BS: Array, causal: bool = False) -> Array:
  """[B, 1, L, S]: query and key in the same segment (0 = padding, in none); and key ≤ query if causal."""
  mask = (q_seg_BL[:, None, :, None] == kv_seg_BS[:, None, None, :]) & (q_seg_BL[:, None, :, None] > 0)
  if causal:
    mask &= jnp.tril(jnp.ones((q_seg_BL.shape[1], kv_seg_BS.shape[1]), bool))[None, None]
  return mask


ACTIVATIONS = fused_mlp.ACTIVATIONS
gated_activation = fused_mlp.gated_activation      # act(h0)·h1, act recomputed in the backward pass
rematted_activation = fused_mlp.rematted_activation  # act(h), the same


def _fused_mlp(cfg: TransformerConfig, x_BLD, w, gated: bool):
  """The MLP through models/fused_mlp.py's kernels (cfg.mlp_impl), with the block's own `wo`."""
  wo = Proj("BLF,FD->BLD", (cfg.d_ff, cfg.d_model), ("mlp", "embed"), cfg, name="wo")()
  up, down = fused_mlp.Tiles.parse_pair(cfg.mlp_tiles)
  out = fused_mlp.mlp(x_BLD.astype(cfg.dtype), w, wo, cfg.activation, gated=gated, impl=cfg.mlp_impl,
                      row_spec=nn.logical_to_mesh_axes(("batch", "length", "act_embed")),
                      f_spec=nn.logical_to_mesh_axes(("mlp",))[0], up_tiles=up, down_tiles=down)
  return checkpoint_name(out, "mlp_out")


class GatedMLP(nn.Module):
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x_BLD, deterministic: bool):
    cfg = self.cfg
    if cfg.mlp_impl != "xla" and (deterministic or cfg.dropout == 0.0):  # the gate inside the GEMM kernels
      if cfg.fused_projections:
        w = Proj("BLD,DCF->CBLF", (cfg.d_model, 2, cfg.d_ff), ("embed", "stack", "mlp"), cfg, name="wi")()
        w = w.reshape(cfg.d_model, 2 * cfg.d_ff)
      else:
        w = jnp.concatenate([Proj("BLD,DF->BLF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, name=n)()
                             for n in ("wi_0", "wi_1")], axis=1)
      return _fused_mlp(cfg, x_BLD, w, True)
    if cfg.fused_projections:
      h0, h1 = Proj("BLD,DCF->CBLF", (cfg.d_model, 2, cfg.d_ff), ("embed", "stack", "mlp"), cfg, name="wi")(x_BLD)
    else:
      h0 = Proj("BLD,DF->BLF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, name="wi_0")(x_BLD)
      h1 = Proj("BLD,DF->BLF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, name="wi_1")(x_BLD)
    h_BLF = nn.with_logical_constraint(gated_activation(cfg.activation)(h0, h1), ("batch", "length", "act_mlp"))
    h_BLF = nn.Dropout(cfg.dropout)(h_BLF, deterministic=deterministic)
    out = Proj("BLF,FD->BLD", (cfg.d_ff, cfg.d_model), ("mlp", "embed"), cfg, name="wo")(h_BLF)
    return checkpoint_name(out, "mlp_out")


class DenseMLP(nn.Module):
  """act(x W1) W2 (GPT-2's MLP, without biases)."""
  cfg: TransformerConfig

  @nn.compact
  def __call__(self, x_BLD, deterministic: bool):
    cfg = self.cfg
    if cfg.mlp_impl != "xla" and (deterministic or cfg.dropout == 0.0):  # act'(h) in the dgrad GEMM's kernel
      return _fused_mlp(cfg, x_BLD, Proj("BLD,DF->BLF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, name="wi")(),
                        False)
    h_BLF = Proj("BLD,DF->BLF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), cfg, name="wi")(x_BLD)
    h_BLF = nn.with_logical_constraint(rematted_activation(cfg.activation)(h_BLF), ("batch", "length", "act_mlp"))
    h_BLF = nn.Dropout(cfg.dropout)(h_BLF, deterministic=deterministic)
    out = Proj("BLF,FD->BLD", (cfg.d_ff, cfg.d_model), ("mlp", "embed"), cfg, name="wo")(h_BLF)
    return checkpoint_name(out, "mlp_out")


class Block(nn.Module):
  """Pre-norm residual block: self-attention, optional cross-attention, MLP (gated or dense)."""
  cfg: TransformerConfig
  cross: bool = False
  causal: bool = False
  deterministic: bool = True
  chain: bool = False   # the encoder's output in the carry, handed on (`TransformerConfig.cross_kv_chain`)

  @nn.compact
  def __call__(self, carry, aux):
    """carry: the residual stream x; with `norm_impl="pallas"` or "auto", (x, the previous block's MLP output
    not yet added) from the second block on: that add runs in this block's first norm kernel, and
    this block's MLP output is handed on unadded (to the next block or the stack's final norm). With `chain`
    (`TransformerConfig.cross_kv_chain`), (that, the encoder's output as the previous layer handed it on): this
    layer's cross-attention hands it on in the same place (`kv_chain`: the encoder output's gradient is summed
    along the carry)."""
    cfg = self.cfg
    if self.chain:
      carry, acc = carry
    deterministic = self.deterministic
    drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)
    x_BLD, pending = carry if isinstance(carry, tuple) else (carry, None)
    # y once for the query projection and once for key/value: the kernel sums their gradients (or, with
    # qkv_chain, y once: its gradient comes summed)
    copies = 1 if cfg.qkv_chain else 2
    if cfg.norm_impl != "xla" and cfg.residual_add == "gemm":  # the carry is the sum: the kernel reads it once
      x_BLD, *hs = AddRMSNorm(cfg, copies=copies, name="pre_attn_norm")(x_BLD, None)
    elif pending is None:
      hs = [RMSNorm(cfg, name="pre_attn_norm")(x_BLD)]
    else:
      x_BLD, *hs = AddRMSNorm(cfg, copies=copies, name="pre_attn_norm")(x_BLD, pending)
    h_q, h_kv = hs if len(hs) == 2 else hs * 2
    delta = drop(Attention(cfg, use_rope=cfg.positions == "rope", name="self_attn")(
        h_q, h_kv, aux["self_mask"], aux["rope"], aux["rope"], self.causal,
        aux.get("self_len"), aux.get("self_len"), aux.get("self_packed")))
    if self.cross:  # each residual add and the norm after it as one op (one fused kernel with norm_impl="pallas")
      x_BLD, h = AddRMSNorm(cfg, name="pre_cross_norm")(x_BLD, delta)
      delta = Attention(cfg, use_rope=False, cross=True, chain=self.chain, name="cross_attn")(
          h, aux["encoded"], aux["cross_mask"], None, None, False,
          None if aux.get("enc_len") is None else jnp.full_like(aux["enc_len"], x_BLD.shape[1]),
          aux.get("enc_len"), aux.get("cross_packed"), kv_acc=acc if self.chain else None)
      if self.chain:
        delta, acc = delta
      delta = drop(delta)
    x_BLD, h = AddRMSNorm(cfg, name="pre_mlp_norm")(x_BLD, delta)
    delta = drop((GatedMLP if cfg.mlp == "gated" else DenseMLP)(cfg, name="mlp")(h, deterministic))
    constrain = lambda y: nn.with_logical_constraint(y, ("batch", "length", "act_embed"))
    if cfg.norm_impl != "xla" and cfg.residual_add == "norm":  # the MLP's output added in the next norm's kernel
      out = (constrain(x_BLD), constrain(delta))
    else:
      out = constrain(residual_sum(x_BLD, delta) if cfg.norm_impl != "xla" else x_BLD + delta)
    return ((out, acc) if self.chain else out), None


class Stack(nn.Module):
  """`num_layers` blocks, either unrolled or as one `nn.scan` (compile time independent of depth)."""
  cfg: TransformerConfig
  num_layers: int
  cross: bool = False
  causal: bool = False

  @nn.compact
  def __call__(self, x_BLD, aux, deterministic: bool = True):
    cfg = self.cfg
    # The rotary sin/cos of the stack's positions, once for all its layers (see `rope_tables`).
    if cfg.positions == "rope":
      aux = dict(aux, rope=rope_tables(aux["positions"], cfg.head_dim, cfg.rope_theta))
    else:
      aux = dict(aux, rope=None)
    block = Block
    if cfg.remat != "none":
      block = nn.remat(block, policy=REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
    carry = x_BLD
    if cfg.scan_layers and cfg.norm_impl != "xla" and cfg.residual_add == "norm":  # one carry structure for
      # every layer: nothing pending before the first
      carry = (x_BLD, jnp.zeros_like(x_BLD))
    chain = self.cross and cfg.cross_kv_chain and not cfg.fused_projections
    if chain:  # the encoder's output also in the carry: its gradient summed along it (`kv_chain`)
      carry = (carry, aux["encoded"].astype(cfg.dtype))
    if cfg.scan_layers:
      scanned = nn.scan(block, variable_axes={"params": 0}, split_rngs={"params": True, "dropout": True},
                        in_axes=nn.broadcast, length=self.num_layers,
                        metadata_params={nn.PARTITION_NAME: "layers"})
      carry, _ = scanned(cfg, self.cross, self.causal, deterministic, chain, name="layers")(carry, aux)
    else:
      for i in range(self.num_layers):
        carry, _ = block(cfg, self.cross, self.causal, deterministic, chain, name=f"layer_{i}")(carry, aux)
    if chain:
      carry = carry[0]
    if isinstance(carry, tuple):  # the last block's MLP output, added in the final norm's kernel
      return AddRMSNorm(cfg, name="final_norm")(*carry)[1]
    if cfg.norm_impl != "xla":  # residual_add="gemm": the sum, read once by the kernel
      return AddRMSNorm(cfg, name="final_norm")(carry, None)[1]
    return RMSNorm(cfg, name="final_norm")(carry)


def embed_lookup(table_VD: Array, ids: Array, dtype) -> Array:
  """`table[ids]` in `dtype` (the table cast, then gathered: the values of `nn.Embed(dtype=...)`),
  with its gradient accumulated in the table's own dtype.

  Autodiff of a gather from the cast table scatter-adds the cotangents in `dtype`: in bf16 a token's
  gradient stops growing at 256 occurrences (256 + 1 rounds to 256), and a batch of byte-level text or
  UL2's padding (id 0, tens of thousands of positions) has far more. Here the cotangents are cast
  up and scatter-added in the table's dtype (fp32), on one device into a flat buffer (see `bwd`:
  T5-base's two lookups' gradients took 4.95 ms of a 263 ms H100 step as bf16 adds into a table
  XLA had laid out column-major)."""
  return _embed_lookup(jnp.dtype(dtype).name)(table_VD, ids)


@functools.cache
def _embed_lookup(dtype: str):
  @jax.custom_vjp
  def lookup(table_VD, ids):
    return jnp.take(table_VD.astype(dtype), ids, axis=0)

  def fwd(table_VD, ids):
    return lookup(table_VD, ids), (ids, table_VD)  # the table is a parameter: alive anyway

  def bwd(res, g):
    ids, table_VD = res
    V, D = table_VD.shape
    mesh = jax.sharding.get_abstract_mesh()
    if (not mesh.empty and mesh.size > 1) or V * D >= 2**31:  # sharded (or offsets past int32): the 2-D
      # scatter, which XLA partitions by the table's sharding (the flat one below made a 4-device
      # FSDP step all-reduce the whole table's gradient)
      return jnp.zeros_like(table_VD).at[ids].add(g.astype(table_VD.dtype), mode="drop"), None
    # Into a flat buffer, each row a window of D at id·D: XLA's GPU layout assignment gave the 2-D
    # scatter a column-major table under Adafactor (its factored statistics read the gradient by
    # columns), so each token's row became D scattered single-element atomics; a 1-D buffer has
    # one layout, its rows stay contiguous, and a transpose (if any) costs one pass over the table.
    offsets = (ids.reshape(-1, 1) * D).astype(jnp.int32)
    flat = jax.lax.scatter_add(
        jnp.zeros((V * D,), table_VD.dtype), offsets, g.reshape(-1, D).astype(table_VD.dtype),
        jax.lax.ScatterDimensionNumbers(update_window_dims=(1,), inserted_window_dims=(),
                                        scatter_dims_to_operand_dims=(0,)),
        mode=jax.lax.GatherScatterMode.FILL_OR_DROP)
    return flat.reshape(V, D), None

  lookup.defvjp(fwd, bwd)
  return lookup


class Embed(nn.Embed):
  """`nn.Embed` (same parameter, init and `attend`) whose lookup is `embed_lookup`: the gradient
  of a token used many times in a batch is summed in the parameter's dtype, not in `dtype`."""

  def __call__(self, inputs: Array) -> Array:
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
      raise ValueError(f"Embed takes integer ids; got {inputs.dtype}. Pass token ids, not embeddings.")
    return embed_lookup(self.embedding, inputs, self.dtype or self.embedding.dtype)


def _pad_mask(ids_BL: Array) -> Array:
  return ids_BL != 0


class Transformer(nn.Module):
  """The shared language model. Call with the batch fields of its `kind` (see module docstring).

  Returns logits `[B, L, V]` in `logits_dtype`, or the final hidden states `[B, L, D]` with
  `return_hidden=True` (for losses that never materialise the full logits, see `losses.py`).
  """
  cfg: TransformerConfig

  def setup(self):
    cfg = self.cfg
    self.embed = Embed(
        cfg.vocab_size, cfg.d_model, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        embedding_init=nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")))
    if cfg.kind == "encdec":
      self.encoder = Stack(cfg, cfg.num_encoder_layers, causal=False, name="encoder")
    self.decoder = Stack(cfg, cfg.num_layers, cross=cfg.kind == "encdec", causal=True, name="decoder")
    if cfg.positions == "learned":  # one table per stack; unit variance, as the token embeddings
      pos_init = nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, "embed"))
      self.decoder_positions = self.param("decoder_positions", pos_init, (cfg.max_length, cfg.d_model),
                                          cfg.param_dtype)
      if cfg.kind == "encdec":
        self.encoder_positions = self.param("encoder_positions", pos_init, (cfg.max_length, cfg.d_model),
                                            cfg.param_dtype)
    if not cfg.tie_embeddings:
      self.unembed = Proj("BLD,DV->BLV", (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), cfg, name="unembed")

  def logits(self, h_BLD: Array) -> Array:
    if self.cfg.tie_embeddings:
      # Scale by 1/sqrt(D) because the tied table is initialised with unit variance (T5/PaLM).
      out = self.embed.attend(h_BLD / jnp.sqrt(self.cfg.d_model).astype(h_BLD.dtype))
    else:
      out = self.unembed(h_BLD)
    return nn.with_logical_constraint(out.astype(self.cfg.logits_dtype), ("batch", "length", "act_vocab"))

  def embed_at(self, ids_BL: Array, positions_BL: Array, stack: str) -> Array:
    """Token embeddings, plus the stack's learned position embeddings with `positions="learned"`
    (positions_BL [B, L] or [1, L]; a packed row's restart at 0 in each example)."""
    x = self.embed(ids_BL)
    if self.cfg.positions != "learned":
      return x
    if ids_BL.shape[1] > self.cfg.max_length:
      raise ValueError(f"A sequence of {ids_BL.shape[1]} positions is longer than model.max_length="
                       f"{self.cfg.max_length}, the learned position table's rows; raise model.max_length.")
    table = self.decoder_positions if stack == "decoder" else self.encoder_positions
    return x + embed_lookup(table, positions_BL, self.cfg.dtype)

  def encode(self, inputs_BS, deterministic=True, segment_ids_BS=None, positions_BS=None):
    """The encoder's output. A packed batch passes its segment ids (and positions, restarting at 0
    in each segment); then each position attends within its segment only."""
    cfg = self.cfg
    x = self.embed_at(inputs_BS, jnp.arange(inputs_BS.shape[1])[None] if positions_BS is None else positions_BS,
                      "encoder")
    if segment_ids_BS is not None:
      aux = dict(self_mask=None, positions=positions_BS)
      if cfg.packed_rows:
        aux["self_packed"] = MixedLayout.of(segment_ids_BS, segment_ids_BS, cfg.packed_rows, cfg.max_segments)
        x = MixedLayout.poison(x, aux["self_packed"])
      elif cfg.attention_impl == "cudnn":  # (see packed_attention for which side covers the padding)
        aux["self_packed"] = (SegmentLayout.of(segment_ids_BS, cfg.max_segments, covers_padding=True),
                              SegmentLayout.of(segment_ids_BS, cfg.max_segments))
      else:
        aux["self_mask"] = segment_mask(segment_ids_BS, segment_ids_BS)
      return self.encoder(x, aux, deterministic)
    positions = jnp.arange(inputs_BS.shape[1])[None]  # [1, S]: one rotary table for every row
    valid = _pad_mask(inputs_BS)
    if cfg.padding_as_lengths:
      aux = dict(self_mask=None, self_len=valid.sum(-1, dtype=jnp.int32), positions=positions)
    else:
      aux = dict(self_mask=valid[:, None, :, None] & valid[:, None, None, :], positions=positions)
    return self.encoder(x, aux, deterministic)

  def __call__(self, batch: dict, *, deterministic: bool = True, return_hidden: bool = False):
    cfg = self.cfg
    packed = packed_fields(batch, cfg.kind)
    if cfg.kind == "encdec":
      inputs_BS, targets_BL = batch["inputs"], batch["targets"]
      if packed:
        enc_seg, dec_seg = batch["inputs_segment_ids"], batch["targets_segment_ids"]
        encoded = self.encode(inputs_BS, deterministic, enc_seg, batch["inputs_positions"])
        dec_in = shift_right(targets_BL, segment_ids_BL=dec_seg)
        aux = dict(self_mask=None, cross_mask=None, positions=batch["targets_positions"], encoded=encoded)
        if cfg.packed_rows:
          aux.update(self_packed=MixedLayout.of(dec_seg, dec_seg, cfg.packed_rows, cfg.max_segments),
                     cross_packed=MixedLayout.of(dec_seg, enc_seg, cfg.packed_rows, cfg.max_segments))
        elif cfg.attention_impl == "cudnn":  # (see packed_attention for which side covers the padding)
          dec = SegmentLayout.of(dec_seg, cfg.max_segments, covers_padding=True)
          aux.update(self_packed=(dec, dec), cross_packed=(dec, SegmentLayout.of(enc_seg, cfg.max_segments)))
        else:
          aux.update(self_mask=segment_mask(dec_seg, dec_seg, causal=True), cross_mask=segment_mask(dec_seg, enc_seg))
      else:
        encoded = self.encode(inputs_BS, deterministic)
        dec_in = shift_right(targets_BL)
        L = dec_in.shape[1]
        enc_valid = _pad_mask(inputs_BS)
        aux = dict(self_mask=None, positions=jnp.arange(L)[None], encoded=encoded)
        if cfg.padding_as_lengths:
          aux.update(cross_mask=None, enc_len=enc_valid.sum(-1, dtype=jnp.int32))
        else:
          aux.update(cross_mask=jnp.broadcast_to(enc_valid[:, None, None, :],
                                                 (dec_in.shape[0], 1, L, inputs_BS.shape[1])))
    else:
      tokens_BL = batch["tokens"]
      dec_in = tokens_BL
      L = dec_in.shape[1]
      if packed:
        seg = batch["tokens_segment_ids"]
        aux = dict(self_mask=None, positions=batch["tokens_positions"])
        if cfg.packed_rows:
          aux["self_packed"] = MixedLayout.of(seg, seg, cfg.packed_rows, cfg.max_segments)
        elif cfg.attention_impl == "cudnn":  # causal: both sides may cover the padding (packed_attention)
          layout = SegmentLayout.of(seg, cfg.max_segments, covers_padding=True)
          aux["self_packed"] = (layout, layout)
        else:
          aux["self_mask"] = segment_mask(seg, seg, causal=True)
      else:
        self_mask = None
        if cfg.kind == "prefix_lm":
          q = jnp.arange(L)[:, None]
          k = jnp.arange(L)[None, :]
          prefix_B = batch["prefix_len"].reshape(-1)
          self_mask = (k <= q)[None, None] | (k[None, None] < prefix_B[:, None, None, None])
        aux = dict(self_mask=self_mask, positions=jnp.arange(L)[None])
    x = self.embed_at(dec_in, aux["positions"], "decoder")
    if packed and cfg.packed_rows:
      x = MixedLayout.poison(x, aux.get("self_packed"), aux.get("cross_packed"))
    x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
    h = self.decoder(x, aux, deterministic)
    return h if return_hidden else self.logits(h)


PACKED_FEATURES = {"encdec": ("inputs", "targets"), "decoder": ("tokens",), "prefix_lm": ()}


def packed_fields(batch: dict, kind: str) -> bool:
  """Whether `batch` is packed: `<feature>_segment_ids` and `<feature>_positions` (seqio's names) for
  every sequence feature of `kind` (encdec: inputs and targets, one segment id per example in both;
  decoder: tokens). Packed prefix-LM rows are not supported (their prefix is per example)."""
  names = [f"{f}_{suffix}" for f in PACKED_FEATURES[kind] for suffix in ("segment_ids", "positions")]
  present = [n for n in names if n in batch]
  if kind == "prefix_lm" and any(k.endswith("_segment_ids") for k in batch):
    raise ValueError("model.kind='prefix_lm' does not take packed batches (each row has one prefix_len); "
                     "pack decoder-only data for model.kind='decoder', or turn packing off.")
  if present and len(present) != len(names):
    raise ValueError(f"A packed {kind} batch needs all of {names}; it has only {present}. "
                     "Pack every sequence feature together (data.pipeline.Packing).")
  return bool(present)


def shift_right(targets_BL: Array, start_id: int = 0, segment_ids_BL: Array | None = None) -> Array:
  """Decoder inputs for teacher forcing: targets shifted right by one, start token 0 (T5). In a
  packed row (`segment_ids_BL`) every segment starts with the start token (T5X's
  `autoregressive_inputs`), so no segment sees the previous one's last token."""
  shift = lambda x, fill: jnp.pad(x, ((0, 0), (1, 0)), constant_values=fill)[:, :-1]
  out = shift(targets_BL, start_id)
  if segment_ids_BL is not None:
    out = jnp.where(segment_ids_BL == shift(segment_ids_BL, 0), out, jnp.asarray(start_id, out.dtype))
  return out


def unembedding(params, h_BLD: Array, cfg: TransformerConfig) -> tuple[Array, Array]:
  """(h', w_VD) such that `Transformer.logits(h) == h' @ w_VD.T` (before the logits_dtype cast),
  with the same roundings, for losses that take the unembedding apart
  (`losses.fused_linear_cross_entropy`). Takes unboxed params."""
  if cfg.tie_embeddings:
    h = h_BLD / jnp.sqrt(cfg.d_model).astype(h_BLD.dtype)
    return h.astype(cfg.dtype), params["embed"]["embedding"].astype(cfg.dtype)
  return h_BLD.astype(cfg.dtype), params["unembed"]["kernel"].astype(cfg.dtype).T


def fuse_params(params):
  """Unfused parameters (query/key/value, wi_0/wi_1) → the `fused_projections=True` layout.

  Works on plain (unboxed) parameter trees, scanned or not: kernels are stacked on the new axis
  just before the heads (attention) or d_ff (MLP) axis, which is where the fused einsums read it."""
  def walk(tree, name=""):
    if not isinstance(tree, dict):
      return tree
    out = {k: walk(v, k) for k, v in tree.items() if k not in ("query", "key", "value", "wi_0", "wi_1")}
    kern = lambda k: tree[k]["kernel"]
    if {"query", "key", "value"} <= tree.keys():
      if name == "cross_attn":
        out["query"] = tree["query"]
        out["kv"] = {"kernel": jnp.stack([kern("key"), kern("value")], axis=-3)}
      else:
        out["qkv"] = {"kernel": jnp.stack([kern("query"), kern("key"), kern("value")], axis=-3)}
    if {"wi_0", "wi_1"} <= tree.keys():
      out["wi"] = {"kernel": jnp.stack([kern("wi_0"), kern("wi_1")], axis=-2)}
    return out
  return walk(params)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
