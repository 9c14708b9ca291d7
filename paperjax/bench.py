"""Step-time benchmark of the shared language model: the real model, optimizer, jitted donated
step and (optionally) the real UL2 host transform, timed with the device synchronised.

  python -m paperjax.bench --shape=gpt2_124m --batch=32 --attention=cudnn --dtype=bfloat16 --loss_chunk=8192
  python -m paperjax.bench --shape=t5_base_ul2 --batch=32 --attention=cudnn --padding_lengths --data=ul2
  python -m paperjax.bench --shape=decoder_1b --batch=8 --compile_only     # memory estimate, no device run
  python -m paperjax.bench --shape=tiny                                      # CPU, seconds

Prints one line of ms/step, tokens/s, TFLOP/s and MFU under both attention conventions
(see `paperjax.metrics`: "full" = 6N + 12·L·H·K·T per token, the nanoGPT/PaLM convention; "causal"
= half of the causal self-attention term, maxtext's), peak device memory (the allocator's peak
where the device reports it, else the compiled step's own estimate), and appends the same as JSON
to --json. Measured figures and what changed them: notes/perf.md.

Imports jax, flax, optax and numpy only (no tfds or ml_collections; grain only for --data=ul2_pipeline).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
import types

import numpy as np

from paperjax import roofline, xla_flags

# Shapes. d_ff of a gated MLP is 8/3·d where a GPT-2/T5 MLP has 4·d (or T5.1.1's own 2048): three
# matrices of d×d_ff hold as many weights as two of d×4d, so the FLOPs match the reference models.
SHAPES = {
    # CPU / CI shapes.
    "tiny": dict(kind="decoder", d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=2,
                 vocab_size=512, lengths={"tokens": 32}, batch=4),
    "tiny_encdec": dict(kind="encdec", d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=1,
                        num_encoder_layers=1, vocab_size=512, tie_embeddings=False,
                        lengths={"inputs": 64, "targets": 32}, raw_length=62, batch=4),
    # GPT-2 small: 12 layers, 12 heads, d=768, T=1024, vocab 50304 (nanoGPT's padded 50257), tied.
    "gpt2_124m": dict(kind="decoder", d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12,
                      vocab_size=50304, lengths={"tokens": 1024}, batch=32),
    # The same with GPT-2's own MLP and positions (nanoGPT's block less its biases and LayerNorm): dense
    # tanh-GELU d_ff 3072 (the same weights and FLOPs as gated 2048) and a learned 1024-row position
    # table instead of rotary positions. cuBLASLt can take the GELU as the up-projection's epilogue.
    "gpt2_124m_gelu": dict(kind="decoder", d_model=768, num_heads=12, head_dim=64, d_ff=3072, num_layers=12,
                           mlp="dense", positions="learned", max_length=1024,
                           vocab_size=50304, lengths={"tokens": 1024}, batch=32),
    # T5.1.1-base: 12+12 layers, d=768, 12 heads, gated-GELU d_ff=2048, untied head, vocab 32128;
    # UL2 lengths inputs 512 / targets 128 (raw chunks of 568 tokens, as configs/ul2.py:base).
    "t5_base_ul2": dict(kind="encdec", d_model=768, num_heads=12, head_dim=64, d_ff=2048, num_layers=12,
                        num_encoder_layers=12, vocab_size=32128, tie_embeddings=False,
                        lengths={"inputs": 512, "targets": 128}, raw_length=568, batch=32),
    # ~1.1B decoder (LLaMA-like: SiLU-gated MLP, d_ff≈2.75·d rounded to 128; tied 50304 vocab):
    # 20 layers, d=2048, 16 heads of 128, T=2048. Params 1.13B: fp32 params + AdamW m, v = 12.6 GiB
    # (+ transient grads). B=8 without remat peaked at 37.2 GiB on an H100 (notes/perf.md).
    "decoder_1b": dict(kind="decoder", d_model=2048, num_heads=16, head_dim=128, d_ff=5632, num_layers=20,
                       activation="silu", vocab_size=50304, lengths={"tokens": 2048}, batch=8),
}


class AttrDict(dict):
  """The little of ml_collections.ConfigDict that `paperjax.optim.build` reads (attribute + .get)."""
  __getattr__ = dict.__getitem__


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
  p.add_argument("--batch", type=int, default=0, help="global batch (0: the shape's default)")
  p.add_argument("--layers", type=int, default=0,
                 help="override the shape's depth (each stack's layer count; 0: the shape's), e.g. for a "
                      "--check_packing whose question does not depend on depth")
  p.add_argument("--attention", default="auto", choices=["auto", "xla", "cudnn"],
                 help="jax.nn.dot_product_attention implementation; cudnn needs bf16/fp16 and a GPU")
  p.add_argument("--padding_lengths", action="store_true",
                 help="encoder padding as per-example lengths (TransformerConfig.padding_as_lengths)")
  p.add_argument("--max_segments", type=int, default=0,
                 help="packed data: most examples a row may hold (0: the model config's default); cuDNN's "
                      "packed layout pays for every slot")
  p.add_argument("--packed_rows", type=int, default=0,
                 help="packed data: only this many rows, last in the batch, may hold several examples (the packer "
                      "caps and sorts them); attention then takes the padded layout only: every row's first "
                      "example, and those rows' later ones again, rolled to the front (TransformerConfig."
                      "packed_rows; 0: every row through cuDNN's packed layout)")
  p.add_argument("--positions", default="", choices=["", "rope", "learned"],
                 help="override the shape's positions: rotary, or a learned table per stack with as many rows as "
                      "the shape's longest sequence (TransformerConfig.positions; '': the shape's)")
  p.add_argument("--dtype", default="bfloat16", help="compute dtype; parameters stay --param_dtype")
  p.add_argument("--param_dtype", default="float32")
  p.add_argument("--remat", default="none", help="key of transformer.REMAT_POLICIES")
  p.add_argument("--scan", action="store_true", help="layers as one nn.scan")
  p.add_argument("--fused", action="store_true",
                 help="fused projections: one q/k/v kernel and one wi_0/wi_1 kernel (TransformerConfig.fused_projections)")
  p.add_argument("--norm", default="xla", choices=["xla", "pallas", "auto"],
                 help="pallas: each residual add + RMSNorm as one fused GPU kernel each way; auto: that kernel on "
                      "GPUs, plain JAX elsewhere (TransformerConfig.norm_impl)")
  p.add_argument("--mlp_impl", default="xla", choices=["xla", "pallas", "auto"],
                 help="pallas: the MLP's element-wise work inside GEMM kernels of ours (models/fused_mlp.py: a gated "
                      "MLP's gate both ways, a dense MLP's act' in the backward); auto: those kernels on GPUs, XLA's "
                      "GEMMs elsewhere (TransformerConfig.mlp_impl)")
  p.add_argument("--rope_impl", default="xla", choices=["xla", "pallas", "auto"],
                 help="pallas: rotary positions inside the query / key projections' GEMM kernel (models/fused_rope.py); "
                      "auto: that kernel on GPUs, XLA's GEMM and a rotary pass elsewhere (TransformerConfig.rope_impl)")
  p.add_argument("--xent_impl", default="xla", choices=["xla", "pallas", "auto"],
                 help="with --loss_impl=fused: pallas, each chunk's log-sum-exp and logits gradient in one kernel that "
                      "reads a row twice from one program (models/fused_xent.py); auto: that kernel on GPUs, XLA's "
                      "reduction and element-wise pass elsewhere (TransformerConfig.xent_impl)")
  p.add_argument("--residual_add", default="norm", choices=["norm", "gemm"],
                 help="with --norm=pallas|auto: each residual add inside the norm kernel after it (norm), or XLA's, "
                      "folded into the GEMM before it as its C operand, the norm kernel reading the sum (gemm) "
                      "(TransformerConfig.residual_add)")
  p.add_argument("--cross_kv_chain", action="store_true",
                 help="encoder-decoder: each decoder layer's cross-attention key/value projections hand the encoder's "
                      "output on to the next layer, so that the backward adds its gradient inside cuBLAS's GEMMs "
                      "(TransformerConfig.cross_kv_chain)")
  p.add_argument("--qkv_chain", action="store_true",
                 help="self-attention: the normed input's gradient from the query, key and value projections arrives "
                      "as one sum, added inside cuBLAS's GEMMs (or the rotary kernels' one dgrad kernel), so the norm's "
                      "backward reads one tensor for it, not two (TransformerConfig.qkv_chain)")
  p.add_argument("--mlp_tiles", default="",
                 help="the MLP kernels' tiles, 'bm,bn,bk,warps,stages' (Triton) or 'mgpu:bm,bn,bk,stages' (Mosaic GPU, "
                      "Hopper) for both, or 'up|down' (fused_mlp.Tiles)")
  p.add_argument("--loss_chunk", type=int, default=0,
                 help="0: full logits (fp32, as lm.loss_sums); N: chunked cross-entropy, N tokens (rows "
                      "of batch·length) per chunk with --loss_impl=fused, N positions with =remat")
  p.add_argument("--loss_impl", default="fused", choices=["fused", "remat"],
                 help="fused: losses.fused_linear_cross_entropy (no recompute); remat: lm.loss_sums(chunk=N)")
  p.add_argument("--optimizer", default="adamw")
  p.add_argument("--no_donate", action="store_true",
                 help="jit the step without donating the state (the trainer donates it): does the step call block "
                      "on the previous step's buffers? (call_ms_per_step says)")
  p.add_argument("--mem_fraction", type=float, default=None,
                 help="the share of GPU memory JAX's allocator takes (XLA_PYTHON_CLIENT_MEM_FRACTION; default "
                      "xla_flags.ENV_DEFAULTS): does the host run fewer steps ahead with less room? (the step call by "
                      "position says); timed runs only")
  p.add_argument("--group_leaves", action="store_true",
                 help="the optimizer once per group of equal-shaped parameters, vmapped (optimizer.group_leaves; "
                      "optim.grouped): one set of kernels per group instead of per parameter")
  p.add_argument("--param_copy", action="store_true",
                 help="the optimizer also writes the weight kernels in --dtype, and the step reads that copy instead of "
                      "casting them every step (optimizer.param_copy; optim.with_param_copy)")
  p.add_argument("--data", default=("synthetic",), type=_data_list,
                 help="synthetic: one device-resident batch of random tokens; ul2_resident: one real UL2 batch, "
                      "device-resident (the real sequence lengths, no host work); ul2: the UL2 host transform "
                      "(MixtureOfDenoisers.batch) called in the loop; ul2_pipeline: the trainer's own grain iterator "
                      "with that transform (data/pipeline.py, background threads; needs grain); ul2_packed_pipeline: "
                      "that iterator packing examples several to a row (data.pack; encdec), ul2_packed_resident: one "
                      "of its batches held on the device. A comma list "
                      "(ul2_resident,ul2_pipeline) times each source in interleaved windows of one process, the "
                      "same compiled step, so clock drift between runs cannot pass for a pipeline cost")
  p.add_argument("--steps", type=int, default=20)
  p.add_argument("--warmup", type=int, default=5)
  p.add_argument("--xla_flags", default="none", choices=sorted(xla_flags.FLAG_SETS))
  p.add_argument("--compile_only", action="store_true", help="lower + compile, report memory, run nothing")
  p.add_argument("--check_unwritten", action="store_true",
                 help="what the attention leaves in the rows it skips (padding past the lengths, positions outside "
                      "packed segments), forward and backward, in memory filled with NaN first; exit 1 if the "
                      "model's own paths leave anything there that reaches a weight gradient")
  p.add_argument("--check_packing", action="store_true",
                 help="no timing: one packed UL2 batch (the trainer's data.pack pipeline), and the same examples one "
                      "per row, through this model and attention, against those examples through XLA's attention "
                      "with a dense mask (on a GPU: checks cuDNN's packed layout and its padding mode): prints the "
                      "loss and gradient differences; exit 1 if not equal")
  p.add_argument("--xent_tiles", default="",
                 help="the loss kernel's 'tile,programs,warps' (fused_xent.parse_tiles); with --check_xent a "
                      "';'-separated list of settings to time")
  p.add_argument("--check_xent", action="store_true",
                 help="no step: one loss chunk's logits (--loss_chunk rows × the shape's vocabulary, bf16): its "
                      "log-sum-exp and logits gradient through XLA's passes and through models/fused_xent.py's "
                      "kernel for each --xent_tiles setting; their ms, the HBM rate each implies, and their "
                      "difference; exit 1 if a kernel's values differ from XLA's")
  p.add_argument("--check_mlp", action="store_true",
                 help="no step: the shape's MLP over batch × length rows (bf16) through XLA's GEMMs and through "
                      "models/fused_mlp.py's kernels (--mlp_impl=pallas; each --mlp_tiles setting, ';'-separated), "
                      "each against the MLP in float32: the errors of output and gradients, and the ms of "
                      "forward + backward; exit 1 if a kernel's error is above XLA's bf16 path's by more than "
                      "rounding")
  p.add_argument("--target", default="", choices=["", *sorted(roofline.GPU_TARGETS)],
                 help="compile the step for this GPU without one (XLA's deviceless compile; needs the CUDA plugin, "
                      "`pip install jax[cuda12]`, not a GPU) and report its compiled memory and its roofline "
                      "(paperjax.roofline: every kernel's bytes and FLOPs at the card's measured rates); runs nothing")
  p.add_argument("--hlo_out", default="", help="with --target: also write the compiled program's HLO text here")
  p.add_argument("--compilation_cache", default="", help="persistent compilation cache directory")
  p.add_argument("--peak_flops", type=float, default=0.0, help="override the detected bf16 peak FLOP/s")
  p.add_argument("--profile", default="",
                 help="after timing, write a jax.profiler trace of 3 more steps to this folder (TensorBoard/Perfetto)")
  p.add_argument("--json", default="", help="append the result as one JSON line to this file")
  p.add_argument("--tag", default="", help="a label carried into the JSON line")
  p.add_argument("--progress", action="store_true",
                 help="print each stage as it ends (compile, init, first step), so a run cut off by a time "
                      "limit still shows where its time went")
  p.add_argument("--seed", type=int, default=0)
  return p.parse_args(argv)


DATA_SOURCES = ("synthetic", "ul2_resident", "ul2", "ul2_pipeline", "ul2_packed_resident", "ul2_packed_pipeline")


def _data_list(text: str) -> tuple[str, ...]:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  bad = [n for n in names if n not in DATA_SOURCES]
  if bad or not names or len(set(names)) != len(names):
    raise argparse.ArgumentTypeError(f"{text!r} is not a list of distinct data sources; use names from "
                                     f"{', '.join(DATA_SOURCES)}, comma-separated")
  return names


def _positions_label(cfg) -> str:
  """"rope", "learned", or "rope+pallas" when the rotation runs inside the projections' GEMM kernel."""
  return cfg.positions + (f"+{cfg.rope_impl}" if cfg.positions == "rope" and cfg.rope_impl != "xla" else "")


