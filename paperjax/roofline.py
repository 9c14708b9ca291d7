"""A roofline of a compiled step, read from its optimized HLO: every kernel the program launches,
the bytes it moves and the FLOPs it does, and the time each would take at the card's measured
rates. It answers "where does the step's time go, and which passes are above their memory floor"
without running the step — with `paperjax.bench --target=h100` the program is the one XLA's GPU
compiler builds for an H100, compiled on any machine (deviceless, no GPU needed), so the kernel list
is the GPU's own: which element-wise chains became one fusion, which became copies, what each reads.

The model, per kernel (XLA's names: a fusion, a cuBLAS / cuDNN custom call, a copy):
  bytes  operands read + results written. An operand a fusion only slices is counted by its slices (an
         unfused slice, as CPU programs have, reads its slice); a fusion rooted in an in-place
         dynamic-update-slice writes only the update.
  flops  GEMMs (cuBLAS custom calls, GEMM fusions): 2·|out|·K. Flash attention (cuDNN fmha): its
         matmuls, 4·B·H·T·S·K forward and 2.5× that backward (S, dP, dV, dQ, dK), halved when causal.
  time   max(bytes / bandwidth, flops / rate) + a launch cost, with the rate of the kernel's class
         (GEMM, attention forward, attention backward). The default rates are the H100 figures this
         repository measured (notes/perf.md); a kernel's time is a floor, not a prediction of its
         own efficiency: the point is the list of kernels far from it once a profile is at hand, and
         the list of bytes that should not be moved at all before one is.
Loops: a while loop's body counts `known_trip_count` times (XLA records it for scans and fori loops).
"""

from __future__ import annotations

import dataclasses
import json
import contextlib
import math
import re
from collections import defaultdict

DTYPE_BYTES = {"pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3fnuz": 1,
               "f8e5m2fnuz": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4, "f64": 8,
               "s64": 8, "u64": 8, "c64": 8, "c128": 16, "token": 0}


@dataclasses.dataclass(frozen=True)
class Card:
  """Rates a kernel's floor is taken at. H100_SXM, all measured on one H100 SXM in this repository's
  fourth run (notes/perf.md): 3.0 TB/s copy bandwidth; 742 TFLOP/s, what GPT-2's and the 1B
  decoder's GEMMs reached (93% of the card's ~798 TFLOP/s GEMM ceiling); cuDNN flash attention
  (causal work counted once) forward / backward, the backward including its small helper kernels:
  310 / 213 TFLOP/s at head dim 64 (GPT-2), 473 / 352 at head dim 128 (the 1B decoder)."""
  name: str
  bandwidth: float  # bytes/s
  gemm_flops: float  # FLOP/s
  attention_flops: tuple[tuple[int, float, float], ...]  # (head dim, forward FLOP/s, backward FLOP/s)
  launch_s: float = 2e-6

  def attention_rate(self, head_dim: int, backward: bool) -> float:
    _, fwd, bwd = min(self.attention_flops, key=lambda r: abs(r[0] - head_dim))
    return bwd if backward else fwd


# What XLA's GPU compiler needs to compile for a card without it (a `GpuTargetConfigProto` in text
# form, for `jax.experimental.topologies.get_topology_desc(platform="cuda", target_config=...)`):
# the card's published geometry and the CUDA / cuDNN versions of the image it runs under (they
# decide which cuDNN attention kernels the compiler may use).
GPU_TARGETS = {
    "h100": """
gpu_device_info {
  cuda_compute_capability { major: 9 minor: 0 }
  core_count: 132
  fpus_per_core: 128
  clock_rate_ghz: 1.98
  threads_per_block_limit: 1024
  threads_per_warp: 32
  threads_per_core_limit: 2048
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: 232448
  shared_memory_per_core: 233472
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: 3352320000000
  l2_cache_size: 52428800
  device_memory_size: 84929347584
}

platform_name: "CUDA"
dnn_version_info { major: 9 minor: 8 }
runtime_version { major: 12 minor: 8 }
device_description_str: "NVIDIA H100 80GB HBM3"
""",
}


