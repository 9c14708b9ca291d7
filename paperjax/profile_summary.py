"""Where a step's device time goes: a `jax.profiler` trace summarised as a short table.

  python -m paperjax.profile_summary <trace folder or .xplane.pb> [--steps=3] [--top=20]

Reads the trace with `jax.profiler.ProfileData` (no TensorBoard needed) and keeps the events that
carry an XLA op (`hlo_op` stat): the kernels on the `/device:*` planes' streams when there are any
(GPU), else the XLA ops the host's threads ran (CPU). Each event falls in one category by its
kernel and op names — gemm (cuBLAS/cuBLASLt/CUTLASS/Triton GEMMs, dots), attention (cuDNN
flash/SDPA), collective, copy (copies, transposes, dynamic-update-slices), reduce (reduction
fusions), elementwise (the other fusions), other — and the table gives each category's time per
step, its share of the summed kernel time and its count, then the top kernels by time (numbered
instances of one kernel, `fusion.12`, `fusion.40`, summed into one row). Times are sums
of kernel durations, so kernels overlapping on several streams count twice; `span` is the wall
time from the first to the last kernel, `busy` the part of it with at least one kernel running and
`idle` the rest — gaps where the device waited (for the host, the input pipeline, a sync). Given the
step's optimized HLO (`--hlo`, or `hlo_text=`), each top row also names its costliest instance, the
shape it writes and the bandwidth it reached ((operand + result bytes) / time per call), so the
memory-bound passes that stream far below the card's bandwidth stand out. With `--card=h100|h200` too,
every kernel is set against its roofline floor on that card (`paperjax.roofline`) and the JAX ops with
the largest gap between measured and floor time are listed: where the step's distance from its floor
lies. `paperjax.bench --profile=DIR` prints this after timing (and saves the HLO there as step.hlo.txt),
with the floor table on a card the roofline has rates for.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys

from paperjax import roofline

CATEGORIES = ("gemm", "attention", "collective", "copy", "reduce", "elementwise", "other")
_RULES = (  # (category, pattern over "kernel name | hlo op name"), first match wins
    ("attention", re.compile(r"cudnn|sdpa|fmha|flash|attention", re.I)),
    ("collective", re.compile(r"nccl|all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute|allreduce", re.I)),
    ("gemm", re.compile(r"gemm|cublas|nvjet|cutlass|xmma|matmul|\bdot[._\d]|\bdot$|triton_gemm|convolution|ynn_fusion|onednn", re.I)),
    ("copy", re.compile(r"copy|transpose|dynamic-update-slice|dynamic_update_slice|memcpy|memset", re.I)),
    ("reduce", re.compile(r"reduce|reduction", re.I)),
    ("elementwise", re.compile(r"fusion|convert|add|multiply|select|broadcast|exp|log", re.I)),
)


_SUFFIX = re.compile(r"([._]\d+)+$")
def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
  """{instruction name: (result shape without layouts, operand names)} from an HLO module's text
  (`compiled.as_text()`), read by `paperjax.roofline.parse_module`: `%fusion.12 = bf16[32,1024,768]{2,1,0}
  fusion(%p.1, %p.2), kind=kLoop` → {"fusion.12": ("bf16[32,1024,768]", ("p.1", "p.2"))}. The first
  definition of a name wins."""
  out = {}
  for instrs in roofline.parse_module(hlo_text)[0].values():
    for i in instrs:
      out.setdefault(i.name, (re.sub(r"\{[^{}]*\}", "", i.shape), tuple(i.operands)))
  return out


def hlo_shapes(hlo_text: str) -> dict[str, str]:
  """{instruction name: its result shape}, layouts dropped (see `hlo_instructions`)."""
  return {k: v[0] for k, v in hlo_instructions(hlo_text).items()}


shape_bytes = roofline.shape_bytes  # bytes of an HLO shape string, tuples summed


def category(kernel: str, op: str = "") -> str:
  text = f"{kernel} | {op}"
  for name, pattern in _RULES:
    if pattern.search(text):
      return name
  return "other"


def find_trace(path: str) -> str:
  if os.path.isfile(path):
    return path
  found = sorted(glob.glob(os.path.join(path, "**", "*.xplane.pb"), recursive=True), key=os.path.getmtime)
  if not found:
    raise FileNotFoundError(f"No .xplane.pb under {path!r}; pass the folder given to jax.profiler.trace "
                            "(or paperjax.bench --profile).")
  return found[-1]


def op_events(path: str) -> tuple[list[tuple[str, str, float, float]], str]:
  """[(kernel name, hlo op, start ns, duration ns)] of the trace's XLA-op events, and where they came from."""
  from jax.profiler import ProfileData  # pylint: disable=g-import-not-at-top
  data = ProfileData.from_file(find_trace(path))
  planes = list(data.planes)
  device = [p for p in planes if p.name.startswith("/device:")]
  chosen = device or [p for p in planes if p.name.startswith("/host:CPU")]
  events = []
  for plane in chosen:
    for line in plane.lines:
      for e in line.events:
        stats = dict(e.stats)
        if "hlo_op" not in stats or e.duration_ns <= 0:
          continue
        events.append((e.name, str(stats["hlo_op"]), float(e.start_ns), float(e.duration_ns)))
  return events, ("device" if device else "host") + ": " + ", ".join(p.name for p in chosen)


