"""THE training loop. Every paper runs through `run(config, workdir)`; none copies it.

One stage, in order:
  mesh from config.mesh → tokenizer → method (the paper) → data iterator → abstract state via
  `jax.eval_shape` → shardings from logical axes → `jax.jit(init, out_shardings=...)` → restore
  (checkpoint.py gives the resume order) → loop: host batch → global arrays → jitted step (donated
  state) → metrics of step N fetched after step N+1 is dispatched → hooks (log, eval, between,
  checkpoint, profile) → summary.
Papers change what happens inside a step through `Method.loss` or `Method.step`, and between
steps through `Method.between`; multi-stage papers list `config.stages`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time

import jax
import ml_collections
import numpy as np

from paperjax import checkpoint as ckpt_lib
from paperjax import data as data_lib
from paperjax import metrics as metrics_lib
from paperjax import optim, registry, sharding
from paperjax import step as step_lib
from paperjax.errors import NonFiniteLossError  # noqa: F401 — also reached as train.NonFiniteLossError
from paperjax.method import Context, Method
from paperjax.state import TrainState
from paperjax.step import mesh_context


class _Preemption:
  """SIGTERM (a preemption notice) asks the loop to finish its step, checkpoint and exit cleanly."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): preemption is not handled
      self._old = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True
    logging.warning("SIGTERM received: finishing the current step, then saving a checkpoint.")

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def setup_runtime(config) -> None:
  """Process-wide JAX settings: the persistent compilation cache (tests and CI rely on it)."""
  cache = os.environ.get("PAPERJAX_COMPILATION_CACHE", os.path.expanduser("~/.cache/paperjax/xla"))
  if cache and cache != "0":
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def run(config: ml_collections.ConfigDict, workdir: str | None, *, restart: bool = False) -> dict:
  """Run every stage of `config` (or the single stage it is) and return the last stage's summary."""
  setup_runtime(config)
  stages = list(config.get("stages", None) or [])
  if not stages:
    return _run_stage(config, workdir, restart=restart)
  params, summaries = None, {}
  for i, stage in enumerate(stages):
    stage = dict(stage)
    name = stage.get("name", f"stage{i}")
    cfg = apply_overrides(config, stage.get("overrides", {}))
    sub = os.path.join(workdir, name) if workdir else None
    summaries[name] = _run_stage(cfg, sub, restart=restart, init_params=params, stage_name=name)
    params = summaries[name]["final_params"]
  out = dict(summaries[name])
  out["stages"] = {k: {kk: vv for kk, vv in v.items() if kk != "final_params"} for k, v in summaries.items()}
  return out


def apply_overrides(config, overrides: dict):
  cfg = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in dict(overrides).items():
    node = cfg
    *parents, leaf = dotted.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  cfg.stages = ()
  return cfg


def build_context(config, workdir, mesh, rules) -> Context:
  cache = data_lib.cache_dir_for(workdir)
  tokenizer = data_lib.build_tokenizer(config.data, cache)
  return Context(config=config, mesh=mesh, rules=rules, tokenizer=tokenizer, workdir=workdir,
                 process_index=jax.process_index(), process_count=jax.process_count())


def make_step(method: Method, tx, lr_schedule, ctx: Context):
  """The default SGD step (or the method's own), returning (state, metrics)."""
  if method.step is not None:
    def step(state, batch):
      return method.step(state, batch, ctx)
    return step

  return step_lib.sgd_step(method.loss, tx, lr_schedule)