# Pallas kernels that are GEMMs (by their `pallas_call` name: the Triton call's `name`, the Mosaic GPU kernel's
# function in op_name), and their FLOPs from operand and result dims.
PALLAS_GEMMS = {
    # models/fused_mlp.py: x [N, D] · w [D, 2F] → h [N, 2F] (and the gate y from it)
    "gated_mlp_up_gemm": lambda ops, res: 2.0 * ops[0][0] * ops[0][1] * res[0][1],
    # dy [N, D] · W2ᵀ → g [N, F], written as dh [N, 2F] (W2 [F, D] to Triton's, W2ᵀ [D, F] to Mosaic GPU's)
    "gated_mlp_dgrad_gemm": lambda ops, res: 2.0 * ops[0][0] * ops[0][1] * res[0][1] / 2,
    "dense_mlp_dgrad_gemm": lambda ops, res: 2.0 * ops[0][0] * ops[0][1] * res[0][1],  # the same, dh = g·act'(h) [N, F]
    # models/fused_rope.py: x [N, D] · w [D, H·K] → rotary(q) [N, H·K]
    "rope_projection_gemm": lambda ops, res: 2.0 * ops[0][0] * ops[0][1] * res[0][1],
    # its backward: dq [N, H·K] un-rotated as loaded · Wᵀ → dx [N, D] (operands (dq, sin, cos, Wᵀ) per projection
    # summed: the query's and the key's with `rope_qk_projection`); xᵀ · dq → dW [D, H·K]
    "rope_dgrad_gemm": lambda ops, res: 2.0 * ops[0][0] * sum(o[1] for o in ops[0::4]) * res[0][1],
    "rope_wgrad_gemm": lambda ops, res: 2.0 * ops[0][0] * ops[0][1] * res[0][2],  # fp32 split-K partials [S, D, H·K]
}


def _with_fields(target: str, **fields) -> str:
  """A target description with some of its `key: value` fields replaced (each must be there)."""
  for key, value in fields.items():
    target, n = re.subn(rf"(?m)^(\s*{key}: ).*$", lambda m, v=value: m.group(1) + str(v), target)
    assert n == 1, f"{key} is not a field of the target description"
  return target


# The H200 is the H100's processor (the same sm_90 geometry, clocks and matrix rates) with 141 GB of HBM3e
# at 4.8 TB/s: its description is the H100's with the memory, the L2 PyTorch reported on one here (60 MiB)
# and the name changed.
GPU_TARGETS["h200"] = _with_fields(GPU_TARGETS["h100"], memory_bandwidth=4_800_000_000_000, l2_cache_size=62914560,
                                   device_memory_size=143771 * 2**20, device_description_str='"NVIDIA H200"')


@contextlib.contextmanager
def cudnn_checks_for(target: str):
  """jax's cuDNN attention asks the *local* GPU for its compute capability (its packed layout needs
  Hopper); a deviceless compile has no GPU, so inside this context the answer is the target card's."""
  from jax._src.cudnn import fused_attention_stablehlo as fa  # pylint: disable=g-import-not-at-top
  m = re.search(r"cuda_compute_capability \{ major: (\d+) minor: (\d+) \}", GPU_TARGETS[target])
  have = (int(m[1]), int(m[2]))
  version = lambda c: tuple(int(x) for x in c.split("."))
  saved = fa.check_compute_capability, fa.is_cuda_compute_capability_equal
  fa.check_compute_capability = lambda c: have >= version(c)
  fa.is_cuda_compute_capability_equal = lambda c: have == version(c)
  try:
    yield
  finally:
    fa.check_compute_capability, fa.is_cuda_compute_capability_equal = saved


H100_SXM = Card("H100 SXM", bandwidth=3.0e12, gemm_flops=742e12,
                attention_flops=((64, 310e12, 213e12), (128, 473e12, 352e12)))
# H200: the H100's matrix and attention rates (the same processor: its 8192³ bf16 GEMM ran at 769–798 TFLOP/s
# here, the H100's ~798 ceiling) and the copy bandwidth measured on one here, 4.3 TB/s counting bytes read and
# written (/work/.library/device/KINDS.md), the way H100_SXM's 3.0 is counted. The attention rates are a lead
# until an H200 run measures them: cuDNN's small helper passes in the backward are memory-bound and should
# be faster there.
H200_SXM = dataclasses.replace(H100_SXM, name="H200 SXM", bandwidth=4.3e12)
CARDS = {"h100": H100_SXM, "h200": H200_SXM}


