"""Dataset Condensation with Contrastive Signals (Lee et al., ICML 2022). https://arxiv.org/abs/2202.02916

The trained "parameters" are the synthetic images S (ipc per class, labels fixed); each train step is
one update of S by gradient matching through a network θ that is freshly initialised every
`outer_loop` steps and trained `inner_loop` SGD steps on S after every update (DC's bi-level loop).

  DC  (Zhao et al. 2021):  L(S) = Σ_c D(∇_θ ℓ(θ; S_c), ∇_θ ℓ(θ; T_c))
  DCC (this paper):         L(S) = D(∇_θ ℓ(θ; S), (1/C) Σ_c ∇_θ ℓ(θ; T_c))

ℓ(θ; S) is the cross-entropy over the *whole* synthetic set in one batch, so the logits of the other
classes (the contrastive signal) enter the match; T_c is a batch of real images of class c.
D(A, B) = Σ_layers Σ_out (1 − cos(A_out, B_out)), per output unit of every weight tensor, biases and
norm parameters ignored (DC's `distance_wb`). Gradients of L reach S through ∇_θ ℓ(θ; S): second order.
Bi-level warm-up: DC is used while outer iteration < `outer_warmup` and inner index < `inner_warmup`,
then DCC.

Defaults and their source. S from real images, SGD on S lr 0.1 momentum 0.5, network SGD lr 0.01,
real batch 256, (outer_loop, inner_loop) = (1, 1) for ipc 1 and (10, 50) for ipc 10 (DC's
`get_loops`), outer_warmup 250 of 1,000 iterations, inner_warmup 10 (official Saehyung-Lee/DCC
`main.py`: `--contrast`, `criterion(output_syn, label_syn)` against the mean of the class-wise real
gradients). Evaluation: fresh networks trained on S alone, test accuracy (the paper: 5–20 nets).

Deviations. Toy scale: a 2-layer 16-channel ConvNet with GroupNorm (groups of 4; DC: 3×128 with
instance norm) on 8x8 digits; 100 outer iterations with a real batch of 128 (2 shared CPU cores), so
the warm-up is scaled to the same quarter (25); for ipc 5 (not in `get_loops`) (outer_loop, inner_loop) = (5, 25); the network's inner SGD has
no momentum; no DSA augmentation; evaluation trains 5 nets × 300 steps of SGD (momentum 0.9) on S.
The real batch is a random (not class-stratified) batch; T_c is its class-c part.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import optim, selection
from paperjax.data import augment
from paperjax.method import Method, PaperInfo
from paperjax.models import vision

PAPER = PaperInfo(slug="dcc_contrastive", title="Dataset Condensation with Contrastive Signals",
                  authors="Lee, Chun, Jung, Yun, Yoon", year=2022, url="https://arxiv.org/abs/2202.02916",
                  family="dataset-distillation/pruning/selection")


# --------------------------------------------------------------------------- the matching losses


def layer_distance(ga, gb) -> jax.Array:
  """DC's D: Σ over weight tensors and their output units of 1 − cos; 1-D leaves (biases, norms) add 0."""
  total = jnp.zeros(())
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    if a.ndim < 2:
      continue
    a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])  # [fan_in, out]: cos per output unit
    cos = jnp.sum(a2 * b2, 0) / (jnp.linalg.norm(a2, axis=0) * jnp.linalg.norm(b2, axis=0) + 1e-6)
    total = total + jnp.sum(1.0 - cos)
  return total


def class_grads(loss_fn, net_params, x, y, num_classes: int):
  """[C]-stacked ∇_θ of the mean loss over the class-c examples of (x, y) (0 where a class is absent)."""
  # One forward pass, one vector-Jacobian product per class (cotangent = the class's mean weights).
  _, vjp = jax.vjp(lambda p: loss_fn(p, x, y), net_params)
  m_CB = (y[None] == jnp.arange(num_classes)[:, None]).astype(jnp.float32)
  return jax.vmap(lambda w: vjp(w)[0])(m_CB / jnp.maximum(m_CB.sum(1, keepdims=True), 1.0))


