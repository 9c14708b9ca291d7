"""Ahead-of-time preflight: compile a config's train step for a target topology without the hardware
(where JAX allows it) and print the memory each device would need — so an OOM or a sharding mistake
shows up before a pod is booked.

  python -m paperjax.launch.preflight --config=configs/ul2.py:large --topology=tpu:v5e-256
  python -m paperjax.launch.preflight --config=configs/ul2.py:base --topology=cpu:8 --config.mesh.shape='(2,4,1)'
  python -m paperjax.launch.preflight --config=configs/ul2.py:base --topology=local --xla_flags=tuned

With --topology=local the step is compiled exactly as `paperjax.main` with the same config and
--xla_flags compiles it (tests/test_preflight.py checks the persistent-cache key), into the same
persistent compilation cache: the preflight's memory figure is the real step's, and a run started
after it loads its step instead of compiling it.

Topologies:
  cpu:N        N fake CPU devices (the process re-executes itself with the XLA flag); compiles for real.
  tpu:NAME     a TPU slice, e.g. tpu:v5e-8, tpu:v4-32 (jax.experimental.topologies); needs libtpu installed
               (`pip install jax[tpu]`), no TPU attached. Without libtpu it says so and stops.
  gpu:CARD[xN] N GPUs of a card `paperjax.roofline.GPU_TARGETS` describes, e.g. gpu:h100, gpu:h100x8
               (XLA's deviceless GPU compile, as `paperjax.bench --target`); needs JAX's CUDA plugin
               (`pip install 'jax[cuda12]'`), no GPU. `model.attention_impl="auto"` means cuDNN there.
  local        the devices of this machine (a GPU box, a TPU VM).
No data is read: the model, loss and example transform are built from the config alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "A paper's config, e.g. configs/ul2.py:base.")
_TOPOLOGY = flags.DEFINE_string("topology", "local", "cpu:N, tpu:NAME (e.g. tpu:v5e-8), gpu:CARD[xN] (e.g. "
                                 "gpu:h100x8) or local.")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", "none", "A named XLA flag set from paperjax/xla_flags.py, as "
                                 "`paperjax.main --xla_flags` takes it: the step compiled as that run compiles it.")
_HLO_OUT = flags.DEFINE_string("hlo_out", "", "Also write the compiled step's HLO text to this file.")


def _reexec_with_cpu_devices(n: int) -> None:
  want = f"--xla_force_host_platform_device_count={n}"
  if want in os.environ.get("XLA_FLAGS", ""):
    return
  env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {want}".strip(), JAX_PLATFORMS="cpu")
  sys.exit(subprocess.call([sys.executable, "-m", "paperjax.launch.preflight", *sys.argv[1:]], env=env))


def devices_for(topology: str):
  import jax
  if topology == "local" or topology.startswith("cpu:"):
    return jax.devices()
  if topology.startswith("tpu:"):
    name = topology[4:]
    try:
      from jax.experimental import topologies
      return topologies.get_topology_desc(topology_name=name, platform="tpu").devices
    except Exception as e:  # noqa: BLE001 — no libtpu, or an unknown slice name
      raise ValueError(f"Cannot compile for TPU topology {name!r} on this machine ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160]}); install libtpu (pip install 'jax[tpu]') or run the "
                       "preflight on a TPU VM with --topology=local.") from None
  gpu = gpu_target(topology)
  if gpu is not None:
    from paperjax import roofline
    card, n = gpu
    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")  # no driver here: skip the plugin's probe
    try:
      from jax.experimental import topologies
      return topologies.get_topology_desc(platform="cuda", target_config=roofline.GPU_TARGETS[card],
                                          topology=f"1x{n}x1").devices
    except Exception as e:  # noqa: BLE001 — no CUDA plugin
      raise ValueError(f"Cannot compile for {topology} on this machine ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:160] if str(e) else ''}); install JAX's CUDA plugin "
                       "(pip install 'jax[cuda12]', no GPU needed) or run with --topology=local on a GPU host.") from None
  raise ValueError(f"Unknown --topology={topology!r}; use cpu:N, tpu:NAME, gpu:CARD[xN] or local.")


def gpu_target(topology: str):
  """`gpu:h100x8` → ("h100", 8), `gpu:h100` → ("h100", 1); None for other topologies."""
  if not topology.startswith("gpu"):
    return None
  from paperjax import roofline
  m = re.fullmatch(r"gpu:([a-z0-9]+?)(?:x(\d+))?", topology)  # lazy: "h100x8" is h100 × 8
  if not m or m.group(1) not in roofline.GPU_TARGETS:
    raise ValueError(f"--topology={topology!r} names no GPU this repository can compile for; use "
                     f"{', '.join('gpu:' + k for k in sorted(roofline.GPU_TARGETS))} (optionally xN for N of them), "
                     "or --topology=local on a GPU host.")
  return m.group(1), int(m.group(2) or 1)


def lower_step(config, topology: str = "local"):
  """The trainer's step for `config`, lowered (not compiled) for `topology`'s devices, as
  `paperjax.main` builds it. Returns (lowered, info): info has the device count, mesh, parameter
  count and global batch."""
  import jax
  import numpy as np
  from paperjax import data as data_lib, optim, registry, sharding, step as step_lib, train
  from paperjax.data import tokenizers
  from paperjax.method import Context
  from paperjax.state import TrainState

  train.validate(config)
  if topology == "local":  # the persistent compilation cache: a later run of the same config on these
    train.setup_runtime(config)  # devices loads this step instead of compiling it (a cpu:N or TPU-topology
  devices = devices_for(topology)  # compile is for another machine, so it stays out of this one's cache)
  mesh = sharding.make_mesh(tuple(config.mesh.axes), tuple(config.mesh.shape), devices=devices)
  rules = sharding.rules_from_config(config.get("axis_rules", None))
  tok = None
  if config.data.get("kind", "text") == "text":  # a stand-in with the configured vocabulary size
    d = config.data
    tok = tokenizers.ByteTokenizer(specials=tuple(d.specials), num_sentinels=int(d.num_sentinels),
                                   vocab_size=int(d.vocab_size) or None)
  ctx = Context(config=config, mesh=mesh, rules=rules, tokenizer=tok, abstract=True)
  method = registry.make(config, ctx)
  tx, lr = optim.build(config.optimizer, int(config.train.steps))
  ctx.tx, ctx.lr_schedule = tx, lr
  gbs = int(config.data.batch_size)
  if config.data.get("kind", "text") == "text":
    rec = np.full((int(config.data.raw_length),), 3 + ord("a"), np.int32)
  else:
    rec = data_lib.build_source(config.data, "train")[0]
  example = method.example_fn(rec, np.random.default_rng(0)) if method.example_fn else rec
  stack = lambda t: {k: np.asarray(v)[None] for k, v in t.items()} if isinstance(t, dict) else np.asarray(t)[None]
  if method.batch_fn is not None:  # the vectorised transform sees a batch of stacked examples
    one = {k: np.asarray(v) for k, v in method.batch_fn(stack(example), np.random.default_rng(0)).items()}
  else:
    one = stack(example if isinstance(example, dict) else {"tokens": example})
  if getattr(method, "pack", None) is not None:  # packed rows carry segment ids and positions too
    one = data_lib.pipeline.pack_now([one], method.pack, rows=1)[0]

  def init_state(rng):
    i, e, s = jax.random.split(rng, 3)
    params = method.init(i, one)
    extras = method.init_extras(e, params) if method.init_extras else {}
    return TrainState.create(params, tx, rng=s, extras=extras)

  abstract, shardings = step_lib.abstract_state(init_state, jax.random.PRNGKey(0), mesh, rules, tx)
  bsh = sharding.batch_sharding(mesh, rules, getattr(method, "batch_axis", "batch"))
  batch = {k: jax.ShapeDtypeStruct((gbs, *v.shape[1:]), v.dtype, sharding=bsh) for k, v in one.items()}
  p_step = step_lib.jit_step(train.make_step(method, tx, lr, ctx), shardings, jax.tree.map(lambda _: bsh, batch), mesh, rules)
  with step_lib.mesh_context(mesh, rules):
    lowered = p_step.lower(abstract, batch)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  return lowered, {"devices": len(devices), "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape),
                   "params": n_params, "global_batch": gbs,
                   "attention": (config.get("model", None) or {}).get("attention_impl", None)}


def preflight(config, topology: str, hlo_out: str = "") -> dict:
  """Compiles `config`'s step for `topology`; its memory figures (and, with `hlo_out`, the compiled
  program's text written there, for `paperjax.roofline` or a count of its collectives)."""
  gpu = gpu_target(topology)
  if gpu is None:
    lowered, out = lower_step(config, topology)
    compiled = lowered.compile()
  else:  # what a run on that GPU compiles: "auto" attention is cuDNN there, and jax asks the card (none here)
    from paperjax import roofline
    from paperjax.models.transformer import auto_attention
    config = config.copy_and_resolve_references()
    model = config.get("model", None)
    if model is not None and model.get("attention_impl") == "auto":
      model.attention_impl = auto_attention(model.get("dtype", "float32"), "gpu") or ""
    with roofline.cudnn_checks_for(gpu[0]):
      lowered, out = lower_step(config, topology)
      compiled = lowered.compile()
  if hlo_out:
    with open(hlo_out, "w") as f:
      f.write(compiled.as_text())
  mem = compiled.memory_analysis()
  if mem is not None:
    for field in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                  "generated_code_size_in_bytes", "alias_size_in_bytes"):
      out[field] = int(getattr(mem, field, 0) or 0)
    # Donated state aliases its outputs, so peak ≈ arguments + temporaries (+ outputs not aliased).
    out["estimated_peak_bytes_per_device"] = (out["argument_size_in_bytes"] + out["temp_size_in_bytes"]
                                              + out["output_size_in_bytes"] - out["alias_size_in_bytes"])
  return out