def card_for(device_kind: str) -> Card | None:
  """The card whose rates price a device's kernels, from JAX's `device_kind` ("NVIDIA H100 80GB HBM3"),
  or None for a device this module has no rates for — the PCIe and NVL parts included (other clocks, power
  limits and memory: the SXM rates would make their floors too low)."""
  kind = device_kind.lower()
  if "pcie" in kind or "nvl" in kind:
    return None
  return next((c for key, c in CARDS.items() if key in kind), None)

_SHAPE = re.compile(r"\b(" + "|".join(sorted(DTYPE_BYTES, key=len, reverse=True)) + r")\[([0-9,]*)\]")
# Computation headers and instructions, with or without XLA's `%` sigils and the header's signature
# (`%fused_add (p: f32[8]) -> f32[8] {` or `fused_add {`; `%x = f32[8]{0} add(%a, %b)` or `x = f32[8] add(a, b)`).
_COMP = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*\)\s*->\s*.*)?\{\s*$")
_INSTR = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_TYPED_OPERAND = re.compile(r"[a-z]\w*\[[\d,]*\](\{[^{}]*\})?")  # an operand's printed type ("bf16[8,16]{1,0} %p")
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*$")
_SKIP = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "opt-barrier", "after-all",
         "partition-id", "replica-id", "add-dependency", "copy-done", "all-gather-done", "all-reduce-done",
         "collective-permute-done", "send-done", "recv-done", "async-done", "async-update", "fusion-done"}
_SLICES = {"slice", "dynamic-slice"}


@dataclasses.dataclass
class Instr:
  name: str
  shape: str  # the result type as printed
  opcode: str
  operands: list[str]
  attrs: str
  root: bool = False
  args: str = ""  # the text inside the parentheses (a parameter's number)


@dataclasses.dataclass
class Kernel:
  name: str
  category: str  # gemm, attention_fwd/_bwd, copy, reduce, elementwise, pallas, collective, other
  bytes: float
  flops: float
  result: str  # the result type, for the reader
  count: int = 1  # times launched per step (loop trip counts)
  time_s: float = 0.0
  bound: str = ""  # "memory" or "compute"
  op_name: str = ""  # the JAX op it came from (metadata), for the reader
  head_dim: int = 0  # attention kernels: the rate depends on it


def shape_bytes(text: str) -> float:
  """Bytes of every array in a (possibly tuple) HLO type."""
  return sum(DTYPE_BYTES[d] * math.prod(int(x) for x in dims.split(",") if x) for d, dims in _SHAPE.findall(text))


def shape_dims(text: str) -> list[list[int]]:
  return [[int(x) for x in dims.split(",") if x] for _, dims in _SHAPE.findall(text)]


def _matching(text: str, start: int) -> int:
  """Index just past the bracket closing the one at text[start]."""
  pairs = {"(": ")", "{": "}", "[": "]"}
  depth, opener, closer = 0, text[start], pairs[text[start]]
  for i in range(start, len(text)):
    if text[i] == opener:
      depth += 1
    elif text[i] == closer:
      depth -= 1
      if depth == 0:
        return i + 1
  raise ValueError(f"unbalanced {opener!r} in HLO text: {text[start:start + 80]!r}")


def _tuple_elements(shape: str) -> list[str]:
  """The top-level elements of a tuple type "(a, (b, c), d)"; [shape] if it is not a tuple."""
  if not shape.startswith("("):
    return [shape]
  inner = shape[1:_matching(shape, 0) - 1]
  out, start, depth = [], 0, 0
  for i, ch in enumerate(inner):
    if ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      out.append(inner[start:i].strip())
      start = i + 1
  out.append(inner[start:].strip())
  return [e for e in out if e]