def _norm_label(args) -> str:
  """"xla", "pallas", "auto", or "auto+gemm_add" when the residual adds run in the GEMMs before the norms."""
  return args.norm + ("+gemm_add" if args.norm != "xla" and args.residual_add == "gemm" else "")


def _loss_label(args) -> str:
  """"full_logits", "remat", "fused", or "fused+pallas" when the chunks' softmax gradient is our kernel."""
  if not args.loss_chunk:
    return "full_logits"
  return args.loss_impl + (f"+{args.xent_impl}" if args.loss_impl == "fused" and args.xent_impl != "xla" else "")


def _mlp_label(cfg) -> str:
  """"gated", "dense", or "gated+pallas[tiles]" when the gate runs inside our GEMM kernels."""
  if cfg.mlp_impl == "xla":
    return cfg.mlp
  return f"{cfg.mlp}+{cfg.mlp_impl}" + (f"[{cfg.mlp_tiles}]" if cfg.mlp_tiles else "")


def model_config(args):
  import jax.numpy as jnp
  from paperjax.models.transformer import TransformerConfig
  shape = dict(SHAPES[args.shape])
  fields = {f.name for f in dataclasses.fields(TransformerConfig)}
  kw = {k: v for k, v in shape.items() if k in fields}
  kw.update(dtype=jnp.dtype(args.dtype), param_dtype=jnp.dtype(args.param_dtype),
            remat=args.remat, scan_layers=args.scan, padding_as_lengths=args.padding_lengths,
            fused_projections=args.fused, norm_impl=args.norm, mlp_impl=args.mlp_impl, rope_impl=args.rope_impl,
            xent_impl=args.xent_impl, xent_tiles="" if getattr(args, "check_xent", False) else args.xent_tiles,
            cross_kv_chain=args.cross_kv_chain, qkv_chain=args.qkv_chain, residual_add=args.residual_add,
            mlp_tiles="" if getattr(args, "check_mlp", False) else args.mlp_tiles,  # --check_mlp: a ;-list
            attention_impl=None if args.attention == "auto" else args.attention)
  if args.max_segments:
    kw["max_segments"] = args.max_segments
  if args.packed_rows:
    kw["packed_rows"] = args.packed_rows
  if args.positions:
    kw["positions"] = args.positions
    if args.positions == "learned":
      kw["max_length"] = max(kw.get("max_length", 0), *shape["lengths"].values())
  if args.layers:
    kw["num_layers"] = args.layers
    if "num_encoder_layers" in kw:
      kw["num_encoder_layers"] = args.layers
  return TransformerConfig(**kw), shape