def summarize(path: str, steps: int = 1, top: int = 20, hlo_text: str | None = None,
              card: roofline.Card | None = None) -> dict:
  """{"source", "span_ms", "total_ms", "categories": {cat: {"ms", "share", "count"}}, "top": [...]},
  times per step (the trace's totals divided by `steps`). With the step's optimized HLO text, each
  top row also names its costliest instance and that instance's result shape, so a kernel row maps
  to the tensor it writes (which activation a copy or convert moves); with a `card` as well, "floor"
  sets every kernel against its roofline floor on that card (`floor_gaps`)."""
  events, source = op_events(path)
  if not events:
    raise ValueError(f"The trace at {path!r} holds no XLA-op events; was a jitted step run inside the trace?")
  return summarize_events(events, source, steps, top, hlo_text, card)


def summarize_events(events, source: str, steps: int = 1, top: int = 20, hlo_text: str | None = None,
                     card: roofline.Card | None = None) -> dict:
  """`summarize` of [(kernel name, hlo op, start ns, duration ns)] events (`op_events`)."""
  instrs = hlo_instructions(hlo_text) if hlo_text else {}
  floors = roofline.kernels(hlo_text, card or roofline.H100_SXM) if hlo_text else []
  flops = {k.name: k.flops for k in floors if k.flops}
  per_cat = collections.defaultdict(lambda: [0.0, 0])
  per_op = collections.defaultdict(lambda: [0.0, 0, ""])
  per_instance = collections.defaultdict(lambda: [0.0, 0])  # (kernel row, hlo instance) → [ns, calls]
  for kernel, op, _, dur in events:
    per_instance[(_SUFFIX.sub("", kernel), op)][0] += dur
    per_instance[(_SUFFIX.sub("", kernel), op)][1] += 1
    c = category(kernel, op)
    per_cat[c][0] += dur
    per_cat[c][1] += 1
    key = _SUFFIX.sub("", kernel)  # fusion.12, fusion.40, … → one row "fusion"
    per_op[key][0] += dur
    per_op[key][1] += 1
    per_op[key][2] = c
  total = sum(v[0] for v in per_cat.values())
  span = max(s + d for _, _, s, d in events) - min(s for _, _, s, _ in events)
  busy = union_ns([(s, s + d) for _, _, s, d in events])
  ms = lambda ns: ns / 1e6 / steps
  out = {
      "source": source, "steps": steps, "span_ms": round(ms(span), 3), "total_ms": round(ms(total), 3),
      "busy_ms": round(ms(busy), 3), "idle_ms": round(ms(span - busy), 3),
      "categories": {c: {"ms": round(ms(per_cat[c][0]), 3), "share": round(per_cat[c][0] / total, 4),
                         "count": per_cat[c][1] // steps} for c in CATEGORIES if c in per_cat},
      "top": [_top_row(k, v, per_instance, instrs, ms, steps, flops)
              for k, v in sorted(per_op.items(), key=lambda kv: -kv[1][0])[:top]],
  }
  if floors and card is not None:
    out["floor"] = floor_gaps(events, floors, card, steps, top)
  return out


def floor_gaps(events, floors: list, card: roofline.Card, steps: int = 1, top: int = 20) -> dict:
  """Each profiled kernel against its roofline floor on `card` (`paperjax.roofline.kernels` of the
  step's HLO, matched by instance name): the measured time of the kernels that have a floor, the sum of
  those floors (each kernel's floor × its calls), the time of kernels the HLO does not name
  ("unmatched": e.g. every kernel inside a command buffer, so profile with `--xla_flags=tuned_ops`), and
  the JAX ops (layer numbers folded) with the largest gap, measured − floor — where a step's distance
  from its roofline lies, kernel by kernel. Per step, in ms."""
  by_name = {k.name: k for k in floors}
  groups: dict[tuple, list] = collections.defaultdict(lambda: [0.0, 0.0, 0])  # [measured ns, floor ns, calls]
  matched = unmatched = 0.0
  for _, op, _, dur in events:
    k = by_name.get(op)
    if k is None:
      unmatched += dur
      continue
    matched += dur
    g = groups[(k.category, re.sub(r"layer_\d+", "layer_N", k.op_name) or k.name)]
    g[0] += dur
    g[1] += k.time_s * 1e9
    g[2] += 1
  ms = lambda ns: round(ns / 1e6 / steps, 6)
  floor_ns = sum(g[1] for g in groups.values())
  gaps = sorted(groups.items(), key=lambda kv: -(kv[1][0] - kv[1][1]))[:top]
  return {"card": card.name, "measured_ms": ms(matched), "floor_ms": ms(floor_ns), "unmatched_ms": ms(unmatched),
          "gaps": [{"category": cat, "op": op, "ms": ms(g[0]), "floor_ms": ms(g[1]), "gap_ms": ms(g[0] - g[1]),
                    "count": g[2] // steps} for (cat, op), g in gaps]}


def _top_row(key, v, per_instance, instrs, ms, steps, flops=None) -> dict:
  """A top-kernel row; with the HLO, its costliest instance, that instance's result shape and the
  bandwidth it reached: (operand + result bytes) / time per call — a lower bound on the traffic
  (an operand read twice counts once), so far under the card's ~3 TB/s means a kernel that is not
  streaming at full speed, which is what to look at among the copies and element-wise passes.
  `flops` (instance → FLOPs per call, `paperjax.roofline`'s count): the rate a GEMM or attention
  instance reached, TFLOP/s — each GEMM's by its shape, where the trace names its op."""
  row = {"name": key, "category": v[2], "ms": round(ms(v[0]), 3), "count": v[1] // steps}
  if instrs:
    op = max((op for (k, op) in per_instance if k == key), key=lambda op: per_instance[(key, op)][0])
    shape, operands = instrs.get(op, ("?", ()))
    row.update(instance=op, shape=shape)
    nbytes = shape_bytes(shape) + sum(shape_bytes(instrs[o][0]) for o in operands if o in instrs)
    ns, calls = per_instance[(key, op)]
    if nbytes and ns > 0:
      row.update(bytes=nbytes, gb_per_s=nbytes / (ns / calls))  # bytes per ns = GB/s
    if flops and flops.get(op) and ns > 0:
      row.update(tflops_per_s=flops[op] / (ns / calls) / 1e3)  # FLOPs per ns = GFLOP/s
  return row


def union_ns(intervals) -> float:
  """Length of the union of [start, end) intervals: the time at least one kernel was running."""
  total, end = 0.0, float("-inf")
  for a, b in sorted(intervals):
    if b <= end:
      continue
    total += b - max(a, end)
    end = b
  return total


def format_summary(s: dict) -> str:
  lines = [f"profile ({s['source']}; per step over {s['steps']}): kernels {s['total_ms']:.2f} ms, "
           f"span {s['span_ms']:.2f} ms, busy {s['busy_ms']:.2f} ms, idle {s['idle_ms']:.2f} ms",
           f"  {'category':<12} {'ms/step':>9} {'share':>7} {'kernels':>8}"]
  for c, v in s["categories"].items():
    lines.append(f"  {c:<12} {v['ms']:>9.3f} {100 * v['share']:>6.1f}% {v['count']:>8}")
  lines.append(f"  top {len(s['top'])}:")
  for t in s["top"]:
    lines.append(f"  {t['ms']:>9.3f} ms  x{t['count']:<4} {t['category']:<11} {t['name'][:110]}"
                 + (f"  → {t['shape'][:90]} ({t['instance']}"
                    + (f", {t['gb_per_s']:,.0f} GB/s" if "gb_per_s" in t and t["category"] not in ("gemm", "attention") else "")
                    + (f", {t['tflops_per_s']:,.0f} TFLOP/s" if "tflops_per_s" in t else "")
                    + ")" if "shape" in t else ""))
  f = s.get("floor")
  if f:
    ratio = f"{f['measured_ms'] / f['floor_ms']:.2f}× its floor" if f["floor_ms"] else "no floor"
    lines.append(f"  against the {f['card']} roofline: kernels it prices {f['measured_ms']:.2f} ms, floor "
                 f"{f['floor_ms']:.2f} ms ({ratio}); not in the HLO {f['unmatched_ms']:.2f} ms. Largest gaps:")
    for g in f["gaps"]:
      lines.append(f"  {g['gap_ms']:>9.3f} ms  ({g['ms']:.3f} measured, {g['floor_ms']:.3f} floor) x{g['count']:<4} "
                   f"{g['category']:<13} {g['op'].removeprefix('jit(step)/')[-90:]}")
  return "\n".join(lines)


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("trace", help="a jax.profiler trace folder or .xplane.pb file")
  p.add_argument("--steps", type=int, default=1, help="steps the trace holds (times are divided by it)")
  p.add_argument("--top", type=int, default=20)
  p.add_argument("--hlo", default="", help="the step's optimized HLO text: shapes for the top kernels")
  p.add_argument("--card", default="", choices=["", *sorted(roofline.CARDS)],
                 help="with --hlo: set every kernel against its roofline floor on this card")
  args = p.parse_args(argv)
  hlo = open(args.hlo).read() if args.hlo else None
  card = roofline.CARDS[args.card] if args.card else None
  print(format_summary(summarize(args.trace, args.steps, args.top, hlo_text=hlo, card=card)))


if __name__ == "__main__":
  sys.exit(main())
