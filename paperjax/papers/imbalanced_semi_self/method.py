"""Rethinking the Value of Labels for Improving Class-Imbalanced Learning (Yang & Xu, NeurIPS 2020).
https://arxiv.org/abs/2006.07529

Two routes, each a multi-stage run of the shared loop (`config.stages`):

  semi-supervised  (1) `base`: train f₀ on the long-tailed labelled set D_L (n_c = ⌊n_max·ρ^(−c/(C−1))⌋);
                   (2) `pseudo`: pseudo-label an unlabelled set D_U with ŷ = argmax f₀(x) (f₀ frozen in
                   `TrainState.extras["teacher"]`, applied to the un-augmented image, so the label of
                   an example never changes — the same as labelling D_U once), and train a *new*
                   model from scratch on D_L ∪ D_U with plain CE.
                   |D_U| = size_factor·|D_L| with its own imbalance ρ_U (the official
                   `get_img_num_per_cls_unlabeled`, `paperjax.data.subsets`).
  self-supervised  (1) `rotation`: self-supervised pretraining (SSP) on D_L's images without labels —
                   predict which of 4 rotations was applied (RotNet; `pretrain_rot.py` for CIFAR-LT);
                   (2) `train`: ordinary CE on D_L initialised from the SSP backbone (new head).

Defaults and their source (YyzHarry/imbalanced-semi-self, verified): exponential profile with
`imb_factor` = 1/ρ, `unlabel_size_factor = 5`, unlabelled profile rescaled to the total,
pseudo-labels from a model trained on D_L, retraining from scratch on the union; rotation SSP on
the labelled long-tailed images. Paper: SGD lr 0.1, wd 2e-4, batch 256, 200 epochs, ρ ∈ {10, 50, 100}.

Deviations. Digits: n_max = 40, ρ = 20, size factor 2 (not 5): digits has ~140 train images per
class, and a 5× unlabelled set with ρ_U = ρ needs more head-class images than exist (the subset
builder refuses such requests). D_U is drawn from the digits train split outside D_L (the paper:
80M TinyImages / SVHN-extra). Adam and a GroupNorm CNN instead of SGD and ResNet-32. Plain CE is
the "any LT loss" in both routes (the paper also reports LDAM-DRW, Focal).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import step as step_lib
from paperjax.data import augment, sources
from paperjax.evals import classification
from paperjax.method import Method, PaperInfo, copy_matching
from paperjax.models import vision

PAPER = PaperInfo(slug="imbalanced_semi_self", title="Rethinking the Value of Labels for Improving Class-Imbalanced Learning",
                  authors="Yang, Xu", year=2020, url="https://arxiv.org/abs/2006.07529", family="semi-supervised")
STAGES = ("base", "pseudo", "rotation", "train")
NUM_ROTATIONS = 4


def pseudo_targets(labels, teacher_logits):
  """Ground-truth label where there is one (≥ 0), the frozen teacher's argmax where it is −1."""
  return jnp.where(labels >= 0, labels, jnp.argmax(jax.lax.stop_gradient(teacher_logits), axis=-1))


def rotation_task(images):
  """All 4 rotations of every image, with their rotation index as the label."""
  x = augment.rotation_copies(images, NUM_ROTATIONS)
  return x, jnp.tile(jnp.arange(NUM_ROTATIONS), images.shape[0])


def make(config, ctx) -> Method:
  s = config.iss
  if s.stage not in STAGES:
    raise ValueError(f"iss.stage={s.stage!r} is unknown; use one of {STAGES}.")
  C = int(s.num_classes)
  model = vision.Classifier(dict(config.model), C)
  rot_model = vision.Classifier(dict(config.model), NUM_ROTATIONS)
  aug = augment.named(s.augment)

  def example_fn(ex, rng):
    clean = augment.as_float_image(ex["image"])
    out = {"image": aug(clean, rng)}
    if "label" in ex:
      out["label"] = np.int32(ex["label"])
    if s.stage == "pseudo":
      out["clean_image"] = clean
    return out

  bs, n = int(config.eval.batch_size), int(config.eval.max_examples)
  test = classification.load_arrays(sources.records(config.data.source, config.data.get("eval_split", "validation")),
                                    max_examples=n, transform=lambda r: {**r, "image": augment.as_float_image(r["image"])})

  if s.stage == "rotation":
    def loss(params, batch, rng):
      x, r = rotation_task(batch["image"])
      logits = rot_model.apply({"params": params}, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, r).mean(), {
          "rotation_accuracy": jnp.mean(logits.argmax(-1) == r)}

    rot_eval = classification.LinearProbe(
        "linear_probe", classification.load_arrays(sources.records(config.data.source, "train"), max_examples=n),
        test, jax.jit(lambda p, x: rot_model.apply({"params": p}, x, method=vision.Classifier.features)), batch_size=bs)
    return Method(init=lambda rng, ex: rot_model.init(rng, jnp.asarray(ex["image"]))["params"], loss=loss,
                  example_fn=example_fn, evaluators=[rot_eval], model=rot_model, summary_keys=("linear_probe",))

  logits_fn = jax.jit(lambda p, x: model.apply({"params": p}, x))
  evaluators = [classification.Accuracy("accuracy", test, logits_fn, batch_size=bs, per_class=True)]
  init = lambda rng, ex: model.init(rng, jnp.asarray(ex["image"]))["params"]

  if s.stage in ("base", "train"):
    def loss(params, batch, rng):
      logits = model.apply({"params": params}, batch["image"])
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), {}

    def from_previous(prev, params, extras):   # SSP → train: the backbone carries over, the head is new
      params, copied = copy_matching(prev, params, ("encoder",))
      if not copied:
        raise ValueError("The train stage found no 'encoder' parameters in the previous stage to start from.")
      return params, extras

    return Method(init=init, loss=loss, example_fn=example_fn, evaluators=evaluators,
                  from_previous=from_previous if s.stage == "train" else None, model=model,
                  summary_keys=("accuracy_balanced", "accuracy"))

  # pseudo: a fresh model on D_L ∪ D_U, unlabelled examples labelled by the frozen base model.
  def init_extras(rng, params):
    return {"teacher": jax.tree.map(jnp.zeros_like, params)}

  def loss_fn(params, batch, rng, state):
    teacher_logits = model.apply({"params": state.extras["teacher"]}, batch["clean_image"])
    y = pseudo_targets(batch["label"], teacher_logits)
    logits = model.apply({"params": params}, batch["image"])
    unl = (batch["label"] < 0).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), (
        {"unlabeled_fraction": unl.mean()}, None)

  def from_previous(prev, params, extras):
    return params, {**extras, "teacher": prev}    # retrain from scratch; f₀ only labels

  return Method(init=init, loss=loss_fn, step=step_lib.stateful_sgd_step(loss_fn), init_extras=init_extras,
                example_fn=example_fn, evaluators=evaluators, from_previous=from_previous, model=model,
                summary_keys=("accuracy_balanced", "accuracy"))
