"""LOOK: Rethinking Supervised Pre-training for Better Downstream Transferring (Feng, Jiang, Tang,
Jin, Gao; ICLR 2022). https://arxiv.org/abs/2110.06014

Rule. Replace cross-entropy with a leave-one-out k-nearest-neighbour loss against a memory of the
whole training set. With z_i the normalised embedding of example i (backbone + projection MLP),
v_j the memory entry of example j, N_k(i) the k most similar entries *excluding i*:
    p_i = Σ_{j∈N_k(i), y_j=y_i} exp(z_i·v_j/τ) / Σ_{j∈N_k(i)} exp(z_i·v_j/τ),   L = −(1/B) Σ_i log p_i
Only most neighbours need to share i's label, so a class may stay multi-modal (its sub-classes are
not collapsed), which is what transfers to finer downstream labels.
Memory: v_i ← normalise(m·v_i + (1−m)·z_i) for the batch's indices after each step (the pipeline
emits dataset indices, `data.subset.with_index`); the memory lives in `TrainState.extras` and is
checkpointed with the model. No gradient flows into the memory.

Defaults. k, τ and the memory momentum could not be verified (no official code; the paper's values
were not readable here): k = 20, τ = 0.1, m = 0.5 (Wu et al. 2018's memory-bank momentum) are our
choices for the toy, marked as such. p_i is floored at 1e-6 when no neighbour shares the label
(the loss is then log 1e6 with no gradient through that term).

Deviations. A GroupNorm CNN on 8x8 digits with coarse super-classes instead of ResNet-50 on
ImageNet; the memory starts from random unit vectors (one epoch is 23 steps here, so it is filled
with real embeddings early). The baseline (`look.mode="ce"`) is the same backbone with a linear
head trained by cross-entropy on the same coarse labels.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import losses_contrastive as lc
from paperjax import step as step_lib
from paperjax.data import augment, sources, subsets
from paperjax.evals import classification
from paperjax.method import Method, PaperInfo
from paperjax.models import heads, vision

PAPER = PaperInfo(slug="look", title="Rethinking Supervised Pre-training for Better Downstream Transferring",
                  authors="Feng, Jiang, Tang, Jin, Gao", year=2022, url="https://arxiv.org/abs/2110.06014",
                  family="other (supervised pretraining)")
MODES = ("look", "ce")
MIN_P = 1e-6


class LookModel(nn.Module):
  model_cfg: dict
  proj_dims: tuple
  num_classes: int

  def setup(self):
    self.encoder = vision.image_encoder(self.model_cfg)
    self.proj = heads.ProjectionHead(tuple(self.proj_dims), norm=False)
    self.classifier = heads.Linear(self.num_classes)

  def features(self, x):
    return self.encoder(x)

  def embed(self, x):
    return lc.l2_normalize(self.proj(self.encoder(x))[-1])

  def __call__(self, x):
    h = self.encoder(x)
    return lc.l2_normalize(self.proj(h)[-1]), self.classifier(h)


def look_loss(z_BD, labels_B, index_B, bank_ND, bank_labels_N, k: int, temperature: float):
  """(mean −log p_i, p_i) of the leave-one-out kNN rule; the memory is a constant."""
  bank = jax.lax.stop_gradient(bank_ND)
  sims = z_BD @ bank.T / temperature                                       # B × N
  own = jnp.arange(bank.shape[0])[None, :] == index_B[:, None]
  sims = jnp.where(own, -jnp.inf, sims)                                    # leave i out
  top, idx = jax.lax.top_k(sims, k)                                        # B × k
  same = bank_labels_N[idx] == labels_B[:, None]
  log_den = jax.nn.logsumexp(top, axis=-1)
  log_num = jax.nn.logsumexp(jnp.where(same, top, -jnp.inf), axis=-1)
  log_p = jnp.maximum(log_num - log_den, jnp.log(MIN_P))
  return -jnp.mean(log_p), jnp.exp(log_p)


def update_memory(bank_ND, index_B, z_BD, momentum: float):
  """v_i ← normalise(m·v_i + (1−m)·z_i) at the batch's indices; every other entry untouched."""
  new = lc.l2_normalize(momentum * bank_ND[index_B] + (1.0 - momentum) * jax.lax.stop_gradient(z_BD))
  return bank_ND.at[index_B].set(new)


