"""Metric writers (console progress, JSONL, TensorBoard), throughput and MFU.

MFU convention (stated because every codebase differs): model FLOPs per trained token =
6·N_matmul (forward 2, backward 4, every weight matrix including the unembedding; embedding lookups
excluded) + attention 12·L·H·K·T_attended per token. `mfu` counts the attention of a causal layer
over the full T (the nanoGPT/PaLM-appendix convention, 12·L·H·K·T); `mfu_causal` counts only the
half of the score matrix that a causal mask keeps (maxtext's convention). Peak = dense bf16 FLOP/s
of the detected accelerator, or `config.train.peak_flops`.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np

# Dense bf16 peak FLOP/s per chip (vendor data sheets, no sparsity).
PEAK_FLOPS = {
    "h100": 989e12, "h200": 989e12, "gh200": 989e12, "b200": 2250e12, "a100": 312e12, "l4": 121e12,
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12, "tpu v5p": 459e12, "tpu v5": 459e12,
    "tpu v6 lite": 918e12, "tpu v6e": 918e12,
}


def device_peak_flops(device=None) -> float | None:
  kind = (device or jax.devices()[0]).device_kind.lower()
  for key in sorted(PEAK_FLOPS, key=len, reverse=True):
    if key in kind:
      return PEAK_FLOPS[key]
  return None


def _mlp_matrices(cfg) -> int:
  """d×d_ff matrices per MLP: three when gated (wi_0, wi_1, wo), two when dense (wi, wo)."""
  return 2 if getattr(cfg, "mlp", "gated") == "dense" else 3


def transformer_flops_per_token(cfg, seq_len: int, causal: bool) -> dict:
  """Training FLOPs per token of a decoder stack of `cfg` at attended length `seq_len`."""
  d, h, k, f, v = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
  per_layer = 4 * d * h * k + _mlp_matrices(cfg) * d * f       # q, k, v, out; the MLP's matrices
  n = cfg.num_layers * per_layer + d * v       # plus the unembedding
  attn = 12 * cfg.num_layers * h * k * seq_len
  return {"matmul_params": n, "full": 6 * n + attn, "causal": 6 * n + (attn / 2 if causal else attn)}


def encdec_flops_per_example(cfg, inputs_len: int, targets_len: int) -> dict:
  """Training FLOPs per (inputs, targets) example of the encoder-decoder, attention counted full
  for the encoder and cross-attention and full/half for the causal decoder self-attention.

  Cross-attention projects its keys and values from the encoder output, so those two matmuls run
  over the inputs (inputs_len rows), its query and output ones over the targets."""
  d, h, k, f, v = cfg.d_model, cfg.num_heads, cfg.head_dim, cfg.d_ff, cfg.vocab_size
  m = _mlp_matrices(cfg)
  enc = cfg.num_encoder_layers * (4 * d * h * k + m * d * f) * inputs_len
  dec = (cfg.num_layers * ((6 * d * h * k + m * d * f) * targets_len + 2 * d * h * k * inputs_len)
         + d * v * targets_len)
  enc_attn = 12 * cfg.num_encoder_layers * h * k * inputs_len * inputs_len
  cross_attn = 12 * cfg.num_layers * h * k * targets_len * inputs_len
  self_attn = 12 * cfg.num_layers * h * k * targets_len * targets_len
  base = 6 * (enc + dec) + enc_attn + cross_attn
  return {"full": base + self_attn, "causal": base + self_attn / 2}


class Writer:
  """Process 0 writes; every process may call. Scalars only; arrays are fetched by the caller."""

  def __init__(self, workdir: str | None, total_steps: int, enabled: bool = True, tensorboard: bool = True,
               console: bool = True):
    self.enabled = enabled and workdir is not None
    self.console = console and enabled
    self.total = total_steps
    self.t0 = time.time()
    self._jsonl = None
    self._tb = None
    self.history: list[dict] = []
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
      if tensorboard:
        try:
          from tensorboardX import SummaryWriter
          self._tb = SummaryWriter(os.path.join(workdir, "tb"))
        except ImportError:  # TensorBoard files are a nicety; the JSONL is the record
          self._tb = None

  def write(self, step: int, metrics: dict, prefix: str = "") -> None:
    row = {"step": int(step), **{prefix + k: _py(v) for k, v in metrics.items()}}
    self.history.append(row)
    if not self.enabled:
      return
    self._jsonl.write(json.dumps(row) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for k, v in row.items():
        if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
          self._tb.add_scalar(k, v, step)

  def progress(self, step: int, start_step: int, metrics: dict) -> None:
    if not self.console:
      return
    done = step - start_step
    elapsed = time.time() - self.t0
    # The last window's step time when there is one (the mean since the start includes compilation).
    eta = metrics.get("step_time_s", elapsed / max(done, 1)) * (self.total - step)
    width = 24
    filled = int(width * step / max(self.total, 1))
    bar = "█" * filled + "·" * (width - filled)
    parts = [f"{step:>6}/{self.total} {bar}", f"loss {metrics.get('loss', float('nan')):.4f}"]
    if "tokens_per_s" in metrics:
      parts.append(f"{metrics['tokens_per_s'] / 1e3:,.1f}K tok/s")
    if metrics.get("mfu") is not None and np.isfinite(metrics.get("mfu", np.nan)):
      parts.append(f"MFU {100 * metrics['mfu']:.1f}%")
    parts.append(f"ETA {_fmt_time(eta)}")
    line = "  ".join(parts)
    end = "\r" if sys.stderr.isatty() and step < self.total else "\n"
    print(line, end=end, file=sys.stderr, flush=True)

  def close(self) -> None:
    if self._jsonl:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def _py(v):
  if isinstance(v, (np.ndarray, jax.Array)):
    v = np.asarray(v)
    return v.item() if v.size == 1 else v.tolist()
  if isinstance(v, (np.floating, np.integer)):
    return v.item()
  return v


def _fmt_time(s: float) -> str:
  s = int(max(0, s))
  return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