def validate(config) -> None:
  """Cheap checks of the shared fields, before any data is read or anything is compiled."""
  def need(ok, msg):
    if not ok:
      raise ValueError(msg)
  t, d, o = config.train, config.data, config.optimizer
  need(int(t.steps) >= 1, f"train.steps={t.steps} must be at least 1; set --config.train.steps to a positive number.")
  need(int(d.batch_size) >= 1, f"data.batch_size={d.batch_size} must be positive; set --config.data.batch_size "
                               "to a multiple of the data-parallel device count.")
  need(float(o.lr) >= 0, f"optimizer.lr={o.lr} is negative; use a learning rate ≥ 0.")
  need(int(t.get("log_every", 1)) >= 1, f"train.log_every={t.log_every} must be at least 1.")
  need(int(t.get("stop_at", 0)) >= 0, f"train.stop_at={t.stop_at} must be ≥ 0 (0: run all train.steps).")
  for name in ("eval_every", "ckpt_every", "between_every"):
    need(int(t.get(name, 0)) >= 0, f"train.{name}={t.get(name)} must be ≥ 0 (0: off).")
  copy, model_dtype = o.get("param_copy", ""), config.get("model", {}).get("dtype", None)
  need(not copy or model_dtype is None or str(copy) == str(model_dtype),
       f"optimizer.param_copy={copy!r} differs from model.dtype={model_dtype!r}: the step would compute with {copy} "
       "kernels; set optimizer.param_copy to the model's compute dtype or ''.")