def _parse_instr(line: str) -> Instr | None:
  m = _INSTR.match(line)
  if not m:
    return None
  rest = line[m.end():]
  if rest.startswith("("):  # tuple result type
    end = _matching(rest, 0)
  else:
    end = rest.index(" ")
  shape, rest = rest[:end], rest[end:].lstrip()
  op_m = re.match(r"([a-z][a-z0-9\-]*)\(", rest)
  if not op_m:
    return None
  close = _matching(rest, op_m.end() - 1)
  args = rest[op_m.end():close - 1]
  opcode = op_m.group(1)
  operands = [] if opcode in ("parameter", "constant") else [
      t for t in (n.strip().lstrip("%") for n in _TYPED_OPERAND.sub("", re.sub(r"/\*.*?\*/", "", args)).split(","))
      if _NAME.match(t)]
  return Instr(m.group(2), shape, opcode, operands, rest[close:], root=bool(m.group(1)), args=args)


def parse_module(text: str) -> tuple[dict[str, list[Instr]], str]:
  """Computations of an HLO module's text (name → instructions) and the entry's name."""
  comps: dict[str, list[Instr]] = {}
  entry, current = "", None
  for line in text.splitlines():
    if current is None:
      m = _COMP.match(line)
      if m:
        current = m.group(2)
        comps[current] = []
        if m.group(1):
          entry = current
      continue
    if line.startswith("}"):
      current = None
      continue
    ins = _parse_instr(line)
    if ins is not None:
      comps[current].append(ins)
  if not entry:
    raise ValueError("no ENTRY computation in this HLO text; pass compiled.as_text() of a jitted function.")
  return comps, entry


def _attr(attrs: str, key: str) -> str | None:
  m = re.search(rf"\b{key}=%?([\w.\-]+)", attrs)
  return m.group(1) if m else None


def _backend_config(attrs: str) -> dict:
  i = attrs.find("backend_config=")
  if i < 0:
    return {}
  j = i + len("backend_config=")
  if j >= len(attrs) or attrs[j] != "{":
    return {}
  try:
    return json.loads(attrs[j:_matching(attrs, j)])
  except ValueError:
    return {}


def _op_name(attrs: str) -> str:
  m = re.search(r'op_name="([^"]*)"', attrs)
  return m.group(1) if m else ""


def _dot_flops(out_shape: str, lhs_shape: str, contracting: list[int]) -> float:
  out = shape_dims(out_shape)
  lhs = shape_dims(lhs_shape)
  if not out or not lhs:
    return 0.0
  k = math.prod(lhs[0][d] for d in contracting) if contracting else 1
  return 2.0 * math.prod(out[0]) * k


def _without_workspace(results: list) -> list:
  """A library call's (dtype, dims) results less its trailing s8/u8 workspace (scratch, not traffic)."""
  return results[:-1] if len(results) > 1 and results[-1][0] in ("s8", "u8") else results


def _is_library_gemm(attrs: str) -> bool:
  m = re.search(r'custom_call_target="([^"]*)"', attrs)
  return bool(m) and ("matmul" in m.group(1) or "gemm" in m.group(1))


def _elements(shape: str) -> int:
  return sum(math.prod(d) for d in shape_dims(shape))


def _bytes_read(name: str, users: dict, elements: dict, full: float, depth: int = 0) -> float:
  """Bytes a fused computation reads of its parameter `name` (`full` if all of it): less only when
  every use, through casts and bitcasts, slices or gathers it, or is the buffer an in-place
  dynamic-update-slice writes into."""
  us = users.get(name, [])
  if not us or depth > 8 or not elements.get(name):
    return full
  per_element = full / elements[name]
  total = 0.0
  for u in us:
    if u.opcode in _SLICES or (u.opcode == "gather" and u.operands[0] == name):
      total += elements[u.name] * per_element
    elif u.opcode == "dynamic-update-slice" and u.operands[0] == name:
      continue
    elif u.opcode in ("convert", "bitcast", "reshape", "copy"):
      total += _bytes_read(u.name, users, elements, elements[u.name] * per_element, depth + 1)
    else:
      return full
  return total