def coarse_labels(fine, mapping) -> np.ndarray:
  table = np.zeros(max(max(g) for g in mapping) + 1, np.int32)
  for c, group in enumerate(mapping):
    table[list(group)] = c
  return table[np.asarray(fine)]


def make(config, ctx) -> Method:
  s = config.look
  if s.mode not in MODES:
    raise ValueError(f"look.mode={s.mode!r} is unknown; use one of {MODES}.")
  mapping = [tuple(g) for g in s.coarse_classes]
  C = len(mapping)
  model = LookModel(dict(config.model), tuple(s.proj_dims), C)
  train_src = sources.records(config.data.source, "train")
  view = subsets.apply(train_src, {**dict(config.data.subset), "with_index": True})
  N = len(view)
  bank_labels = coarse_labels([int(view[i]["label"]) for i in range(N)], mapping)
  k, tau, mom = int(s.k), float(s.temperature), float(s.momentum)
  if k >= N:
    raise ValueError(f"look.k={k} must be smaller than the {N} training examples.")
  aug = augment.named(s.augment)

  def example_fn(ex, rng):
    if "index" not in ex:
      raise ValueError("LOOK needs dataset indices in its batches; set data.subset.with_index=True.")
    return {"image": aug(augment.as_float_image(ex["image"]), rng),
            "label": np.int32(coarse_labels([int(ex["label"])], mapping)[0]), "index": np.int32(ex["index"])}

  def init_extras(rng, params):
    d = int(s.proj_dims[-1])
    return {"bank": lc.l2_normalize(jax.random.normal(rng, (N, d))), "bank_labels": jnp.asarray(bank_labels)}

  def loss_fn(params, batch, rng, state):
    z, logits = model.apply({"params": params}, batch["image"])
    if s.mode == "ce":
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean(), ({}, None)
    value, p = look_loss(z, batch["label"], batch["index"], state.extras["bank"], state.extras["bank_labels"], k, tau)
    bank = update_memory(state.extras["bank"], batch["index"], z, mom)
    return value, ({"mean_p": p.mean()}, {"bank": bank})

  prep = lambda r: {"image": augment.as_float_image(r["image"]), "label": np.int32(r["label"]),
                    "coarse": coarse_labels([int(r["label"])], mapping)[0]}
  n = int(config.eval.max_examples)
  fields = ("image", "label", "coarse")
  tr = classification.load_arrays(train_src, fields, n, prep)
  te = classification.load_arrays(sources.records(config.data.source, config.data.get("eval_split", "validation")),
                                  fields, n, prep)
  feats = jax.jit(lambda p, x: model.apply({"params": p}, x, method=LookModel.features))
  bs = int(config.eval.batch_size)
  evaluators = [classification.LinearProbe("fine_linear_probe", tr, te, feats, batch_size=bs),
                classification.LinearProbe("coarse_linear_probe", tr, te, feats, batch_size=bs, label_field="coarse"),
                classification.KNN("fine_knn", tr, te, feats, batch_size=bs),
                classification.KNN("coarse_knn", tr, te, feats, batch_size=bs, label_field="coarse")]
  if s.mode == "ce":
    evaluators.append(classification.Accuracy("coarse_accuracy", {"image": te["image"], "label": te["coarse"]},
                                              jax.jit(lambda p, x: model.apply({"params": p}, x)[1]), batch_size=bs))
  return Method(init=lambda rng, ex: model.init(rng, jnp.asarray(ex["image"]))["params"], loss=loss_fn,
                step=step_lib.stateful_sgd_step(loss_fn), init_extras=init_extras, example_fn=example_fn,
                evaluators=evaluators, model=model, summary_keys=("fine_linear_probe", "coarse_knn", "coarse_linear_probe"))