def _run_stage(config, workdir, *, restart=False, init_params=None, stage_name=None) -> dict:
  t_start = time.time()
  validate(config)
  is_main = jax.process_index() == 0
  tcfg = config.train
  mesh = sharding.make_mesh(tuple(config.mesh.axes), tuple(config.mesh.shape))
  rules = sharding.rules_from_config(config.get("axis_rules", None))
  if workdir:
    _prepare_workdir(workdir, restart)
  ctx = build_context(config, workdir, mesh, rules)
  method = registry.make(config, ctx)
  copy = config.optimizer.get("param_copy", "")
  if copy and method.step is not None:
    raise ValueError(f"optimizer.param_copy={copy!r} works with the trainer's default step only, and {config.method} has "
                     "its own (which may change parameters outside the optimizer, leaving the copy stale); "
                     "set optimizer.param_copy=''.")
  tx, lr_schedule = optim.build(config.optimizer, int(tcfg.steps))
  ctx.tx, ctx.lr_schedule, ctx.model = tx, lr_schedule, method.model

  # Data: each process iterates over its own share of every global batch.
  gbs = int(config.data.batch_size)
  n_batch = sharding.batch_axis_size(mesh, rules)
  if method.make_iterator is not None and method.batch_fn is not None:
    raise ValueError(f"{config.method}: a method with its own make_iterator applies its batch transform itself; "
                     "drop batch_fn from its Method or use the default grain iterator.")
  if method.make_iterator is not None:
    # The method's own stream (e.g. a population's per-client streams, one round per step); it
    # checks its own divisibility and is checkpointed like the default grain iterator.
    data_iter = method.make_iterator(ctx)
  else:
    if gbs % n_batch:
      raise ValueError(f"data.batch_size={gbs} is not divisible by the {n_batch} devices of the mesh's batch axes; "
                       f"use a multiple of {n_batch}.")
    cache = data_lib.cache_dir_for(workdir)
    train_source = data_lib.build_source(config.data, config.data.get("train_split", "train"), ctx.tokenizer, cache)
    data_iter = data_lib.pipeline.make_iterator(
        train_source, global_batch_size=gbs, seed=int(config.seed), process_index=ctx.process_index,
        process_count=ctx.process_count, example_fn=method.example_fn, batch_fn=method.batch_fn,
        num_threads=int(config.data.get("num_threads", 2)), pack=method.pack, batch_shards=n_batch)
  fresh_state = data_iter.get_state()
  first = next(data_iter)
  data_iter.set_state(fresh_state)  # the batch read for shapes is trained on first, as from a fresh iterator
  example = jax.tree.map(lambda x: np.asarray(x)[:1], first)

  # State: abstract → logical specs → shardings → jitted init that lays params out sharded.
  def init_state(rng):
    init_rng, extras_rng, state_rng = jax.random.split(rng, 3)
    params = method.init(init_rng, example)
    extras = method.init_extras(extras_rng, params) if method.init_extras else {}
    return TrainState.create(params, tx, rng=state_rng, extras=extras)

  rng = jax.random.PRNGKey(int(config.seed))
  # Shapes and shardings first: a resumed run restores straight into them and never materialises
  # a fresh initialisation beside the checkpoint (which would double peak memory on big models).
  abstract_state, state_shardings = step_lib.abstract_state(init_state, rng, mesh, rules, tx)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract_state.params))
  # From shapes, once: what the optimizer holds — the trainer's state plus, for populations, the members'
  # optimizer states (`extras["opt"]`, `extras["pop"]["opt"]`, the population.py convention).
  ex = abstract_state.extras if isinstance(abstract_state.extras, dict) else {}
  pop_opt = [ex.get("opt"), ex["pop"].get("opt") if isinstance(ex.get("pop"), dict) else None]
  opt_state_bytes = optim.state_bytes(abstract_state.opt_state) + sum(optim.state_bytes(o) for o in pop_opt if o is not None)
  state = None

  # Resume, or start (from the previous stage's parameters if there is one).
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(tcfg.get("ckpt_keep", 3))) if workdir else None
  start_step, resumed = 0, False
  if checkpointer is not None and checkpointer.latest_step() is not None:
    checkpointer.check_config(checkpointer.latest_step(), config)
    restored_step, restored = checkpointer.restore(abstract_state, data_iter)
    if restored is not None:
      state, start_step, resumed = restored, int(restored_step), True
      if not checkpointer.has_data_state(start_step):
        # Saved by a different number of processes. Global batch b holds the same examples for
        # any process count (data/pipeline.py), so the position to resume from is the step.
        data_iter.set_state({**data_iter.get_state(), "next_index": start_step})
        if is_main:
          print(f"paperjax: the checkpoint was written by another number of processes; the data "
                f"iterator resumes at global batch {start_step}.", flush=True)
  if not resumed:
    state, _ = step_lib.init_sharded(init_state, rng, mesh, rules, tx)
  if not resumed and init_params is not None and method.from_previous is not None:
    # The stage maps the previous stage's parameters itself (a new head, a frozen teacher, ...).
    params, extras = method.from_previous(init_params, state.params, state.extras)
    shapes = lambda t: (jax.tree.structure(t), [np.shape(x) for x in jax.tree.leaves(t)])
    if shapes(params) != shapes(state.params) or shapes(extras) != shapes(state.extras):
      raise ValueError(f"Stage {stage_name!r}: from_previous must return params and extras shaped like the "
                       "stage's own init; map the previous parameters into that structure.")
    state = state.replace(params=jax.device_put(params, state_shardings.params),
                          extras=jax.device_put(extras, state_shardings.extras))
  elif not resumed and init_params is not None:
    if jax.tree.structure(init_params) != jax.tree.structure(state.params):
      raise ValueError(f"Stage {stage_name!r} cannot take the previous stage's parameters: their structure differs. "
                       "Give the stage's method an init that maps them, or make the models match.")
    state = state.replace(params=jax.device_put(init_params, state_shardings.params))

  step_fn = make_step(method, tx, lr_schedule, ctx)
  batch_sharding = jax.tree.map(lambda _: sharding.batch_sharding(mesh, rules, method.batch_axis), first)
  p_step = step_lib.jit_step(step_fn, state_shardings, batch_sharding, mesh, rules)

  total = int(tcfg.steps)
  stop_at = int(tcfg.get("stop_at", 0)) or total
  tokens_per_step = (method.tokens_per_example or 0) * gbs
  flops_per_step = (method.flops_per_example or 0) * gbs
  peak = float(tcfg.get("peak_flops", 0) or 0) or metrics_lib.device_peak_flops()
  n_dev = jax.device_count()
  writer = metrics_lib.Writer(workdir, total, enabled=is_main, console=bool(tcfg.get("progress", True)))
  if is_main:
    where = f"{workdir}" if workdir else "(no workdir)"
    print(f"paperjax: {config.method}{'/' + stage_name if stage_name else ''} — {n_params / 1e6:.2f}M params, "
          f"mesh {dict(mesh.shape)}, global batch {gbs}, steps {total}, "
          f"{'resuming at step ' + str(start_step) if resumed else 'starting'} → {where}", flush=True)

  log_every = int(tcfg.get("log_every", 50))
  eval_every = int(tcfg.get("eval_every", 0))
  ckpt_every = int(tcfg.get("ckpt_every", 0))
  ckpt_every_s = float(tcfg.get("ckpt_every_s", 0) or 0)
  between_every = int(tcfg.get("between_every", 0))
  profile = tuple(tcfg.get("profile_steps", ()) or ())
  window: dict[str, list] = {}
  window_t, window_steps = None, 0
  last_ckpt_t = time.time()
  last_train: dict = {}
  eval_results: dict = {}
  pending = None  # (step_number_after, metrics on device)
  # Host time per step, logged with the step time: producing the batch (next + placement), handing
  # the step to the runtime (dispatch: normally short, it returns before the device runs the step)
  # and waiting for the device's metrics. One step is in flight, so the input path costs step time
  # only when input_time_s exceeds what the device needs; device_wait_s near zero means the host is
  # the bottleneck. (The H100 trainer row of run 5 logged 3 ms input + 80 ms wait of a 273 ms step:
  # the rest of the host's time per step is what dispatch_time_s now shows, or not.)
  host_time = {"input": 0.0, "dispatch": 0.0, "wait": 0.0, "steps": 0}
  first_step_s = None

  def fetch(pending_item):
    nonlocal window_t, window_steps, first_step_s
    step_no, m = pending_item
    t_wait = time.perf_counter()
    m = jax.device_get(m)
    host_time["wait"] += time.perf_counter() - t_wait
    loss = float(m["loss"])
    if not math.isfinite(loss):
      raise NonFiniteLossError(
          f"The loss became {loss} at step {step_no}; the run stopped without saving this state "
          f"(the last good checkpoint is kept). Lower optimizer.lr, set optimizer.clip_norm, or check the data.")
    for k, v in m.items():
      window.setdefault(k, []).append(np.asarray(v, np.float64))
    if window_t is None:  # the first fetched step includes compilation: time from here
      window_t, window_steps = time.time(), 0
      first_step_s = first_step_s or round(time.time() - t_start, 2)
      host_time.update(input=0.0, dispatch=0.0, wait=0.0, steps=0)
      for k in window:
        window[k] = window[k][-1:]
    else:
      window_steps += 1
    return step_no

  def flush_window(step_no):
    nonlocal window_t, window_steps, last_train
    # Ratio metrics come as "sum/<name>" and "count/<name>" pairs (e.g. loss per denoiser, whose
    # examples vary per batch) and are aggregated exactly: Σsum / Σcount over the window.
    # Counters named "<group>/total_<x>" report their last value and "<group>/peak_<x>" the window's
    # maximum (cumulative bytes sent, peak bytes per step); every other metric the window's mean.
    reduce = lambda k, v: float(v[-1]) if "/total_" in k else float(np.max(v)) if "/peak_" in k else float(np.mean(v))
    out = {k: reduce(k, v) for k, v in window.items() if not k.startswith(("sum/", "count/"))}
    for k in [k for k in window if k.startswith("sum/")]:
      den = float(np.sum(window.get("count/" + k[4:], [0.0])))
      if den > 0:
        out[k[4:]] = float(np.sum(window[k])) / den
    now = time.time()
    if window_steps:
      dt = (now - window_t) / window_steps
      out["step_time_s"] = dt
      if host_time["steps"]:
        out["input_time_s"] = host_time["input"] / host_time["steps"]
        out["dispatch_time_s"] = host_time["dispatch"] / host_time["steps"]
        out["device_wait_s"] = host_time["wait"] / host_time["steps"]
      if tokens_per_step:
        out["tokens_per_s"] = tokens_per_step / dt
      if flops_per_step:
        out["tflops_per_device"] = flops_per_step / dt / n_dev / 1e12
        if peak:
          out["mfu"] = flops_per_step / dt / n_dev / peak
    out["tokens_seen"] = tokens_per_step * step_no
    if hasattr(data_iter, "metrics"):  # a stream that reports what it drew (a mixture's realised proportions)
      out.update(data_iter.metrics())
    writer.write(step_no, out)
    writer.progress(step_no, start_step, out)
    last_train = out
    window.clear()
    window_t, window_steps = now, 0
    host_time.update(input=0.0, dispatch=0.0, wait=0.0, steps=0)

  # Time to a target (e.g. `train.target_metric="val_accuracy"`, `train.target_value=0.9`): the first
  # evaluation that reaches it, in steps and in loop seconds *without* the evaluations themselves
  # (selection, compilation and data time included, as the data-selection papers count them).
  target_metric = str(tcfg.get("target_metric", "") or "")
  target_value = float(tcfg.get("target_value", 0.0) or 0.0)
  loop_t0, eval_s = time.time(), 0.0
  time_to_target: dict = {}

  def evaluate(step_no):
    nonlocal eval_s
    t_eval = time.time()
    res = {}
    ctx.step = step_no
    eval_params = method.eval_params(state) if method.eval_params is not None else state.params
    for ev in method.evaluators:
      res.update({f"{k}": v for k, v in ev(eval_params, ctx).items()})
    if res:
      writer.write(step_no, res, prefix="eval/")
      eval_results.update(res)
    eval_s += time.time() - t_eval
    if target_metric and not time_to_target and res.get(target_metric, -math.inf) >= target_value:
      time_to_target.update(metric=target_metric, value=target_value, step=step_no,
                            train_s=round(time.time() - loop_t0 - eval_s, 3))

  last_saved = start_step if resumed else -1

  def save(step_no, force=False):
    nonlocal last_saved
    if checkpointer is not None and step_no != last_saved:
      checkpointer.save(step_no, state, data_iter, config, force=force)
      last_saved = step_no

  step_no = start_step
  stopped_by_signal = False
  with _Preemption() as preempt, mesh_context(mesh, rules):
    while step_no < min(total, stop_at):
      if profile and step_no == profile[0] and workdir and is_main:
        jax.profiler.start_trace(os.path.join(workdir, "profile"))
      t_input = time.perf_counter()
      batch = sharding.host_to_global(next(data_iter), mesh, rules, method.batch_axis)
      host_time["input"] += time.perf_counter() - t_input
      host_time["steps"] += 1
      t_dispatch = time.perf_counter()
      state, m = p_step(state, batch)
      host_time["dispatch"] += time.perf_counter() - t_dispatch
      step_no += 1
      if pending is not None:
        fetch(pending)
      pending = (step_no, m)
      if profile and step_no == profile[-1] and workdir and is_main:
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
      boundary = step_no % log_every == 0 or step_no == total
      due_eval = eval_every and step_no % eval_every == 0
      due_ckpt = (ckpt_every and step_no % ckpt_every == 0) or (
          ckpt_every_s and time.time() - last_ckpt_t > ckpt_every_s)
      if boundary or due_eval or due_ckpt or preempt.requested or step_no == stop_at:
        fetch(pending)  # a checkpoint is only written once its step's loss is known to be finite
        pending = None
        if boundary:
          flush_window(step_no)
      if between_every and method.between and step_no % between_every == 0:
        out = method.between(state, step_no, ctx)
        if isinstance(out, tuple):  # (state, metrics): what the hook did, e.g. a selection's cost
          state, hook_metrics = out
          writer.write(step_no, {k: float(v) for k, v in hook_metrics.items()}, prefix="between/")
        else:
          state = out
      if due_eval:
        evaluate(step_no)
      if due_ckpt:
        save(step_no)
        last_ckpt_t = time.time()
      if preempt.requested:
        save(step_no, force=True)
        stopped_by_signal = True
        break
    if pending is not None:
      fetch(pending)
    if window:
      flush_window(step_no)
    if not stopped_by_signal and step_no >= total and method.evaluators and not (eval_every and step_no % eval_every == 0):
      evaluate(step_no)
    if checkpointer is not None and not stopped_by_signal:
      save(step_no, force=True)
  if checkpointer is not None:
    checkpointer.close()
  writer.close()

  summary = {
      "method": config.method, "stage": stage_name, "step": step_no, "total_steps": total,
      "params": n_params, "opt_state_bytes": opt_state_bytes, "tokens_seen": tokens_per_step * step_no,
      "wall_s": round(time.time() - t_start, 2), "first_step_s": first_step_s, "preempted": stopped_by_signal,
      "train": last_train, "eval": eval_results,
      "workdir": workdir, "metrics_file": os.path.join(workdir, "metrics.jsonl") if workdir else None,
      "checkpoints": os.path.join(workdir, "checkpoints") if workdir else None,
      "history": writer.history,
  }
  if target_metric:
    summary["time_to_target"] = time_to_target or {"metric": target_metric, "value": target_value, "step": None}
  if hasattr(data_iter, "summary"):  # a selection stream: what it selected and what selecting cost
    summary["data"] = data_iter.summary()
  if workdir and is_main:
    with open(os.path.join(workdir, "summary.json"), "w") as f:
      json.dump({k: v for k, v in summary.items() if k not in ("history", "final_params")}, f, indent=1, default=str)
  if is_main and tcfg.get("progress", True):
    print_summary(summary, method.summary_keys)
  summary["final_params"] = state.params  # in memory only (notebooks, stages); the checkpoint is the record
  if stopped_by_signal:
    print(f"paperjax: stopped by SIGTERM at step {step_no}; checkpoint saved. Run the same command to resume.", flush=True)
  return summary


