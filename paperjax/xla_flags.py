"""The XLA / JAX runtime settings that matter for speed, in one place.

XLA reads `XLA_FLAGS` once, when the backend starts, so `apply()` must run before the first JAX
computation (importing jax is fine; creating an array is not). An unknown flag aborts the process
("Unknown flags in XLA_FLAGS"), which is why every set below was checked to parse on the jaxlib
this repo tests with, and why `paperjax.bench` runs each flag set in its own process.

Sets (measured on one H100 in notes/perf.md; pick with `paperjax.bench --xla_flags=<name>` or
`python -m paperjax.main --xla_flags=<name> --config=...`):
  none    XLA's defaults.
  tuned   --xla_gpu_enable_triton_gemm=false   cuBLAS(Lt) for every GEMM: XLA's Triton GEMM fusions
                                               are autotuned against cuBLAS anyway, and skipping
                                               their search cuts compile time a lot;
          --xla_gpu_enable_latency_hiding_scheduler=true   overlap async work (copies, collectives
                                               on multi-GPU) with compute;
          --xla_gpu_enable_while_loop_double_buffering=true   lets a scanned layer stack
                                               (`scan_layers`) prefetch the next layer's weights.
  gemm_fusion   --xla_gpu_cudnn_gemm_fusion_level=2   XLA's GEMM fusions (a GEMM with the element-wise
                                               producers of its operands, e.g. casts, pulled into its
                                               loads) may also be compiled by cuDNN, autotuned against
                                               Triton and cuBLAS; Triton GEMMs stay on (XLA's default)
                                               so those fusions are formed at all. Experimental: the
                                               candidate for the element-wise traffic between GEMMs
                                               that GPT-2's profile shows (notes/perf.md); unmeasured
                                               until the fifth H100 run;
                --xla_gpu_enable_latency_hiding_scheduler=true   as in `tuned`.
  tuned_nomerge   `tuned` and --xla_gpu_dot_merger_threshold_mb=0: XLA's dot merger off. It merges
                                               GEMMs that share an operand (q, k and v of one layer) into
                                               one wider GEMM and slices the result; cuDNN attention wants
                                               each of q, k, v contiguous, so without rotary positions to
                                               absorb the slices every layer copies them out (GPT-2 with
                                               learned positions: 33 copies, 1.6 ms of the H100 floor,
                                               notes/perf.md 2026-11-29). Off, the three GEMMs read x
                                               three times and write q, k, v in place. A set of its own
                                               until a card says what the narrower GEMMs cost.
  tuned_ops   `tuned` with XLA's command buffers (CUDA graphs) off: for profiles only. Inside a
                                               command buffer the profiler names no HLO op per kernel (run 5's
                                               profiles: "command_buffer_N"), so GEMMs cannot be told apart
                                               by shape; with them off `paperjax.profile_summary` can.
Environment (not XLA_FLAGS):
  XLA_PYTHON_CLIENT_MEM_FRACTION   the share of GPU memory JAX's allocator takes up front (default
                                   0.75); raised so a ~1B model with AdamW states fits with room.
"""

from __future__ import annotations

import os

_TUNED = (
    "--xla_gpu_enable_triton_gemm=false",
    "--xla_gpu_enable_latency_hiding_scheduler=true",
    "--xla_gpu_enable_while_loop_double_buffering=true",
)
FLAG_SETS: dict[str, tuple[str, ...]] = {
    "none": (),
    "tuned": _TUNED,
    "tuned_nomerge": _TUNED + ("--xla_gpu_dot_merger_threshold_mb=0",),
    "tuned_ops": _TUNED + ("--xla_gpu_enable_command_buffer=",),
    "gemm_fusion": (
        "--xla_gpu_cudnn_gemm_fusion_level=2",
        "--xla_gpu_enable_latency_hiding_scheduler=true",
    ),
}
ENV_DEFAULTS = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.92"}


def apply(name: str = "none") -> str:
  """Appends the named flag set to XLA_FLAGS (keeping what the user set) and sets the environment
  defaults that are not already set. Call before any JAX computation. Returns the XLA_FLAGS used."""
  if name not in FLAG_SETS:
    raise ValueError(f"Unknown XLA flag set {name!r}; use one of {sorted(FLAG_SETS)} (see paperjax/xla_flags.py).")
  for k, v in ENV_DEFAULTS.items():
    os.environ.setdefault(k, v)
  flags = os.environ.get("XLA_FLAGS", "").split()
  flags += [f for f in FLAG_SETS[name] if f not in flags]
  os.environ["XLA_FLAGS"] = " ".join(flags)
  return os.environ["XLA_FLAGS"]
