"""The optimizer from the config: schedule, clipping, weight-decay mask, optional per-group rules.

config.optimizer fields:
  name          adamw | adafactor | sgd | lion | adam | any `optax.<name>` taking learning_rate
  lr, warmup_steps, schedule (constant | cosine | linear | rsqrt), end_lr_frac
  b1, b2, eps, weight_decay, momentum, nesterov, clip_norm (0 = off)
  decay_mask    "no_1d": no weight decay on vectors (norm scales, biases) — the usual choice
Papers that invent an optimizer name it by import path: name="paperjax.papers.fira.method:fira" calls
`fira(lr_schedule, config.optimizer)`, which returns an optax GradientTransformation (updates already
scaled by -lr). Optimizers for weight matrices only (GaLore, Fira, ...) route with `route_matrices`:
`matrix_labels` marks every kernel (a leaf named "kernel" with ndim ≥ 2) "matrix", the rest "other".
`state_bytes(opt_state)` is the optimizer state's size; the trainer reports it for every run.
"""

from __future__ import annotations

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


def matrix_labels(params):
  """"matrix" for weight kernels (leaves named `kernel` with ndim ≥ 2: dense and attention projections),
  "other" for everything else (embeddings, norm scales, biases) — GaLore/Fira's routing."""
  def label(path, x):
    last = path[-1] if path else None
    name = str(getattr(last, "key", getattr(last, "name", last)))
    return "matrix" if name == "kernel" and jax.numpy.ndim(x) >= 2 else "other"
  return jax.tree_util.tree_map_with_path(label, params)


def as_matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
  """The (rows, cols) view of a kernel: split its axes where rows × cols is closest to square
  (attention's [d, heads, head_dim] → [d, heads·head_dim]; [heads, head_dim, d] → [heads·head_dim, d])."""
  import math  # pylint: disable=g-import-not-at-top
  if len(shape) == 2:
    return int(shape[0]), int(shape[1])
  splits = [(math.prod(shape[:i]), math.prod(shape[i:])) for i in range(1, len(shape))]
  return min(splits, key=lambda mn: abs(math.log(mn[0] / mn[1])))


def route_matrices(matrix_tx: optax.GradientTransformation,
                   other_tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`matrix_tx` on weight kernels, `other_tx` on the rest (optax.multi_transform over `matrix_labels`)."""
  return optax.multi_transform({"matrix": matrix_tx, "other": other_tx}, matrix_labels)


def state_bytes(opt_state) -> int:
  """Bytes of an optimizer state (or its abstract shapes): Σ size × itemsize over its array leaves."""
  import math  # pylint: disable=g-import-not-at-top
  return int(sum(math.prod(x.shape) * jax.numpy.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(opt_state) if hasattr(x, "shape")))


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim > 1, params)


def build(opt, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  lr = schedule(opt, total_steps)
  name = opt.get("name", "adamw")
  wd = float(opt.get("weight_decay", 0.0))
  if ":" in name:  # a paper's own transformation, resolved by import path
    from paperjax import registry  # pylint: disable=g-import-not-at-top
    try:
      make = registry.resolve(name)
    except (ImportError, AttributeError) as e:
      raise ValueError(f"optimizer.name={name!r} cannot be imported ({e}); give 'package.module:function', e.g. "
                       "'paperjax.papers.fira.method:fira'.") from None
    tx = make(lr, opt)
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