class _Module:

  def __init__(self, text: str):
    self.comps, self.entry = parse_module(text)
    self.shapes = {i.name: i.shape for comp in self.comps.values() for i in comp}

  def fusion_bytes(self, ins: Instr) -> float:
    """Operands read (sliced ones by their slices) + results written (an in-place
    dynamic-update-slice root writes only its update)."""
    body = self.comps.get(_attr(ins.attrs, "calls") or "", [])
    numbered = {int(b.args): b.name for b in body if b.opcode == "parameter" and b.args.isdigit()}
    elements = {b.name: _elements(b.shape) for b in body}
    users: dict[str, list[Instr]] = defaultdict(list)
    for b in body:
      for o in b.operands:
        users[o].append(b)
    read = 0.0
    seen = set()
    for idx, op in enumerate(ins.operands):
      if op in seen:
        continue
      seen.add(op)
      full = shape_bytes(self.shapes.get(op, ""))
      p = numbered.get(idx)
      read += min(full, _bytes_read(p, users, elements, full)) if p else full
    root = next((b for b in body if b.root), None)
    by_name = {b.name: b for b in body}

    def written(out: Instr | None, shape: str) -> float:
      if out is not None and out.opcode == "dynamic-update-slice":  # in place: only the update
        return shape_bytes(self.shapes.get(out.operands[1], "")) if len(out.operands) > 1 else 0.0
      if out is not None and out.opcode == "custom-call":  # a library call's workspace is scratch, not traffic
        return sum(shape_bytes(f"{d}[{dims}]") for d, dims in _without_workspace(_SHAPE.findall(shape)))
      if (out is not None and out.opcode == "get-tuple-element" and shape.startswith("s8[")
          and by_name.get(out.operands[0], out).opcode == "custom-call"):
        return 0.0  # the same workspace, handed out of a fusion (XLA's dynamic-slice fusion of a GEMM)
      return shape_bytes(shape)

    if root is not None and root.opcode == "tuple":  # a multi-output fusion: each output as above
      return read + sum(written(by_name.get(o), self.shapes.get(o, "")) for o in root.operands)
    return read + written(root, ins.shape)

  def library_gemm_flops(self, ins: Instr) -> float:
    """FLOPs of a cuBLAS custom call: 2·|out|·K, K from its dot dimension numbers."""
    dn = _backend_config(ins.attrs).get("gemm_backend_config", {}).get("dot_dimension_numbers", {})
    contracting = [int(x) for x in dn.get("lhs_contracting_dimensions", [])]
    out = _SHAPE.findall(ins.shape)
    lhs = self.shapes.get(ins.operands[0], "") if ins.operands else ""
    return _dot_flops(f"{out[0][0]}[{out[0][1]}]", lhs, contracting) if out and lhs else 0.0

  def fusion_category(self, ins: Instr) -> tuple[str, float]:
    body = self.comps.get(_attr(ins.attrs, "calls") or "", [])
    cfg = _backend_config(ins.attrs).get("fusion_backend_config", {})
    dots = [b for b in body if b.opcode in ("dot", "convolution")]
    # A cuBLAS call inside a fusion: XLA's dynamic-slice fusion (a GEMM reading its operand straight
    # from a scan's stacked input, e.g. the fused cross-entropy's chunks) is the GEMM, not a copy.
    calls = [b for b in body if b.opcode == "custom-call" and _is_library_gemm(b.attrs)]
    if dots or calls or "gemm" in cfg.get("kind", "") or "cudnn" in cfg.get("kind", ""):
      flops = sum(map(self.library_gemm_flops, calls))
      for d in dots:
        m = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", d.attrs)
        contracting = [int(x) for x in m.group(1).split(",") if x] if m else []
        flops += _dot_flops(d.shape, self.shapes.get(d.operands[0], ""), contracting)
      return "gemm", flops
    ops = {b.opcode for b in body}
    if ops & {"reduce", "reduce-window", "scatter", "sort"}:
      return "reduce", 0.0
    if ops <= {"parameter", "transpose", "copy", "bitcast", "slice", "concatenate", "pad", "reshape",
               "dynamic-slice", "dynamic-update-slice", "broadcast", "constant"}:
      return "copy", 0.0
    return "elementwise", 0.0

  def op_name(self, ins: Instr) -> str:
    """The JAX op a kernel runs for; a fusion XLA built without one (the dynamic-slice fusions around the
    fused cross-entropy's cuBLAS calls) is named by the instructions it fuses, its root first."""
    name = _op_name(ins.attrs)
    if name or ins.opcode not in ("fusion", "fusion-start"):
      return name
    body = self.comps.get(_attr(ins.attrs, "calls") or "", [])
    return next((n for n in map(_op_name, (b.attrs for b in sorted(body, key=lambda b: not b.root))) if n), "")

  def kernels(self, comp: str | None = None, times: int = 1) -> list[Kernel]:
    out: list[Kernel] = []
    for ins in self.comps[comp or self.entry]:
      op = ins.opcode
      if op in _SKIP:
        continue
      if op == "while":
        body = _attr(ins.attrs, "body")
        trip = _backend_config(ins.attrs).get("known_trip_count", {}).get("n")
        n = int(trip) if trip else 1
        out += self.kernels(body, times * n)
        cond = _attr(ins.attrs, "condition")
        if cond:
          out += self.kernels(cond, times * n)
        continue
      if op in ("call", "conditional", "async-start"):
        for key in ("to_apply", "calls", "true_computation", "branch_computations"):
          callee = _attr(ins.attrs, key)
          if callee in self.comps:
            out += self.kernels(callee, times)
        continue
      name, attrs = ins.name, ins.attrs
      flops, category, head_dim = 0.0, "other", 0
      if op == "fusion-start":  # an async fusion (e.g. a scanned layer's stacking into its loop's buffer):
        # the type is ((operands), result, context); the kernel is the fusion it wraps
        parts = _tuple_elements(ins.shape)
        ins = dataclasses.replace(ins, shape=parts[1] if len(parts) > 1 else ins.shape)
        op = "fusion"
      if op == "fusion":
        category, flops = self.fusion_category(ins)
        nbytes = self.fusion_bytes(ins)
      elif op == "custom-call":
        m = re.search(r'custom_call_target="([^"]*)"', attrs)
        target = m.group(1) if m else ""
        operand_shapes = [self.shapes.get(o, "") for o in ins.operands]
        results = _without_workspace(_SHAPE.findall(ins.shape))
        result_shapes = [f"{d}[{dims}]" for d, dims in results]
        nbytes = sum(map(shape_bytes, operand_shapes)) + sum(map(shape_bytes, result_shapes))
        cfg = _backend_config(attrs)
        if _is_library_gemm(attrs):
          category, flops = "gemm", self.library_gemm_flops(ins)
        elif "fmha" in target:  # cuDNN flash attention; q, k (, v, ...) as [B, T, H, K]
          backward = "Backward" in target
          category = "attention_bwd" if backward else "attention_fwd"
          q, k = (shape_dims(operand_shapes[i]) if len(operand_shapes) > i else [] for i in (0, 1))
          if q and k and len(q[0]) == 4:
            b, t, h, head_dim = q[0]
            flops = 4.0 * b * h * t * k[0][1] * head_dim * (2.5 if backward else 1.0)
            if cfg.get("cudnn_fmha_backend_config", {}).get("mask_type") == "CAUSAL":
              flops /= 2
        elif "triton" in target or "mosaic_gpu" in target:  # a Pallas kernel (e.g. models/fused_norm.py):
          category = "pallas"                                # memory-bound by its operands
          m = re.search(r'name = "([^"]*)"', attrs) if "triton" in target else re.search(r'/(\w+)/mpmd_map"', attrs)
          gemm = PALLAS_GEMMS.get(m.group(1) if m else "")
          if gemm:  # ... unless it is a GEMM of ours: floored at the card's GEMM rate, as cuBLAS's are
            category, flops = "gemm", gemm([shape_dims(s)[0] for s in operand_shapes],
                                           [shape_dims(s)[0] for s in result_shapes])
      elif op in ("dot", "convolution"):  # an unfused dot (CPU programs)
        category = "gemm"
        nbytes = sum(shape_bytes(self.shapes.get(o, "")) for o in set(ins.operands)) + shape_bytes(ins.shape)
        m = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", attrs)
        contracting = [int(x) for x in m.group(1).split(",") if x] if m else []
        flops = _dot_flops(ins.shape, self.shapes.get(ins.operands[0], ""), contracting)
      elif op in ("copy", "transpose", "copy-start"):
        category = "copy"
        nbytes = 2 * shape_bytes(ins.shape if op != "copy-start" else self.shapes.get(ins.operands[0], ""))
      elif op in ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute",
                  "all-reduce-start", "all-gather-start", "collective-permute-start"):
        category = "collective"
        nbytes = shape_bytes(ins.shape)
      elif op in _SLICES:  # an unfused slice (CPU programs): it reads its slice (and a dynamic one its offsets)
        category = "copy"
        nbytes = 2 * shape_bytes(ins.shape) + sum(shape_bytes(self.shapes.get(o, "")) for o in set(ins.operands[1:]))
      else:
        nbytes = sum(shape_bytes(self.shapes.get(o, "")) for o in set(ins.operands)) + shape_bytes(ins.shape)
        category = "reduce" if op in ("reduce", "reduce-window", "sort", "scatter") else "elementwise"
      out.append(Kernel(name, category, nbytes, flops, ins.shape, times, op_name=self.op_name(ins), head_dim=head_dim))
    return out


