"""SLA: Self-supervised Label Augmentation via Input Transformations (Lee, Hwang, Shin; ICML 2020).
https://arxiv.org/abs/1910.05872

Rule. Transformations t_1..t_M (here rotations by j·360°/M; t_1 = identity) and one head with N·M
outputs over *joint* labels (y, j) ↦ y·M + j:
    L_SLA = (1/BM) Σ_b Σ_j CE(z(t_j(x_b)), y_b·M + j)
Aggregated inference: P_agg(y|x) = softmax_y( (1/M) Σ_j z_{y·M+j}(t_j(x)) ).
SLA+SD adds a single N-way head u on the untransformed image, distilled from the aggregate:
    L = L_SLA + CE(u(x), y) + T²·KL( softmax(sg(agg)/T) ‖ softmax(u(x)/T) ),  T = 1,
and predicts with u in one pass. With M = 1 the joint label is y and L_SLA is plain CE.

Defaults and their source (hankook/SLA `trainers.py`, verified: `create_sla_trainer` — joint labels
`labels*n+i`, aggregation `preds[i::n, i::n]/n`; `create_sla_sd_trainer` — single head on the
identity copy, `joint + single + T²·KL(agg.detach)`, T = 1; `create_supervised_aug_trainer(joint=False)`
— the multi-task baseline CE(class head, y) on every copy + β·CE(rotation head, j), β = 1).

Modes (`sla.mode`): ce (baseline), sla, sla_sd, mt (multi-task). The transformed copies are made
inside the step (`jnp.rot90` on the batch, interleaved b·M + j as in the official code).

Deviations. A GroupNorm CNN on 8x8 digits (the paper: ResNet-32/110 on CIFAR); Adam, ±1 px shift
as the base augmentation; rotations only (the paper also combines colour permutations, M = 24).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax.data import augment, sources
from paperjax.evals import classification
from paperjax.method import Method, PaperInfo
from paperjax.models import heads, vision

PAPER = PaperInfo(slug="sla", title="Self-supervised Label Augmentation via Input Transformations",
                  authors="Lee, Hwang, Shin", year=2020, url="https://arxiv.org/abs/1910.05872",
                  family="self-supervised/contrastive")
MODES = ("ce", "sla", "sla_sd", "mt")


def rotations(x_BHWC, num: int):
  """[B·M, H, W, C]: copy b·M + j is x_b rotated by j·(4/M) quarter turns (M in 1, 2, 4)."""
  if num not in (1, 2, 4):
    raise ValueError(f"sla.num_transforms={num} must be 1, 2 or 4 (rotations by multiples of 90°).")
  return augment.rotation_copies(x_BHWC, num)


def joint_labels(y_B, num: int):
  """y·M + j for copy b·M + j."""
  return (y_B[:, None] * num + jnp.arange(num)[None]).reshape(-1)


def aggregate(joint_logits, num: int):
  """(1/M) Σ_j z_{y·M+j}(t_j(x)): joint logits [B·M, N·M] → aggregated class logits [B, N]."""
  z = joint_logits.reshape(-1, num, joint_logits.shape[-1] // num, num)   # b, copy j, class y, transform j'
  return jnp.mean(jnp.diagonal(z, axis1=1, axis2=3), axis=-1)             # pick j' = j, average over j


class SLAModel(nn.Module):
  model_cfg: dict
  num_classes: int
  num_transforms: int
  mode: str

  @nn.compact
  def __call__(self, x):
    h = vision.image_encoder(self.model_cfg, name="encoder")(x)
    out = {}
    if self.mode in ("sla", "sla_sd"):
      out["joint"] = heads.Linear(self.num_classes * self.num_transforms, name="joint")(h)
    if self.mode in ("ce", "sla_sd", "mt"):
      out["single"] = heads.Linear(self.num_classes, name="single")(h)
    if self.mode == "mt":
      out["transform"] = heads.Linear(self.num_transforms, name="transform")(h)
    return out


def sla_losses(out, y, num: int, mode: str, temperature: float = 1.0, beta: float = 1.0):
  """(loss, metrics) on the outputs for the interleaved copies; `y` are the B original labels."""
  ce = optax.softmax_cross_entropy_with_integer_labels
  if mode == "ce":
    return ce(out["single"], y).mean(), {}
  if mode == "mt":
    cls = ce(out["single"], jnp.repeat(y, num)).mean()
    rot = ce(out["transform"], jnp.tile(jnp.arange(num), y.shape[0])).mean()
    return cls + beta * rot, {"class_loss": cls, "transform_loss": rot}
  joint = ce(out["joint"], joint_labels(y, num)).mean()
  if mode == "sla":
    return joint, {"joint_loss": joint}
  agg = aggregate(out["joint"], num)
  single = out["single"][::num]                       # the identity copy
  s_ce = ce(single, y).mean()
  t = jax.nn.softmax(jax.lax.stop_gradient(agg) / temperature)
  kl = jnp.sum(t * (jnp.log(t + 1e-12) - jax.nn.log_softmax(single / temperature)), -1).mean()
  return joint + s_ce + temperature ** 2 * kl, {"joint_loss": joint, "single_loss": s_ce, "distill_kl": kl}


def predict_logits(model, params, x, num: int, mode: str, which: str):
  """Class logits for evaluation: 'aggregated' (SLA), 'single' (CE / SD / MT head), 'joint_identity'."""
  if which == "aggregated":
    return aggregate(model.apply({"params": params}, rotations(x, num))["joint"], num)
  out = model.apply({"params": params}, x)
  if which == "joint_identity":
    return out["joint"][:, ::num]
  return out["single"]


def make(config, ctx) -> Method:
  s = config.sla
  if s.mode not in MODES:
    raise ValueError(f"sla.mode={s.mode!r} is unknown; use one of {MODES}.")
  M, mode = int(s.num_transforms), s.mode
  model = SLAModel(dict(config.model), int(s.num_classes), M, mode)
  base_aug = augment.named(s.augment)

  def example_fn(ex, rng):
    return {"image": base_aug(augment.as_float_image(ex["image"]), rng), "label": np.int32(ex["label"])}

  def loss(params, batch, rng):
    del rng
    x = rotations(batch["image"], M) if mode != "ce" else batch["image"]
    return sla_losses(model.apply({"params": params}, x), batch["label"], M, mode, float(s.temperature), float(s.beta))

  test = classification.load_arrays(sources.records(config.data.source, config.data.get("eval_split", "validation")),
                                    max_examples=int(config.eval.max_examples))
  bs = int(config.eval.batch_size)
  which = {"ce": ("single",), "sla": ("aggregated", "joint_identity"), "sla_sd": ("single", "aggregated"),
           "mt": ("single",)}[mode]
  names = {"single": "accuracy", "aggregated": "aggregated_accuracy", "joint_identity": "joint_identity_accuracy"}
  evaluators = [classification.Accuracy(names[w], test, jax.jit(lambda p, x, w=w: predict_logits(model, p, x, M, mode, w)),
                                        batch_size=bs) for w in which]
  return Method(init=lambda rng, ex: model.init(rng, rotations(jnp.asarray(ex["image"]), M))["params"], loss=loss,
                example_fn=example_fn, evaluators=evaluators, model=model, summary_keys=tuple(names[w] for w in which))