def synthetic_batch(cfg, lengths, batch, rng: np.random.Generator) -> dict:
  ints = lambda *s: rng.integers(2, cfg.vocab_size, size=s, dtype=np.int32)  # never pad (0) or eos (1)
  if cfg.kind == "encdec":
    li, lt = lengths["inputs"], lengths["targets"]
    return {"inputs": ints(batch, li), "targets": ints(batch, lt), "targets_mask": np.ones((batch, lt), np.int32),
            "denoiser": np.zeros(batch, np.int32)}
  t = lengths["tokens"]
  out = {"tokens": ints(batch, t), "loss_mask": np.ones((batch, t), np.int32)}
  if cfg.kind == "prefix_lm":
    out["prefix_len"] = np.full(batch, t // 2, np.int32)
  return out


def ul2_source(cfg, shape, batch, rng: np.random.Generator, pipeline: bool = False, num_threads: int = 2,
               packed: bool = False):
  """Batches from the real host UL2 transform (`MixtureOfDenoisers.batch`) on random raw tokens,
  called in the loop or (`pipeline`) run by the trainer's grain iterator, which with `packed` packs
  examples several to a row as `data.pack=True` does. Returns (next_batch, host_seconds):
  host_seconds() is the loop's time in the transform or waiting for the iterator."""
  from paperjax.papers.ul2 import denoisers as dn
  if cfg.kind not in ("encdec", "prefix_lm"):
    raise ValueError(f"--data=ul2 needs an encoder-decoder or prefix-LM shape; {cfg.kind!r} has no inputs. "
                     "Use --shape=t5_base_ul2 or tiny_encdec.")
  lengths = shape["lengths"]
  li, lt = (lengths["inputs"], lengths["targets"]) if cfg.kind == "encdec" else (lengths["tokens"] // 2,) * 2
  ids = dn.TokenIds(pad_id=0, eos_id=1, first_sentinel=cfg.vocab_size - 100, num_sentinels=100,
                    mode_ids={"[NLU]": 3, "[NLG]": 4, "[S2S]": 5})
  raw_length = shape.get("raw_length", li + lt)
  mix = dn.MixtureOfDenoisers(dn.UL2_DENOISERS, dn.UL2_RATES, ids, li, lt, raw_length,
                              "encdec" if cfg.kind == "encdec" else "decoder")
  if pipeline:  # the trainer's path: grain reads, batches and transforms in its own threads
    try:
      from paperjax.data import pipeline as pipeline_lib
    except ImportError as e:
      raise SystemExit(f"--data=ul2_pipeline needs grain ({e}); install it or use --data=ul2.") from e
    source = rng.integers(6, ids.first_sentinel, size=(16 * batch, raw_length), dtype=np.int32)
    it = pipeline_lib.make_iterator(source, global_batch_size=batch, seed=0, batch_fn=mix.batch,
                                    num_threads=num_threads, pack=mix.packing(cfg.max_segments, cfg.packed_rows) if packed else None)
    clock = {"s": 0.0}

    def next_batch():  # time spent waiting for the iterator (the transform itself runs ahead)
      t0 = time.perf_counter()
      out = next(it)
      clock["s"] += time.perf_counter() - t0
      return out
    return next_batch, lambda: clock["s"]
  raws = [rng.integers(6, ids.first_sentinel, size=(batch, raw_length), dtype=np.int32) for _ in range(4)]
  clock = {"s": 0.0, "i": 0}

  def next_batch():
    t0 = time.perf_counter()
    out = mix.batch(raws[clock["i"] % len(raws)], rng)
    clock["s"] += time.perf_counter() - t0
    clock["i"] += 1
    return out
  return next_batch, lambda: clock["s"]


def make_loss(model, cfg, args):
  import jax.numpy as jnp
  from paperjax.models import lm

  def loss_fn(params, batch, rng):
    packing = lm.packing_metrics(batch)  # as UL2's loss: the same program, text for text
    s, wsum = lm.loss_sums(model, params, batch, rng=rng, chunk=args.loss_chunk, impl=args.loss_impl)
    return s / jnp.maximum(wsum, 1.0), {"target_tokens": wsum, **packing}
  return loss_fn


def build(args, devices=None):
  """The benchmark's model, optimizer, sources and jitted step, nothing compiled or run yet: `run`
  times it and `lower(args)` gives its lowered program (which tests compare with the trainer's own).
  `devices`: the mesh's devices (default: all of this process's); `target` passes a topology's."""
  import jax
  from paperjax import optim, sharding
  from paperjax import step as step_lib
  from paperjax.models import lm
  from paperjax.models.transformer import Transformer
  from paperjax.state import TrainState

  cfg, shape = model_config(args)
  batch_size = args.batch or shape["batch"]
  lengths = shape["lengths"]
  model = Transformer(cfg)
  rng_np = np.random.default_rng(args.seed)
  example = synthetic_batch(cfg, lengths, batch_size, rng_np)
  host_sources = {}  # data name → (next host batch, host seconds so far)
  for name in args.data:
    if name.startswith("ul2"):
      host_sources[name] = ul2_source(cfg, shape, batch_size, rng_np, pipeline=name.endswith("_pipeline") or
                                      "packed" in name, packed="packed" in name)
  if host_sources:  # the program is compiled for a real batch (the same structure as the synthetic one)
    example = next(iter(host_sources.values()))[0]()

  opt = AttrDict(name=args.optimizer, lr=3e-4, warmup_steps=100, schedule="cosine", end_lr_frac=0.1,
                 b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, clip_norm=1.0)
  if args.optimizer == "adafactor":  # as configs/ul2.py's base and large presets (a test keeps them equal)
    opt.update(schedule="rsqrt", weight_decay=0.0, clip_norm=0.0, lr=1e-2)
  if args.param_copy:
    opt.update(param_copy=args.dtype)
  if args.group_leaves:
    opt.update(group_leaves=True)
  tx, lr_schedule = optim.build(opt, total_steps=10_000)
  mesh = sharding.make_mesh(("data", "fsdp", "tensor"), (1, -1, 1), devices=devices)  # FSDP over every device
  rules = sharding.DEFAULT_RULES
  data_sharding = sharding.batch_sharding(mesh, rules)
  batch_shardings = jax.tree.map(lambda _: data_sharding, example)

  def init_state(rng):
    p_rng, s_rng = jax.random.split(rng)
    params = lm.init(model, p_rng, jax.tree.map(lambda x: x[:1], example))
    return TrainState.create(params, tx, rng=s_rng)

  step_fn = step_lib.sgd_step(make_loss(model, cfg, args), tx, lr_schedule)
  abstract_state, state_shardings = step_lib.abstract_state(init_state, jax.random.PRNGKey(args.seed), mesh, rules, tx)
  abstract_batch = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), example, batch_shardings)
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract_state.params))

  p_step = step_lib.jit_step(step_fn, state_shardings, batch_shardings, mesh, rules, donate=not args.no_donate)
  return types.SimpleNamespace(
      cfg=cfg, shape=shape, batch_size=batch_size, lengths=lengths, rng_np=rng_np, example=example,
      host_sources=host_sources, tx=tx, mesh=mesh, rules=rules, batch_shardings=batch_shardings,
      init_state=init_state, abstract_state=abstract_state, state_shardings=state_shardings,
      abstract_batch=abstract_batch, n_params=n_params, p_step=p_step)


def lower(args, devices=None, built=None):
  """The benchmark's step lowered for its abstract state and batch (StableHLO via `.as_text()`)."""
  from paperjax import step as step_lib
  xla_flags.apply(args.xla_flags)
  b = built or build(args, devices)
  with step_lib.mesh_context(b.mesh, b.rules):
    return b.p_step.lower(b.abstract_state, b.abstract_batch)


def compile_init(b, rng) -> float:
  """Compiles the state's init program as `step.init_sharded` builds it (so a persistent cache
  serves the real run); returns the seconds it took."""
  from paperjax import step as step_lib
  t0 = time.perf_counter()
  with step_lib.mesh_context(b.mesh, b.rules), step_lib.threefry_kernels():
    step_lib.init_program(b.init_state, b.state_shardings).lower(rng).compile()
  return time.perf_counter() - t0