def main(argv):
  del argv
  from paperjax import errors, xla_flags
  with errors.one_sentence():
    xla_flags.apply(_XLA_FLAGS.value)  # before the backend starts (and before a cpu:N re-exec, which inherits it)
  topo = _TOPOLOGY.value
  m = re.fullmatch(r"cpu:(\d+)", topo)
  if m:
    _reexec_with_cpu_devices(int(m.group(1)))
  with errors.one_sentence():
    out = preflight(_CONFIG.value, topo, _HLO_OUT.value)
  gib = lambda b: f"{b / 2**30:.3f} GiB"
  print(f"preflight: {_CONFIG.value.method} ({_CONFIG.value.get('preset', '')}) on {topo}: {out['devices']} × "
        f"{out['device_kind']}, mesh {out['mesh']}, {out['params'] / 1e6:.1f}M params, global batch {out['global_batch']}"
        + (f", attention {out['attention']}" if out.get("attention") else ""))
  if "estimated_peak_bytes_per_device" in out:
    print(f"  per device: arguments {gib(out['argument_size_in_bytes'])}, temporaries {gib(out['temp_size_in_bytes'])}, "
          f"outputs {gib(out['output_size_in_bytes'])} (aliased {gib(out['alias_size_in_bytes'])}), "
          f"code {gib(out['generated_code_size_in_bytes'])}")
    print(f"  estimated peak per device: {gib(out['estimated_peak_bytes_per_device'])}")
  else:
    print("  (this backend reports no memory analysis)")


if __name__ == "__main__":
  app.run(main)