def dc_loss(loss_fn, net_params, syn_CI, syn_y_CI, real_grads_C):
  """Σ_c D(∇ℓ(S_c), ∇ℓ(T_c)): each class's synthetic images matched alone."""
  def one(x, y, g_real):
    g = jax.grad(lambda p: jnp.mean(loss_fn(p, x, y)))(net_params)
    return layer_distance(g, g_real)
  return jnp.sum(jax.vmap(one)(syn_CI, syn_y_CI, real_grads_C))


def dcc_loss(loss_fn, net_params, syn_CI, syn_y_CI, real_grads_C):
  """D(∇ℓ(S), (1/C) Σ_c ∇ℓ(T_c)): the whole synthetic set in one batch."""
  x = syn_CI.reshape((-1,) + syn_CI.shape[2:])
  g = jax.grad(lambda p: jnp.mean(loss_fn(p, x, syn_y_CI.reshape(-1))))(net_params)
  return layer_distance(g, jax.tree.map(lambda t: t.mean(0), real_grads_C))


# --------------------------------------------------------------------------- data


def texture_bank(shape, seed: int = 0, bank: int = 16) -> np.ndarray:
  """[bank, H, W, C] smooth random patterns (2x2 blocks), independent of any class."""
  H, W, Ch = shape
  rng = np.random.default_rng([seed, 68])
  return rng.uniform(0, 1, (bank, -(-H // 2), -(-W // 2), Ch)).repeat(2, 1).repeat(2, 2)[:, :H, :W].astype(np.float32)


def distract(images: np.ndarray, amplitude: float, seed: int = 0, bank: int = 16) -> np.ndarray:
  """(1 − a)·x + a·texture, the texture drawn per example from `texture_bank`: task-irrelevant signal
  that dominates when a is large (the digest's "fine-grained + distractor" variant)."""
  if not amplitude:
    return images
  tex = texture_bank(images.shape[1:], 0, bank)
  pick = np.random.default_rng([seed, 69, len(images)]).integers(0, bank, len(images))
  return ((1 - amplitude) * images + amplitude * tex[pick]).astype(np.float32)


def _arrays(config, split):
  _, a = selection.train_arrays(config, split)
  split_seed = 0 if split == "train" else 1
  return {"image": distract(a["image"], float(config.dcc.distractor), split_seed), "label": a["label"]}


def real_init(arrays, ipc: int, num_classes: int, seed: int) -> np.ndarray:
  """[C, ipc, H, W, Ch]: ipc random real images per class (DC's `init='real'`)."""
  rng = np.random.default_rng([int(seed), 6868])
  return np.stack([arrays["image"][rng.choice(np.flatnonzero(arrays["label"] == c), ipc, replace=False)]
                   for c in range(num_classes)])


# --------------------------------------------------------------------------- evaluation


def train_on_set(net, images_N, labels_N, test, *, steps: int, lr: float, num_nets: int, seed: int,
                 batch_size: int = 256) -> float:
  """Mean test accuracy of `num_nets` fresh networks trained `steps` full-batch SGD(0.9) steps on the set."""
  tx = optax.sgd(lr, momentum=0.9)
  x, y = jnp.asarray(images_N), jnp.asarray(labels_N)

  def one(rng):
    p = nn.meta.unbox(net.init(rng, x[:1])["params"])
    loss = lambda p_: optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": p_}, x), y).mean()

    def body(carry, _):
      p_, o = carry
      u, o = tx.update(jax.grad(loss)(p_), o, p_)
      return (optax.apply_updates(p_, u), o), None
    (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
    return p

  trained = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), num_nets))
  accs = []
  for i in range(num_nets):
    p = jax.tree.map(lambda t: t[i], trained)
    logits = selection.logits_of(jax.jit(lambda p_, xb: net.apply({"params": p_}, xb)), p, test["image"], batch_size)
    accs.append(float(np.mean(logits.argmax(-1) == test["label"])))
  return float(np.mean(accs))


class SyntheticSetAccuracy:
  """Evaluator: the condensed set trains fresh networks; their mean test accuracy is `accuracy`."""
  name = "synthetic_set_accuracy"

  def __init__(self, net, test, labels_CI, dcfg, seed):
    self.net, self.test, self.labels, self.d, self.seed = net, test, labels_CI, dcfg, seed

  def __call__(self, params, ctx):
    images = np.asarray(params["images"]).reshape((-1,) + params["images"].shape[2:])
    acc = train_on_set(self.net, images, self.labels.reshape(-1), self.test, steps=int(self.d.eval_steps),
                       lr=float(self.d.eval_lr), num_nets=int(self.d.eval_nets), seed=self.seed + 777)
    return {"accuracy": acc}


# --------------------------------------------------------------------------- the method


def make(config, ctx) -> Method:
  d = config.dcc
  C, ipc = int(config.model.get("num_classes", 10)), int(d.ipc)
  if d.rule not in ("dc", "dcc"):
    raise ValueError(f"dcc.rule={d.rule!r} is unknown; use 'dc' (class-wise) or 'dcc' (contrastive).")
  net = vision.Classifier({k: v for k, v in dict(config.model).items() if k != "num_classes"}, C)
  train = _arrays(config, config.data.get("train_split", "train"))
  labels_CI = np.repeat(np.arange(C, dtype=np.int32)[:, None], ipc, axis=1)
  outer_loop, inner_loop = int(d.outer_loop), int(d.inner_loop)
  net_tx = optax.sgd(float(d.net_lr))
  contrast = d.rule == "dcc"

  def ce(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": p}, x), y)

  def fresh_net(rng):
    return nn.meta.unbox(net.init(rng, jnp.zeros((1,) + train["image"].shape[1:]))["params"])

  def init(rng, example):
    del rng, example
    return {"images": jnp.asarray(real_init(train, ipc, C, int(config.seed)))}

  def init_extras(rng, params):
    del params
    return {"net": fresh_net(rng)}

  def step(state, batch, ctx_):
    t = state.step
    it, ol = t // outer_loop, t % outer_loop
    rng = jax.random.fold_in(state.rng, t)
    net_p = jax.lax.cond(ol == 0, lambda: fresh_net(rng), lambda: state.extras["net"])
    real_g = jax.lax.stop_gradient(class_grads(ce, net_p, batch["image"], batch["label"], C))
    labels = jnp.asarray(labels_CI)
    use_dcc = jnp.logical_and(contrast, jnp.logical_or(it >= int(d.outer_warmup), ol >= int(d.inner_warmup)))

    def match(params):
      return jax.lax.cond(use_dcc, lambda s: dcc_loss(ce, net_p, s, labels, real_g),
                          lambda s: dc_loss(ce, net_p, s, labels, real_g), params["images"])
    loss, grads = jax.value_and_grad(match)(state.params)
    new = state.apply_gradients(grads, ctx_.tx)
    # θ ← inner_loop SGD steps on the updated synthetic set (skipped in effect before a fresh θ).
    x = jax.lax.stop_gradient(new.params["images"]).reshape((-1,) + train["image"].shape[1:])
    y = labels.reshape(-1)

    def inner(_, carry):
      p, o = carry
      u, o = net_tx.update(jax.grad(lambda p_: ce(p_, x, y).mean())(p), o, p)
      return optax.apply_updates(p, u), o
    net_p, _ = jax.lax.fori_loop(0, inner_loop, inner, (net_p, net_tx.init(net_p)))
    new = new.replace(extras={**state.extras, "net": net_p})
    return new, {"loss": loss, "uses_dcc": use_dcc.astype(jnp.float32), "grad_norm": optim.global_norm(grads)}

  evaluators = []
  if not ctx.abstract:
    test = _arrays(config, config.data.get("eval_split", "validation"))
    evaluators = [SyntheticSetAccuracy(net, test, labels_CI, d, int(config.seed))]
  return Method(init=init, loss=lambda p, b, r: (jnp.zeros(()), {}), step=step, init_extras=init_extras,
                example_fn=_example_fn(float(d.distractor)),
                evaluators=evaluators, model=net, summary_keys=("accuracy",))


def _example_fn(amplitude: float):
  def fn(ex, rng):
    img = augment.as_float_image(ex["image"])
    if amplitude:  # a texture per example, drawn by the pipeline's (seeded, resumable) rng
      img = (1 - amplitude) * img + amplitude * texture_bank(img.shape)[rng.integers(0, 16)]
    return {"image": img.astype(np.float32), "label": np.int32(ex["label"])}
  return fn