def target(args) -> dict:
  """`--target=h100`: the step compiled by XLA's GPU compiler for that card on this machine (no GPU:
  a deviceless compile against the card's description), its compiled memory, and its roofline.
  The program is the one the card would run, save GEMM algorithm choices (no autotuning without the
  card); notes/perf.md compares the roofline with measured H100 steps."""
  os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # no driver here: skip the plugin's version probe
  used_flags = xla_flags.apply(args.xla_flags)
  import jax
  from jax.experimental import topologies
  from paperjax import metrics
  from paperjax.models import lm
  try:
    topo = topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS[args.target],
                                        topology="1x1x1")
  except Exception as e:  # no CUDA plugin installed
    raise SystemExit(f"--target={args.target} needs JAX's CUDA plugin to compile for a GPU ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); install it with `pip install 'jax[cuda12]'` "
                     "(no GPU needed), or drop --target.") from e
  if args.attention == "auto":  # what a GPU run of these shapes uses
    from paperjax.models.transformer import auto_attention
    args.attention = auto_attention(args.dtype, "gpu") or "xla"
  t0 = time.perf_counter()
  with roofline.cudnn_checks_for(args.target):  # cuDNN's packed layout asks for Hopper: the target's answer
    b = build(args, devices=list(topo.devices))
    compiled = lower(args, built=b).compile()
    compile_s = time.perf_counter() - t0
    init_compile_s = compile_init(b, jax.ShapeDtypeStruct((2,), jax.numpy.uint32))  # a GPU's cold start has both
  text = compiled.as_text()
  if args.hlo_out:
    with open(args.hlo_out, "w") as f:
      f.write(text)
  cfg, shape = model_config(args)
  batch_size = args.batch or shape["batch"]
  lengths = shape["lengths"]
  flops = lm.flops_per_example(cfg, lengths)
  card = roofline.CARDS[args.target]
  summ = roofline.summary(roofline.kernels(text, card))
  step_s = summ["total_ms"] / 1e3
  peak = args.peak_flops or metrics.PEAK_FLOPS[args.target]
  result = dict(
      tag=args.tag, shape=args.shape, batch=batch_size, target=args.target, device=card.name, jax=jax.__version__,
      attention=args.attention, padding_lengths=args.padding_lengths, cross_kv_chain=args.cross_kv_chain,
      qkv_chain=args.qkv_chain,
      remat=args.remat, scan=args.scan,
      fused=args.fused, norm=_norm_label(args), loss_chunk=args.loss_chunk, loss_impl=_loss_label(args),
      optimizer=_optimizer_label(args), xla_flags=args.xla_flags,
      xla_flags_str=used_flags, compile_s=round(compile_s, 2), init_compile_s=round(init_compile_s, 2),
      flops_per_step_full=flops["full"] * batch_size, flops_per_step_causal=flops["causal"] * batch_size,
      tokens_per_step=sum(lengths.values()) * batch_size, compiled_mem_gb=_memory_analysis(compiled),
      roofline=summ, roofline_ms=summ["total_ms"], roofline_flops=summ["flops"],
      roofline_mfu_full=flops["full"] * batch_size / step_s / peak,
      roofline_mfu_causal=flops["causal"] * batch_size / step_s / peak, peak_flops=peak,
      packed=any("packed" in d for d in args.data), max_segments=cfg.max_segments, packed_rows=cfg.packed_rows, mlp=_mlp_label(cfg), positions=_positions_label(cfg))
  _report_target(result)
  return _write(result, args)


def _optimizer_label(args) -> str:
  return args.optimizer + ("+copy" if args.param_copy else "") + ("+grouped" if args.group_leaves else "")


def _attn_label(r: dict) -> str:
  return (r["attention"] + ("+lengths" if r["padding_lengths"] else "") + ("+kv_chain" if r.get("cross_kv_chain") else "")
          + ("+qkv_chain" if r.get("qkv_chain") else ""))


def _report_target(r: dict) -> None:
  mem = r["compiled_mem_gb"]
  print(f"[{r['tag'] or r['shape']}] {r['shape']} B={r['batch']} compiled for {r['device']} (deviceless, "
        f"{r['compile_s']:.1f}s; its init program {r['init_compile_s']:.1f}s): attn={_attn_label(r)} norm={r['norm']} "
        f"positions={r['positions']} mlp={r['mlp']} loss={r['loss_impl']}/{r['loss_chunk']} optimizer={r['optimizer']} xla={r['xla_flags']}\n"
        f"  compiled memory ≈{mem['peak_estimate']:.2f} GiB (arguments {mem['arguments']:.2f}, temporaries "
        f"{mem['temp']:.2f}); roofline {r['roofline_ms']:.2f} ms/step → MFU ≤ {100 * r['roofline_mfu_full']:.1f}% "
        f"full / {100 * r['roofline_mfu_causal']:.1f}% causal", flush=True)
  if r.get("packed") and r["attention"] != "xla" and not r.get("packed_rows"):
    print(f"  not in this floor: cuDNN's packed layout runs B·max_segments = {r['batch']}·{r['max_segments']} "
          "sequences, and its kernels pay for every slot, used or not (measured on an H100: "
          "models/transformer.py MAX_SEGMENTS, notes/perf.md run 6)")
  elif r.get("packed") and r["attention"] != "xla":
    print(f"  not in this floor: the padded layout skips each row's padding (the floor counts every call's "
          f"attention in full: the first over all {r['batch']} rows, each later segment's over "
          f"{r['packed_rows']} rows; models/transformer.py MixedLayout)")
  # The floor prices the FLOPs it finds in the program's kernels; a GEMM it failed to recognise would
  # make it optimistic, so it says how they compare with the model's count (more is recompute: remat).
  ratio = r["roofline_flops"] / r["flops_per_step_causal"]
  print(f"  FLOPs in the program's kernels: {r['roofline_flops'] / 1e12:.2f} TFLOP, {ratio:.3f}× the model's "
        "(causal) count" + ("  !! fewer than the model does: a kernel this floor does not price "
                            "(paperjax/roofline.py)" if ratio < 0.97 else ""))
  print(f"  {'category':14s} {'ms':>8s} {'GB':>8s} {'TFLOP':>7s} {'kernels':>8s}")
  for name, c in r["roofline"]["categories"].items():
    print(f"  {name:14s} {c['ms']:8.2f} {c['gb']:8.2f} {c['tflop']:7.2f} {c['count']:8d}")
  ph = r["roofline"].get("phases", {})
  if ph:
    print("  by phase: " + ", ".join(f"{n} {c['ms']:.2f} ms in {c['count']} kernels" for n, c in ph.items())
          + " (rest: outside autodiff — the optimizer's update, metrics)")
  print("  costliest passes (ms per step at the floor, GB, launches; layer numbers folded):")
  for k in r["roofline"]["top"]:
    print(f"    {k['ms']:7.2f} ms {k['gb']:6.2f} GB ×{k['count']:<3d} {k['category']:13s} {k['bound']:7s} "
          f"{k['result'][:40]:40s} {k['op'].removeprefix('jit(step)/')[-70:]}")


def unpack(batch: dict, lengths: dict) -> dict:
  """A packed encdec batch → the same examples one per row (each padded to `lengths`), in segment order."""
  rows = {"inputs": [], "targets": [], "targets_mask": []}
  for r in range(batch["inputs"].shape[0]):
    for seg in range(1, int(batch["inputs_segment_ids"][r].max()) + 1):
      for key, which in (("inputs", "inputs"), ("targets", "targets"), ("targets_mask", "targets")):
        x = batch[key][r][batch[f"{which}_segment_ids"][r] == seg]
        rows[key].append(np.pad(x, (0, lengths[which] - len(x))))
  return {k: np.stack(v).astype(np.int32) for k, v in rows.items()}