def kernels(hlo_text: str, card: Card = H100_SXM) -> list[Kernel]:
  """Every kernel of a compiled program (its `compiled.as_text()`), with its floor time on `card`."""
  ks = _Module(hlo_text).kernels()
  for k in ks:
    if k.category.startswith("attention"):
      rate = card.attention_rate(k.head_dim, backward=k.category == "attention_bwd")
    else:
      rate = card.gemm_flops if k.category == "gemm" else 0.0
    t_mem = k.bytes / card.bandwidth
    t_flop = k.flops / rate if rate else 0.0
    k.bound = "compute" if t_flop > t_mem else "memory"
    k.time_s = max(t_mem, t_flop) + card.launch_s
  return ks


def phase(op_name: str) -> str:
  """Which part of a training step a kernel belongs to, by JAX's name stack: "backward" (under
  `transpose(jvp(...))`), "forward" (under `jvp(...)`), or "rest" — outside autodiff: the optimizer's
  update, metrics, the step counter."""
  return "backward" if "transpose(" in op_name else "forward" if "jvp(" in op_name else "rest"


def summary(ks: list[Kernel], top: int = 15) -> dict:
  """Per-category totals (ms per step, GB moved, TFLOP) and the costliest passes: kernels grouped by
  the JAX op they came from (layer numbers folded, so one entry is "this pass in every layer"), their
  category and result type."""
  cats: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "gb": 0.0, "tflop": 0.0, "count": 0})
  groups: dict[tuple, dict] = defaultdict(lambda: {"ms": 0.0, "gb": 0.0, "count": 0, "bound": ""})
  for k in ks:
    for c in (cats[k.category], groups[(k.category, re.sub(r"layer_\d+", "layer_N", k.op_name),
                                        re.sub(r"\{[^}]*\}", "", k.result))]):
      c["ms"] += 1e3 * k.time_s * k.count
      c["gb"] += 1e-9 * k.bytes * k.count
      c["count"] += k.count
    cats[k.category]["tflop"] += 1e-12 * k.flops * k.count
    groups[(k.category, re.sub(r"layer_\d+", "layer_N", k.op_name), re.sub(r"\{[^}]*\}", "", k.result))]["bound"] = k.bound
  phases: dict[str, dict] = {p: {"ms": 0.0, "count": 0} for p in ("forward", "backward", "rest")}
  for k in ks:
    phases[phase(k.op_name)]["ms"] += 1e3 * k.time_s * k.count
    phases[phase(k.op_name)]["count"] += k.count
  r3 = lambda d: {n: round(v, 3) if isinstance(v, float) else v for n, v in d.items()}
  return {
      "total_ms": round(sum(c["ms"] for c in cats.values()), 3),
      "flops": sum(k.flops * k.count for k in ks),  # every priced FLOP (the model's count, or more under remat)
      "categories": {n: r3(c) for n, c in sorted(cats.items(), key=lambda kv: -kv[1]["ms"])},
      "phases": {n: r3(c) for n, c in phases.items()},
      "top": [dict(category=cat, op=op, result=res, **r3(g))
              for (cat, op, res), g in sorted(groups.items(), key=lambda kv: -kv[1]["ms"])[:top]],
  }