def _prepare_workdir(workdir: str, restart: bool) -> None:
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise PermissionError(f"Cannot create the workdir {workdir!r} ({e.strerror}); choose a --workdir you can write to.") from None
  if not os.access(workdir, os.W_OK):
    raise PermissionError(f"The workdir {workdir!r} is not writable; choose a --workdir you can write to.")
  ck = os.path.join(workdir, "checkpoints")
  if restart and jax.process_index() == 0 and os.path.isdir(ck) and os.listdir(ck):
    aside = f"{ck}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    os.rename(ck, aside)  # never deleted: the old run stays on disk
    print(f"paperjax: --restart: moved the previous checkpoints aside to {aside}", flush=True)
  if restart and jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices("paperjax-restart")


def print_summary(summary: dict, keys=()) -> None:
  tr, ev = summary.get("train", {}), summary.get("eval", {})
  lines = [f"── summary: {summary['method']}{'/' + summary['stage'] if summary.get('stage') else ''} ──",
           f"steps {summary['step']}/{summary['total_steps']}   params {summary['params'] / 1e6:.2f}M   "
           f"tokens seen {summary['tokens_seen']:,}   wall {summary['wall_s']:.1f}s"
           + (f" (first step {summary['first_step_s']:.1f}s)" if summary.get("first_step_s") else "")
           + (f"   optimizer state {summary['opt_state_bytes'] / 2**20:,.2f} MiB" if "opt_state_bytes" in summary else "")]
  if tr:
    extra = f"   tokens/s {tr['tokens_per_s']:,.0f}" if "tokens_per_s" in tr else ""
    lines.append(f"final train loss {tr.get('loss', float('nan')):.4f}{extra}")
  for k in [k for k in keys if k in tr and k != "loss"]:  # train metrics a method asks to show (bytes sent, ...)
    lines.append(f"  train/{k:<39} {tr[k]:,.6g}")
  for k in sorted(k for k in tr if k.startswith("loss/") and k not in keys):  # per-task train loss (last window)
    lines.append(f"  train/{k:<39} {tr[k]:.4f}")
  ordered = [k for k in keys if k in ev] + sorted(k for k in ev if k not in keys)
  for k in ordered:
    v = ev[k]
    lines.append(f"  eval/{k:<40} {v:.4f}" if isinstance(v, float) else f"  eval/{k:<40} {v}")
  tt = summary.get("time_to_target")
  if tt:
    lines.append(f"time to {tt['metric']} ≥ {tt['value']:g}: " + (f"step {tt['step']}, {tt['train_s']:.1f}s (evaluation excluded)"
                                                               if tt.get("step") is not None else "not reached"))
  if summary.get("workdir"):
    lines.append(f"metrics: {summary['metrics_file']}  (TensorBoard: {os.path.join(summary['workdir'], 'tb')})")
    lines.append(f"checkpoints: {summary['checkpoints']}")
  print("\n".join(lines), flush=True)