def check_packing(args) -> dict:
  """`--check_packing`: one packed UL2 batch, and the same examples one per row, through this model
  and attention implementation, against the examples one per row through XLA's attention with a dense
  mask (every position defined: the reference). Equal loss sums and gradients (within bf16 rounding)
  for both say the packed layout isolates each example and that neither cuDNN path leaves anything
  unwritten that reaches the gradient (on a GPU: cuDNN's packed layout and its padding mode)."""
  used_flags = xla_flags.apply(args.xla_flags)
  import dataclasses
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from paperjax.models import lm
  from paperjax.models.transformer import Transformer
  cfg, shape = model_config(args)
  if cfg.kind != "encdec":
    raise ValueError(f"--check_packing packs UL2 encoder-decoder batches; --shape={args.shape} is {cfg.kind!r}.")
  batch_size = args.batch or shape["batch"]
  packed = ul2_source(cfg, shape, batch_size, np.random.default_rng(args.seed), pipeline=True, packed=True)[0]()
  packed = {k: np.asarray(v) for k, v in packed.items() if k != "targets_denoiser"}
  plain = unpack(packed, shape["lengths"])
  model = Transformer(cfg)
  reference = Transformer(dataclasses.replace(cfg, attention_impl="xla", padding_as_lengths=False, mlp_impl="xla",
                                              rope_impl="xla", xent_impl="xla", cross_kv_chain=False, qkv_chain=False,
                                              residual_add="norm"))
  # (every kernel of ours, and the chain, checked against XLA's plain program too)
  params = jax.jit(lambda r: nn.meta.unbox(lm.init(model, r, plain)))(jax.random.PRNGKey(args.seed))

  def loss_and_grad(m):  # ((loss sum, weight sum), gradient of the loss sum): one program per batch shape
    sums = lambda p, b: tuple(lm.loss_sums(m, p, b, chunk=args.loss_chunk, impl=args.loss_impl))
    return jax.jit(jax.value_and_grad(sums, has_aux=True))
  norm = lambda t: float(jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(t))))
  run_model, run_reference = loss_and_grad(model), loss_and_grad(reference)
  (s_ref, w_ref), g_ref = run_reference(params, plain)
  rows = {}
  for name, batch in (("packed", packed), ("one_per_row", plain)):
    (s, w), g = run_model(params, batch)
    rows[name] = dict(loss_sum=float(s), target_tokens=float(w),
                      loss_rel=abs(float(s) - float(s_ref)) / abs(float(s_ref)),
                      grad_rel=norm(jax.tree.map(jnp.subtract, g, g_ref)) / norm(g_ref))
  # bf16 activations: the layouts and kernels round and sum in different orders through every layer (a
  # misplaced segment, or garbage in an unwritten row, changes the loss and gradient by tens of percent)
  tol = 3e-2 if args.dtype in ("bfloat16", "float16") else 1e-4
  ok = all(r["target_tokens"] == float(w_ref) and r["loss_rel"] < tol and r["grad_rel"] < tol for r in rows.values())
  result = dict(tag=args.tag or "check_packing", shape=args.shape, attention=cfg.attention_impl or "xla",
                device=jax.devices()[0].device_kind, rows=batch_size, examples=int(plain["inputs"].shape[0]),
                reference=dict(loss_sum=float(s_ref), target_tokens=float(w_ref)), **rows,
                loss_rel=max(r["loss_rel"] for r in rows.values()), grad_rel=max(r["grad_rel"] for r in rows.values()),
                tol=tol, ok=bool(ok), xla_flags_str=used_flags)
  print(f"[{result['tag']}] {args.shape} attention={result['attention']} on {result['device']}: {batch_size} packed "
        f"rows hold {result['examples']} examples; against XLA's attention one per row (loss sum {float(s_ref):.4f}):",
        flush=True)
  for name, r in rows.items():
    print(f"  {name:12s} loss sum {r['loss_sum']:.4f} (rel {r['loss_rel']:.2e}), gradient rel diff {r['grad_rel']:.2e}, "
          f"target tokens {r['target_tokens']:.0f}", flush=True)
  print(f"  {'EQUAL' if ok else 'DIFFERENT'} (tol {tol:g})", flush=True)
  return _write(result, args)


def _rel(a, b) -> float:
  """‖a − b‖ / ‖b‖ in float32 (0 when both are 0)."""
  import jax.numpy as jnp
  a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
  return float(jnp.linalg.norm(a - b) / jnp.maximum(jnp.linalg.norm(b), 1e-30))


def _timed_ms(fn, calls: int) -> float:
  """ms per call of fn() (the device synchronised at the end), after two warm-up calls."""
  import jax
  jax.block_until_ready(fn())
  jax.block_until_ready(fn())
  t0 = time.perf_counter()
  for _ in range(calls):
    out = fn()
  jax.block_until_ready(out)
  return 1e3 * (time.perf_counter() - t0) / calls


def _per_setting(settings: str, case) -> dict:
  """{"xla": case("xla", ""), "pallas[<s>]": case("pallas", s) for each ';'-separated kernel setting s ("" the
  kernels' defaults)}: a check's cases. A setting that fails to build or run is recorded as {"error": ...} and
  the others still run; XLA's case must run."""
  cases = {}
  for name, impl, s in [("xla", "xla", "")] + [(f"pallas[{t or 'default'}]", "pallas", t) for t in settings.split(";")]:
    try:
      cases[name] = case(impl, s)
    except Exception as e:  # pylint: disable=broad-except  # one setting that does not build or run: the rest still do
      if name == "xla":
        raise
      cases[name] = dict(error=f"{type(e).__name__}: {str(e)[:400]}")
  return cases


def _print_settings(cases: dict, width: int, line) -> None:
  """One line per case of `_per_setting`: `line(case)` after its name, or FAILED and the error."""
  for name, c in cases.items():
    print(f"  {name:{width}s} " + (f"FAILED  {c['error'][:200]}" if "error" in c else line(c)), flush=True)


def check_mlp(args) -> dict:
  """`--check_mlp`: the shape's MLP alone (rows = batch × the encoder's or decoder's length), bf16,
  value and gradients of Σ out·c for a random c, through XLA's GEMMs ("xla") and through our kernels
  with each tile setting, each against the same function in float32 (XLA). A kernel passes if its
  errors are within 1.5× XLA's bf16 errors (+1e-3): it rounds h once and the gate once, XLA's program
  a few times more. Times each (ms of one forward + backward, the device synchronised)."""
  used_flags = xla_flags.apply(args.xla_flags)
  import jax
  import jax.numpy as jnp
  from paperjax.models import fused_mlp
  cfg, shape = model_config(args)
  gated = cfg.mlp == "gated"
  n = (args.batch or shape["batch"]) * (shape["lengths"].get("inputs") or shape["lengths"]["tokens"])
  d, f = cfg.d_model, cfg.d_ff
  k = jax.random.split(jax.random.PRNGKey(args.seed), 4)
  x32 = jax.random.normal(k[0], (n, d), jnp.float32)
  w32 = jax.random.normal(k[1], (d, (2 if gated else 1) * f), jnp.float32) * d ** -0.5
  wo32 = jax.random.normal(k[2], (f, d), jnp.float32) * f ** -0.5
  c32 = jax.random.normal(k[3], (n, d), jnp.float32)

  def program(impl, tiles, dtype):
    t = fused_mlp.Tiles.parse_pair(tiles)
    def loss(x, w, wo, c):
      out = fused_mlp.mlp(x, w, wo, cfg.activation, gated=gated, impl=impl, up_tiles=t[0], down_tiles=t[1])
      return jnp.sum(out.astype(jnp.float32) * c.astype(jnp.float32))
    fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))
    args_ = [a.astype(dtype) for a in (x32, w32, wo32, c32)]
    return lambda: fn(*args_)

  def errors(res, ref):
    (v, g), (v0, g0) = res, ref
    return dict(value=_rel(v, v0), dx=_rel(g[0], g0[0]), dw=_rel(g[1], g0[1]), dwo=_rel(g[2], g0[2]))

  exact = program("xla", "", jnp.float32)()
  flops = 6.0 * n * d * f * (3 if gated else 2)

  def case(impl, tiles):
    fn = program(impl, tiles, jnp.dtype(args.dtype))
    ms = _timed_ms(fn, args.steps)
    return dict(ms=ms, tflops=flops / ms / 1e9, **errors(fn(), exact))

  cases = _per_setting(args.mlp_tiles or "", case)
  worst = lambda c: max(c[key] for key in ("value", "dx", "dw", "dwo"))
  limit = 1.5 * worst(cases["xla"]) + 1e-3
  for c in cases.values():
    if "error" not in c:
      c["within"] = bool(worst(c) <= limit)
  ok = all(c.get("within", False) for name, c in cases.items() if name != "xla")
  result = dict(tag=args.tag or "check_mlp", shape=args.shape, mlp=cfg.mlp, activation=cfg.activation, rows=n,
                d_model=d, d_ff=f, dtype=args.dtype, device=jax.devices()[0].device_kind, mlp_cases=cases,
                limit=limit, ok=bool(ok), xla_flags_str=used_flags)
  print(f"[{result['tag']}] {args.shape} {cfg.mlp} MLP ({cfg.activation}), {n} rows × d {d} × d_ff {f}, {args.dtype} "
        f"on {result['device']}; errors against float32:", flush=True)
  _print_settings(cases, 34, lambda c: f"{c['ms']:8.3f} ms fwd+bwd {c['tflops']:6.1f} TFLOP/s   value {c['value']:.1e} "
                                        f"dx {c['dx']:.1e} dW {c['dw']:.1e} dWo {c['dwo']:.1e}")
  verdict = ("WITHIN" if ok else "ABOVE" if any(c.get("within") is False for c in cases.values())
             else "FAILED: a setting did not run; the others WITHIN")
  print(f"  {verdict} XLA's bf16 error ×1.5 + 1e-3 ({limit:.1e})", flush=True)
  return _write(result, args)


