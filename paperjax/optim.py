"""The optimizer from the config: schedule, clipping, weight-decay mask, optional per-group rules.

config.optimizer fields:
  name          adamw | adafactor | sgd | lion | adam | any `optax.<name>` taking learning_rate
  lr, warmup_steps, schedule (constant | cosine | linear | rsqrt), end_lr_frac
  b1, b2, eps, weight_decay, momentum, nesterov, clip_norm (0 = off)
  decay_mask    "no_1d": no weight decay on vectors (norm scales, biases) — the usual choice
Papers that invent an optimizer register it by import path: name="paperjax.papers.fira.method:fira".
"""

from __future__ import annotations

import importlib

import jax
import optax


def schedule(opt, total_steps: int) -> optax.Schedule:
  lr, warm = float(opt.lr), int(opt.get("warmup_steps", 0))
  kind = opt.get("schedule", "cosine")
  end = lr * float(opt.get("end_lr_frac", 0.1))
  decay_steps = max(1, total_steps - warm)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, decay_steps, alpha=end / lr if lr else 0.0)
  elif kind == "linear":
    main = optax.linear_schedule(lr, end, decay_steps)
  elif kind == "rsqrt":
    main = lambda s: lr * jax.lax.rsqrt(1.0 + s / max(1, warm))
  else:
    raise ValueError(f"optimizer.schedule={kind!r} is unknown; use constant, cosine, linear or rsqrt.")
  if warm:
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warm), main], [warm])
  return main


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def build(opt, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(opt, total_steps)
  name = opt.get("name", "adamw")
  wd = float(opt.get("weight_decay", 0.0))
  if ":" in name:  # a paper's own transformation, resolved by import path
    module, attr = name.split(":")
    tx = getattr(importlib.import_module(module), attr)(lr, opt)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.95), eps=opt.get("eps", 1e-8),
                     weight_decay=wd, mask=_decay_mask)
  elif name == "adam":
    tx = optax.adam(lr, b1=opt.get("b1", 0.9), b2=opt.get("b2", 0.999), eps=opt.get("eps", 1e-8))
  elif name == "adafactor":
    tx = optax.adafactor(lr, weight_decay_rate=wd or None)
  elif name == "sgd":
    tx = optax.sgd(lr, momentum=opt.get("momentum", 0.0) or None, nesterov=bool(opt.get("nesterov", False)))
  elif hasattr(optax, name):
    tx = getattr(optax, name)(lr)
  else:
    raise ValueError(f"optimizer.name={name!r} is not an optax optimizer; use adamw, adam, adafactor, sgd, "
                     "another optax name, or 'module:function' for a paper's own.")
  clip = float(opt.get("clip_norm", 0.0))
  if clip:
    tx = optax.chain(optax.clip_by_global_norm(clip), tx)
  return tx, lr
