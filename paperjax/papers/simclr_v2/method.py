"""SimCLRv2: Big Self-Supervised Models are Strong Semi-Supervised Learners (Chen et al., NeurIPS 2020).
https://arxiv.org/abs/2006.10029

The recipe is three stages of one run (`config.stages`, each stage's parameters handed to the next
through `from_previous`):

  pretrain  NT-Xent on two augmented views of every (unlabelled) image, through a 3-layer
            projection head g:  ℓ(i,j) = −log exp(sim(z_i,z_j)/τ) / Σ_{k≠i} exp(sim(z_i,z_k)/τ),
            z = g(f(x)), averaged over the 2N views (losses_contrastive.nt_xent), τ = 0.1.
  finetune  supervised CE on the labelled fraction, starting from the *first layer of the projection
            head* (`ft_proj_selector=1`): the classifier sits on relu(norm(W₁ f(x))), and f and W₁
            come from pretraining; the linear classifier is new.
  distill   a (smaller) student trained on the unlabelled images only with
            L = −Σ_x Σ_y P_T(y|x; τ) log P_S(y|x; τ), τ = 1; the fine-tuned teacher is frozen in
            `TrainState.extras["teacher"]` (losses_contrastive.soft_target_cross_entropy).

Defaults and their source. τ = 0.1, 3-layer head, fine-tune from head layer 1, distillation τ = 1
(paper §2 and google-research/simclr `tf2/run.py`: `temperature`, `num_proj_layers=3`,
`ft_proj_selector`); LARS, lr 0.075·√B, weight decay 1e-4, batch 4096 (tf2/README) in the
imagenet preset. "Bigger" = width multiplier (the paper: ResNet-152 3× with SK).

Deviations. LayerNorm in the projection head and a GroupNorm CNN backbone instead of BatchNorm (no
batch statistics in the train state; the paper's BN head matters little at this scale); the loss
is the paper's mean over 2N views (the official code sums the two directions, a factor 2 in the
gradient); digits-sized augmentation (crop 0.6–1, ±1 px shift, brightness/contrast, noise; no
flip or blur); no MoCo memory (the paper finds it helps little with a large batch); the
distillation stage uses the unlabelled images only (the paper's main setting), no labelled CE.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import losses_contrastive as lc
from paperjax import step as step_lib
from paperjax.data import augment, sources
from paperjax.evals import classification
from paperjax.method import Method, PaperInfo, copy_matching
from paperjax.models import heads, vision

PAPER = PaperInfo(slug="simclr_v2", title="Big Self-Supervised Models are Strong Semi-Supervised Learners",
                  authors="Chen, Kornblith, Swersky, Norouzi, Hinton", year=2020, url="https://arxiv.org/abs/2006.10029",
                  family="semi-supervised")
STAGES = ("pretrain", "finetune", "distill")


def head_dims(features_dim: int, num_layers: int, out_dim: int) -> tuple[int, ...]:
  """SimCLRv2's head: hidden layers as wide as the backbone's output, then the output dimension."""
  return (features_dim,) * (num_layers - 1) + (out_dim,)


class PretrainModel(nn.Module):
  model_cfg: dict
  num_proj_layers: int = 3
  proj_dim: int = 64

  def setup(self):
    self.encoder = vision.image_encoder(self.model_cfg)
    self.proj = heads.ProjectionHead(head_dims(self.encoder.features_dim, self.num_proj_layers, self.proj_dim))

  def features(self, x):
    return self.encoder(x)

  def __call__(self, x):
    return self.proj(self.encoder(x))[-1]


class FinetuneModel(nn.Module):
  """Backbone + the first `ft_layer` layers of the projection head (same names as in pretraining,
  each followed by norm + ReLU) + a new linear classifier."""
  model_cfg: dict
  num_classes: int
  ft_layer: int = 1
  num_proj_layers: int = 3
  proj_dim: int = 64

  def setup(self):
    self.encoder = vision.image_encoder(self.model_cfg)
    dims = head_dims(self.encoder.features_dim, self.num_proj_layers, self.proj_dim)[:self.ft_layer]
    self.proj = heads.ProjectionHead(dims, activate_last=True) if self.ft_layer else None
    self.classifier = heads.Linear(self.num_classes)

  def features(self, x):
    h = self.encoder(x)
    return self.proj(h)[-1] if self.proj is not None else h

  def __call__(self, x):
    return self.classifier(self.features(x))


def _models(config):
  s = config.simclr
  kw = dict(num_proj_layers=int(s.num_proj_layers), proj_dim=int(s.proj_dim))
  pre = PretrainModel(dict(config.model), **kw)
  ft = FinetuneModel(dict(config.model), int(s.num_classes), int(s.ft_layer), **kw)
  teacher = FinetuneModel({**dict(config.model), "width": float(s.teacher_width)}, int(s.num_classes),
                          int(s.ft_layer), **kw)
  return pre, ft, teacher


def example_fn_for(config):
  s = config.simclr
  size = int(s.image_size) or None
  if s.stage == "pretrain":
    aug = augment.named(s.augment)

    def fn(ex, rng):
      img = augment.as_float_image(ex["image"], size)
      return {"view1": aug(img, rng), "view2": aug(img, rng)}
    return fn
  aug = augment.named(s.ft_augment)

  def fn(ex, rng):
    out = {"image": aug(augment.as_float_image(ex["image"], size), rng)}
    if "label" in ex:
      out["label"] = np.int32(ex["label"])
    return out
  return fn


def make(config, ctx) -> Method:
  s = config.simclr
  if s.stage not in STAGES:
    raise ValueError(f"simclr.stage={s.stage!r} is unknown; use one of {STAGES}.")
  pre, ft, teacher = _models(config)
  tau, t_distill = float(s.temperature), float(s.distill_temperature)
  evaluators = _evaluators(config, pre, ft, ctx)

  if s.stage == "pretrain":
    def loss(params, batch, rng):
      z1 = pre.apply({"params": params}, batch["view1"])
      z2 = pre.apply({"params": params}, batch["view2"])
      return lc.nt_xent(z1, z2, tau), {}

    return Method(init=lambda rng, ex: pre.init(rng, jnp.asarray(ex["view1"]))["params"], loss=loss,
                  example_fn=example_fn_for(config), evaluators=evaluators, model=pre,
                  summary_keys=("linear_probe", "knn"))

  if s.stage == "finetune":
    def loss(params, batch, rng):
      logits = ft.apply({"params": params}, batch["image"])
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
      return ce, {"train_accuracy": jnp.mean(logits.argmax(-1) == batch["label"])}

    def from_previous(prev, params, extras):
      # Backbone and head layers < ft_layer from pretraining; the classifier stays new.
      keep = ("encoder",) + tuple(f"proj/{n}{i}" for i in range(int(s.ft_layer)) for n in ("layer", "norm"))
      params, _ = copy_matching(prev, params, keep)
      return params, extras

    return Method(init=lambda rng, ex: ft.init(rng, jnp.asarray(ex["image"]))["params"], loss=loss,
                  example_fn=example_fn_for(config), evaluators=evaluators, from_previous=from_previous, model=ft,
                  summary_keys=("accuracy",))

  # distill: the student is this stage's model (config.model), the teacher the previous stage's.
  def init_extras(rng, params):
    return {"teacher": teacher.init(rng, jnp.zeros((1,) + _image_shape(config)))["params"]}

  def loss_fn(params, batch, rng, state):
    t_logits = teacher.apply({"params": state.extras["teacher"]}, batch["image"])
    s_logits = ft.apply({"params": params}, batch["image"])
    value = lc.soft_target_cross_entropy(s_logits, t_logits, t_distill).mean()
    return value, ({"teacher_agreement": jnp.mean(s_logits.argmax(-1) == t_logits.argmax(-1))}, None)

  def from_previous(prev, params, extras):
    if jax.tree.structure(prev) != jax.tree.structure(extras["teacher"]):
      raise ValueError("The distill stage's teacher must be the fine-tuned model of the previous stage "
                       "(simclr.teacher_width must equal that stage's model.width).")
    return params, {**extras, "teacher": prev}

  return Method(init=lambda rng, ex: ft.init(rng, jnp.asarray(ex["image"]))["params"], loss=loss_fn,
                step=step_lib.stateful_sgd_step(loss_fn), init_extras=init_extras, example_fn=example_fn_for(config),
                evaluators=evaluators, from_previous=from_previous, model=ft, summary_keys=("accuracy",))


def _image_shape(config) -> tuple[int, ...]:
  size = int(config.simclr.image_size)
  if size:
    return (size, size, int(config.simclr.channels))
  return tuple(np.asarray(sources.records(config.data.source, "validation")[0]["image"]).shape)


def _evaluators(config, pre, ft, ctx):
  """Pretraining: linear probe and kNN on frozen features (all train labels → validation).
  Fine-tune / distill: validation accuracy."""
  size = int(config.simclr.image_size) or None
  prep = lambda r: {**r, "image": augment.as_float_image(r["image"], size)}
  n, bs = int(config.eval.max_examples), int(config.eval.batch_size)
  test = classification.load_arrays(sources.records(config.data.source, config.data.get("eval_split", "validation")),
                                     max_examples=n, transform=prep)
  if config.simclr.stage == "pretrain":
    train = classification.load_arrays(sources.records(config.data.source, "train"), max_examples=n, transform=prep)
    feats = jax.jit(lambda p, x: pre.apply({"params": p}, x, method=PretrainModel.features))
    return [classification.LinearProbe("linear_probe", train, test, feats, batch_size=bs),
            classification.KNN("knn", train, test, feats, batch_size=bs)]
  logits = jax.jit(lambda p, x: ft.apply({"params": p}, x))
  return [classification.Accuracy("accuracy", test, logits, batch_size=bs)]