def check_xent(args) -> dict:
  """`--check_xent`: one chunk of the fused loss's logits ([--loss_chunk, V] bf16, V the shape's vocabulary,
  logits ~ N(0, 3²), a tenth of the rows masked, z-loss 1e-4): (lse, dL/dlogits) through XLA's passes (a
  reduction, then an element-wise pass: two reads and a write) and through the kernel with each --xent_tiles
  setting (one read and a write if a row's second read hits L2). Times each; the rate is the kernel's one
  read and one write over its time, so a rate near the card's copy bandwidth says the second read came from
  L2. A kernel passes if its lse is XLA's to 1e-5, its target logits exactly, and its gradient to 1e-2
  (relative, the bf16 rounding of either)."""
  used_flags = xla_flags.apply(args.xla_flags)
  import jax
  import jax.numpy as jnp
  from paperjax.models import fused_xent
  cfg, _ = model_config(args)
  c, v = args.loss_chunk or 8192, cfg.vocab_size
  k = jax.random.split(jax.random.PRNGKey(args.seed), 3)
  logits = (3.0 * jax.random.normal(k[0], (c, v), jnp.float32)).astype(jnp.bfloat16)
  targets = jax.random.randint(k[1], (c,), 0, v)
  mask = (jax.random.uniform(k[2], (c,)) > 0.1).astype(jnp.float32)

  def program(impl, tiles):
    fn = jax.jit(lambda l, t, m: fused_xent.xent_rows(l, t, m, 1e-4, jnp.bfloat16, impl=impl, tiles=tiles))
    return lambda: fn(logits, targets, mask)

  ref = program("xla", "")()
  nbytes = 2 * c * v * 2  # one bf16 read and one write of the chunk

  def case(impl, tiles):
    fn = program(impl, tiles)
    ms = _timed_ms(fn, max(args.steps, 1) * 10)  # a chunk takes well under a millisecond on a card
    lse, target, d = fn()
    return dict(ms=ms, gbps=nbytes / ms / 1e6, lse=_rel(lse, ref[0]), target=_rel(target, ref[1]),
                dlogits=_rel(d, ref[2]))

  cases = _per_setting(args.xent_tiles or "", case)
  for name, res in cases.items():
    if name != "xla" and "error" not in res:
      res["equal"] = bool(res["lse"] <= 1e-5 and res["target"] == 0.0 and res["dlogits"] <= 1e-2)
  ok = all(res.get("equal", False) for name, res in cases.items() if name != "xla")
  result = dict(tag=args.tag or "check_xent", shape=args.shape, rows=c, vocab=v, device=jax.devices()[0].device_kind,
                xent_cases=cases, ok=bool(ok), xla_flags_str=used_flags)
  print(f"[{result['tag']}] {args.shape}: a loss chunk of {c} rows × {v} logits (bf16) on {result['device']}; "
        "rate = one read and one write of the chunk over the time:", flush=True)
  _print_settings(cases, 28, lambda c: f"{c['ms']:8.3f} ms {c['gbps']:7.0f} GB/s   lse {c['lse']:.1e} dlogits "
                                        f"{c['dlogits']:.1e}")
  print("  " + ("EQUAL to XLA's" if ok else "DIFFERENT from XLA's, or a setting failed"), flush=True)
  return _write(result, args)


def classify_rows(x: np.ndarray, rows: np.ndarray) -> str:
  """What [B, L, ...] `x` holds at the [B, L] positions `rows`: "zero", "finite" (something else) or
  "nan" (anything not finite)."""
  x = np.asarray(x, np.float32)[rows]
  return "nan" if not np.isfinite(x).all() else "zero" if not x.any() else "finite"


def unwritten_cases(cfg, length: int, batch: int, dtype, seed: int = 0):
  """`--check_unwritten`'s programs: (inputs (q, k, v, ct), rows [B, L] bool, {case: jitted
  (q, k, v, ct) → (out, dq, dk, dv)}). q/k/v random, each row padded past a random length and split
  in two segments; the output's cotangent `ct` is 0 at padded positions, as in training.
    lengths       the padding mode (`padding_as_lengths`): jax.nn.dot_product_attention with lengths
    packed        `transformer.packed_attention` (the model's packed path, with its covering / selects)
    packed_unguarded  the same with `guard=False`: no selects (why the model keeps them)
    packed_raw    cuDNN's packed layout, no covering, no selects (`transformer.cudnn_packed`)
  The packed cases exist for cuDNN only; each case but packed_unguarded also runs causal (`<case>_causal`)."""
  import jax
  import jax.numpy as jnp
  from paperjax.models import transformer as T
  rng = np.random.default_rng(seed)
  n = rng.integers(max(2, length // 8), length, size=batch)       # every row has padding
  cut = np.array([rng.integers(1, m) for m in n])                  # two segments per row
  pos = np.arange(length)[None]
  seg = np.where(pos < cut[:, None], 1, np.where(pos < n[:, None], 2, 0)).astype(np.int32)
  rows = seg > 0
  shape = (batch, length, cfg.num_heads, cfg.head_dim)
  q, k, v = (jnp.asarray(rng.standard_normal(shape), dtype) for _ in range(3))
  ct = jnp.asarray(rng.standard_normal(shape) * rows[:, :, None, None], dtype)
  lens, seg = jnp.asarray(n, jnp.int32), jnp.asarray(seg)
  layout = lambda cover: T.SegmentLayout.of(seg, 2, covers_padding=cover)
  paths = {"lengths": lambda q, k, v, c: jax.nn.dot_product_attention(
      q, k, v, is_causal=c, query_seq_lengths=lens, key_value_seq_lengths=lens, implementation=cfg.attention_impl)}
  if cfg.attention_impl == "cudnn":
    paths["packed"] = lambda q, k, v, c: T.packed_attention(q, k, v, layout(True), layout(c), is_causal=c)
    paths["packed_unguarded"] = lambda q, k, v, c: T.packed_attention(q, k, v, layout(True), layout(c), is_causal=c,
                                                                       guard=False)
    paths["packed_raw"] = lambda q, k, v, c: T.cudnn_packed(q, k, v, layout(False), layout(False), is_causal=c)

  def case(attend, causal):
    def fn(q, k, v, ct):
      out, vjp = jax.vjp(lambda q, k, v: attend(q, k, v, causal), q, k, v)
      return (out, *vjp(ct))
    return jax.jit(fn)
  cases = {f"{name}{'_causal' if causal else ''}": case(attend, causal)
           for causal in (False, True) for name, attend in paths.items()
           if not (causal and name == "packed_unguarded")}  # causal keys cover the padding: no selects to drop
  return (q, k, v, ct), rows, cases


def check_unwritten(args) -> dict:
  """`--check_unwritten`: what attention leaves in the rows it does not compute (`unwritten_cases`), and
  whether the model's paths keep it from the weight gradients. Before each call the device's free
  memory is filled with NaN (arrays the size of the call's results, written and freed), so a row
  nobody writes shows. A path is clean when its outputs are finite and its q/k/v gradients exactly 0
  wherever they lie outside the rows (dW = xᵀ·dq sums over every position; a NaN output reaches
  dW_out through 0·NaN). Exit 1 (main) if the lengths or packed path is not clean; packed_unguarded
  and packed_raw only report (what the selects and the covering guard against on this stack)."""
  used_flags = xla_flags.apply(args.xla_flags)
  import jax
  import jax.numpy as jnp
  cfg, shape = model_config(args)
  impl = cfg.attention_impl or "xla"
  length = shape["lengths"].get("inputs", shape["lengths"].get("tokens"))
  b, dtype = args.batch or 8, jnp.dtype(args.dtype)
  inputs, rows, programs = unwritten_cases(cfg, length, b, dtype, args.seed)
  cases = {}
  for name, fn in programs.items():
    compiled = fn.lower(*inputs).compile()
    poison = [jnp.full(inputs[0].shape, jnp.nan, dtype) for _ in range(8)]  # freed just before the call
    jax.block_until_ready(poison)
    del poison
    results = jax.device_get(compiled(*inputs))
    found = {x: classify_rows(a, ~rows) for x, a in zip(("out", "dq", "dk", "dv"), results)}
    inside = all(np.isfinite(np.asarray(a, np.float32)[rows]).all() for a in results)
    clean = inside and found["out"] != "nan" and all(found[x] == "zero" for x in ("dq", "dk", "dv"))
    cases[name] = dict(found, clean=bool(clean))
  ok = all(c["clean"] for name, c in cases.items() if name in ("lengths", "lengths_causal", "packed", "packed_causal"))
  result = dict(tag=args.tag or "check_unwritten", shape=args.shape, attention=impl, device=jax.devices()[0].device_kind,
                batch=b, length=int(length), cases=cases, ok=bool(ok), xla_flags_str=used_flags)
  print(f"[{result['tag']}] {args.shape} attention={impl} on {result['device']}: B={b} L={length}, outside the rows "
        "(memory NaN-filled first; clean = outputs finite, q/k/v gradients 0):", flush=True)
  for name, c in cases.items():
    print(f"  {name:18s} out {c['out']:6s} dq {c['dq']:6s} dk {c['dk']:6s} dv {c['dv']:6s} "
          f"{'clean' if c['clean'] else 'NOT CLEAN'}", flush=True)
  print(f"  {'the model paths are clean' if ok else 'a model path leaks into the gradients'}", flush=True)
  return _write(result, args)


def run(args) -> dict:
  if args.mem_fraction is not None:  # read when the backend starts: before the first JAX computation
    if not 0 < args.mem_fraction <= 1:
      raise ValueError(f"--mem_fraction={args.mem_fraction} is not a share of the GPU's memory; pass a number in (0, 1].")
    os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = str(args.mem_fraction)
  used_flags = xla_flags.apply(args.xla_flags)  # before the first JAX computation
  import jax
  from paperjax import metrics, sharding
  from paperjax import step as step_lib
  from paperjax.models import lm
  from paperjax.models.transformer import count_params

  if args.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

  t_run = time.perf_counter()
  stage = lambda what: args.progress and print(f"  · [{args.tag or args.shape}] t={time.perf_counter() - t_run:.1f}s: {what}",
                                               flush=True)
  b = build(args)
  cfg, batch_size, lengths, rng_np, example = b.cfg, b.batch_size, b.lengths, b.rng_np, b.example
  host_sources, mesh, rules, batch_shardings = b.host_sources, b.mesh, b.rules, b.batch_shardings
  init_state, abstract_state, abstract_batch = b.init_state, b.abstract_state, b.abstract_batch
  n_params, p_step, tx = b.n_params, b.p_step, b.tx
  t0 = time.perf_counter()
  with step_lib.mesh_context(mesh, rules):
    compiled = p_step.lower(abstract_state, abstract_batch).compile()
  compile_s = time.perf_counter() - t0
  stage(f"step compiled (or loaded from the cache) in {compile_s:.1f}s")

  flops = lm.flops_per_example(cfg, lengths)
  tokens_per_example = sum(lengths.values())
  device = jax.devices()[0]
  peak = args.peak_flops or metrics.device_peak_flops(device)
  t0 = time.perf_counter()
  mem, hlo_flops = _memory_analysis(compiled), _hlo_flops(compiled)
  stage(f"memory and cost analysis of the compiled step in {time.perf_counter() - t0:.1f}s")
  result = dict(
      tag=args.tag, shape=args.shape, batch=batch_size, device=device.device_kind, platform=device.platform,
      jax=jax.__version__, n_devices=jax.device_count(), params=n_params, dtype=args.dtype,
      attention=args.attention, padding_lengths=args.padding_lengths, cross_kv_chain=args.cross_kv_chain,
      qkv_chain=args.qkv_chain,
      remat=args.remat, scan=args.scan,
      fused=args.fused, norm=_norm_label(args), mlp=_mlp_label(cfg), positions=_positions_label(cfg),
      loss_chunk=args.loss_chunk, loss_impl=_loss_label(args),
      data=",".join(args.data), optimizer=_optimizer_label(args),
      donate=not args.no_donate, mem_fraction=float(os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"]),  # set by now
      xla_flags=args.xla_flags, xla_flags_str=used_flags, compile_s=round(compile_s, 2),
      flops_per_step_full=flops["full"] * batch_size, flops_per_step_causal=flops["causal"] * batch_size,
      tokens_per_step=tokens_per_example * batch_size, compiled_mem_gb=mem, hlo_flops=hlo_flops)
  if host_sources:  # real batches hold padding: the share of positions that hold a token (first batch)
    result["fill"] = round(lm.real_tokens(example) / result["tokens_per_step"], 4)
  if args.compile_only:
    if args.compilation_cache:  # warm the cache with the state's init program too (same HLO as init_sharded's)
      rng = jax.random.PRNGKey(args.seed)  # made outside the mesh context, as in the real run
      result["init_compile_s"] = round(compile_init(b, rng), 2)
      stage(f"init program compiled in {result['init_compile_s']:.1f}s")
    _report(result)
    return _write(result, args)

  t0 = time.perf_counter()
  state, _ = step_lib.init_sharded(init_state, jax.random.PRNGKey(args.seed), mesh, rules, tx)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0  # the init program's compile (or cache load) and run
  stage(f"state initialised in {init_s:.1f}s")
  assert count_params(state.params) == n_params
  put = lambda b: sharding.host_to_global(b, mesh, rules)  # the train loop's own host → device path
  feeds = {}  # data name → (next device batch, host seconds so far)
  for name in args.data:
    if name == "synthetic":
      fake = synthetic_batch(cfg, lengths, batch_size, rng_np)
      if jax.tree.map(np.shape, fake) != jax.tree.map(np.shape, example):
        raise ValueError(f"--data={','.join(args.data)} mixes batches of different structure on shape "
                         f"{args.shape!r}; compare ul2_resident with the UL2 sources instead of synthetic.")
      resident = jax.device_put(fake, batch_shardings)
      feeds[name] = (lambda b=resident: b, lambda: 0.0)
    elif name in ("ul2_resident", "ul2_packed_resident"):
      resident = put(host_sources[name][0]())
      feeds[name] = (lambda b=resident: b, lambda: 0.0)
    else:
      next_host, host_seconds = host_sources[name]
      feeds[name] = (lambda f=next_host: put(f()), host_seconds)

  t0 = time.perf_counter()
  for i in range(max(args.warmup, len(feeds))):  # every source at least once (a pipeline spins up)
    state, m = compiled(state, feeds[args.data[i % len(feeds)]][0]())
    if i == 0:  # the first run of a loaded program also builds what its kernels build lazily (cuDNN graphs)
      jax.block_until_ready(state)
      first_step_s = time.perf_counter() - t0
      stage(f"first step ran in {first_step_s:.1f}s")
  jax.block_until_ready(state)
  result.update(init_s=round(init_s, 2), first_step_s=round(first_step_s, 2))
  host0 = {name: f[1]() for name, f in feeds.items()}
  windows = {name: [] for name in feeds}
  per_window = max(1, args.steps // 2)
  # Host seconds inside each step call (dispatch, or the runtime holding the host back), by the call's
  # position in its window: every window starts with the device idle, so the positions show how many
  # steps the host may run ahead before a call waits (a fixed depth: the first calls short, the rest
  # about a step each) or whether every call waits for something inside its own step.
  calls = {name: np.zeros(per_window) for name in feeds}
  for _ in range(2):  # two timed windows per source, interleaved: their spread is this measurement's noise floor
    for name, (next_batch, _) in feeds.items():
      t0 = time.perf_counter()
      for i in range(per_window):
        batch = next_batch()
        t_call = time.perf_counter()
        state, m = compiled(state, batch)  # no host sync inside the window
        calls[name][i] += time.perf_counter() - t_call
      jax.block_until_ready((state, m))
      windows[name].append((time.perf_counter() - t0) / per_window)
  loss = float(m["loss"])
  if not math.isfinite(loss):
    from paperjax.errors import NonFiniteLossError
    raise NonFiniteLossError(f"The loss is {loss} after {args.warmup + 2 * per_window * len(feeds)} steps, so the "
                             "timing is void; check --dtype and the shape.")
  stats = _memory_stats(device)
  by_data = {}
  for name in feeds:
    dt = float(np.mean(windows[name]))
    row = dict(ms_per_step=round(1e3 * dt, 3), window_ms=[round(1e3 * w, 3) for w in windows[name]],
               call_ms_per_step=round(1e3 * calls[name].sum() / (2 * per_window), 3),
               call_ms_by_position=[round(1e3 * c / 2, 3) for c in calls[name]],
               tokens_per_s=result["tokens_per_step"] / dt,
               tflops_full=result["flops_per_step_full"] / dt / 1e12 / jax.device_count(),
               tflops_causal=result["flops_per_step_causal"] / dt / 1e12 / jax.device_count())
    if peak:
      row.update(mfu_full=row["tflops_full"] * 1e12 / peak, mfu_causal=row["tflops_causal"] * 1e12 / peak)
    if not name.endswith(("synthetic", "resident")):
      host_s = (feeds[name][1]() - host0[name]) / (2 * per_window)
      row.update(host_ms_per_step=round(1e3 * host_s, 3),
                 host_tokens_per_s=result["tokens_per_step"] / host_s if host_s else None)
    by_data[name] = row
  result.update(by_data[args.data[0]])  # the first source is the row's figure
  result.update(loss=loss, peak_mem_gb=stats.get("peak_bytes_in_use", 0) / 2**30 if stats else None,
                mem_limit_gb=stats.get("bytes_limit", 0) / 2**30 if stats else None)
  if peak:
    result["peak_flops"] = peak
  if len(feeds) > 1:
    base = by_data[args.data[0]]["ms_per_step"]
    for row in by_data.values():
      row["vs_first"] = round(row["ms_per_step"] / base - 1, 4)
    result["by_data"] = by_data
  next_batch = feeds[args.data[0]][0]
  hlo = None
  card = roofline.card_for(device.device_kind)  # a card the roofline has rates for: the timed program's floor
  if card is not None:
    try:  # read after the timed windows; the same pricing as `--target`, of the program XLA built here
      hlo = compiled.as_text()
      floor = roofline.summary(roofline.kernels(hlo, card), top=0)
      result.update(floor_ms=floor["total_ms"], floor_card=card.name,
                    vs_floor=round(result["ms_per_step"] / floor["total_ms"], 4))
    except Exception as e:  # an HLO this reader does not understand must not lose the timing above
      print(f"roofline of the timed program failed: {type(e).__name__}: {e}", flush=True)
  if args.profile:  # outside the timed windows, so tracing never slows the figures above
    _report(result)  # the figures first: a profiler that takes the process down leaves them in the log
    with jax.profiler.trace(args.profile):
      for _ in range(3):
        state, m = compiled(state, next_batch())
      jax.block_until_ready((state, m))
    result["profile"] = args.profile
    try:  # where the time went, by kernel category (paperjax.profile_summary), printed with the figures
      from paperjax import profile_summary
      hlo = hlo or compiled.as_text()  # the optimized module: result shapes for the top kernels
      with open(os.path.join(args.profile, "step.hlo.txt"), "w") as f:
        f.write(hlo)
      summary = profile_summary.summarize(args.profile, steps=3, top=25, hlo_text=hlo, card=card)
      result["profile_summary"] = summary
      print(profile_summary.format_summary(summary), flush=True)
    except Exception as e:  # a trace this reader does not understand must not lose the timing above
      print(f"profile summary failed: {type(e).__name__}: {e}", flush=True)
  else:
    _report(result)
  return _write(result, args)


def _memory_analysis(compiled) -> dict | None:
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend implements it
    return None
  if m is None:
    return None
  gb = lambda x: round(x / 2**30, 3)
  args_, out, temp, alias = (m.argument_size_in_bytes, m.output_size_in_bytes, m.temp_size_in_bytes,
                             m.alias_size_in_bytes)
  return {"arguments": gb(args_), "outputs": gb(out), "temp": gb(temp), "aliased": gb(alias),
          "peak_estimate": gb(args_ + out - alias + temp)}


def _hlo_flops(compiled) -> float | None:
  """XLA's own count, for cross-checking on CPU. On GPU it leaves out the cuBLAS and cuDNN custom
  calls (nearly all the FLOPs), so it is not a model FLOP count there."""
  try:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) or None
  except Exception:
    return None


def _memory_stats(device) -> dict:
  try:
    return device.memory_stats() or {}
  except Exception:
    return {}


def _report(r: dict) -> None:
  mem = r.get("peak_mem_gb")
  mem_s = f"peak {mem:.2f} GiB (allocator)" if mem else (
      f"peak ≈{r['compiled_mem_gb']['peak_estimate']:.2f} GiB (compiled estimate)" if r.get("compiled_mem_gb") else "peak n/a")
  head = (f"[{r['tag'] or r['shape']}] {r['shape']} B={r['batch']} {r['params'] / 1e6:.1f}M params on {r['device']}: "
          f"attn={_attn_label(r)} dtype={r['dtype']} remat={r['remat']} "
          f"positions={r['positions']} mlp={r['mlp']} "
          f"scan={r['scan']} loss={r['loss_impl']}{'/' + str(r['loss_chunk']) if r['loss_chunk'] else ''} "
          f"data={r['data']} xla={r['xla_flags']} compile {r['compile_s']:.1f}s"
          + (f", init compile {r['init_compile_s']:.1f}s" if r.get("init_compile_s") is not None else "")
          + (f", init {r['init_s']:.1f}s" if r.get("init_s") is not None else "")
          + (f", first step {r['first_step_s']:.1f}s" if r.get("first_step_s") is not None else ""))
  if "ms_per_step" not in r:
    print(f"{head}\n  compile only: {r['flops_per_step_full'] / 1e12:.3f} TFLOP/step (full), {mem_s}", flush=True)
    return
  mfu = (f"MFU {100 * r['mfu_full']:.1f}% full / {100 * r['mfu_causal']:.1f}% causal" if "mfu_full" in r
         else "MFU n/a (unknown peak; pass --peak_flops)")
  first = r["data"].split(",")[0]
  print(f"{head}\n  {r['ms_per_step']:.2f} ms/step (windows {r['window_ms']}), {r['tokens_per_s'] / 1e3:,.1f}K tokens/s, "
        f"{r['tflops_full']:.1f} TFLOP/s full ({r['tflops_causal']:.1f} causal), {mfu}, {mem_s}, "
        f"loss {r['loss']:.3f}{_host_note(first, r)}; step call {r['call_ms_per_step']:.2f} ms{_positions(r)}"
        + (f"; {100 * r['fill']:.1f}% of positions hold a token (first batch)" if "fill" in r else "")
        + (f"\n  roofline of this program on an {r['floor_card']}: {r['floor_ms']:.2f} ms/step; measured "
           f"{r['vs_floor']:.3f}× it" if "floor_ms" in r else ""), flush=True)
  for name, row in list(r.get("by_data", {}).items())[1:]:
    print(f"  data={name}: {row['ms_per_step']:.2f} ms/step (windows {row['window_ms']}), "
          f"{100 * row['vs_first']:+.2f}% vs {first}{_host_note(name, row)}; step call {row['call_ms_per_step']:.2f} ms"
          f"{_positions(row)}",
          flush=True)


def _positions(row: dict, head: int = 5) -> str:
  """The step call's ms by its position in the window: the first `head`, then the mean of the rest."""
  c = row.get("call_ms_by_position") or []
  rest = f" … rest {np.mean(c[head:]):.1f}" if len(c) > head else ""
  return f" (by position: {' '.join(f'{x:.1f}' for x in c[:head])}{rest})" if c else ""


def _host_note(name: str, row: dict) -> str:
  if "host_ms_per_step" not in row:
    return ""
  what = "wait for the grain iterator" if name.endswith("_pipeline") else "UL2 transform"
  return f"; host {what} {row['host_ms_per_step']:.2f} ms/step"


def _write(r: dict, args) -> dict:
  if args.json:
    with open(args.json, "a") as f:
      f.write(json.dumps(r, default=str) + "\n")
  return r


def main(argv=None) -> None:
  from paperjax import errors
  args = parse_args(argv)
  with errors.one_sentence(debug=bool(os.environ.get("PAPERJAX_DEBUG"))):
    checks = [c for c in (check_packing, check_unwritten, check_mlp, check_xent) if getattr(args, c.__name__)]
    if args.mem_fraction is not None and (args.target or checks):
      raise ValueError("--mem_fraction sets the allocator of a timed run on a device; drop it with --target, "
                       "--check_packing, --check_unwritten, --check_mlp or --check_xent.")
    if len(checks) > 1:
      raise ValueError("--check_packing, --check_unwritten, --check_mlp and --check_xent are separate runs; pass "
                       "one of them.")
    if checks:
      if not checks[0](args)["ok"]:
        raise SystemExit(1)
    else:
      target(args) if args.target else run(args)


if __name__ == "__main__":
  sys.exit(main())
