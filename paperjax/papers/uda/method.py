"""UDA: Unsupervised Data Augmentation for Consistency Training (Xie et al., NeurIPS 2020).
https://arxiv.org/abs/1904.12848

Rule. With a labelled batch (x, y) and an unlabelled batch u (ratio r = |u|/|x|):
    L = (1/|kept|) Σ_{kept} CE(y, p_θ(y|x))
      + λ · (1/|u|) Σ_u 1[max p̃(u) > β] · KL( p̃(u) ‖ p_θ(y|RandAugment(u)) ),
    p̃(u) = softmax(sg(z_θ(u)) / τ)                         (sharpened target, no gradient)
Training-signal annealing (TSA) keeps a labelled example only while its correct-class probability
is ≤ η_t = c_t·(1 − 1/K) + 1/K, c_t = t/T (linear), 1 − e^{−5t/T} (log) or e^{5(t/T − 1)} (exp).

Defaults and their source (google-research/uda `image/main.py`, verified): λ = `unsup_coeff` = 1,
r = `unsup_ratio` = 5 (scripts/run_cifar10_gpu.sh), τ = `uda_softmax_temp` = −1 (off), β =
`uda_confidence_thresh` = −1 (off), TSA = "" (off) for images; the masked KL is averaged over *all*
unlabelled examples (`reduce_mean(aug_loss * mask)`), the TSA loss over the kept ones
(`reduce_sum / max(sum(mask), 1)`). RandAugment as in `image/randaugment/policies.py`: two ops of
15, magnitude uniform in 1..9, each applied with probability 0.5 (`paperjax.data.augment.randaugment`).
The paper's text runs turn on sharpening, masking and TSA; set `uda.temperature`, `uda.confidence`,
`uda.tsa` to use them.

Baselines (same network, same data, `uda.mode`): "supervised" (λ = 0: the unlabelled stream is
ignored), "noise" (the consistency target is compared with a Gaussian-noised copy instead of a
RandAugment copy — the paper's "augmentation quality matters" ablation, Table 1).

Deviations. A GroupNorm CNN on 8x8 digits instead of WRN-28-2 (no BatchNorm to handle for the
concatenated batch); Adam instead of Nesterov SGD; the labelled images get a ±1 px shift (the
paper: flip + crop on CIFAR); RandAugment's "Cutout" is its op list's own, no extra cutout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import losses_contrastive as lc
from paperjax import step as step_lib
from paperjax.data import augment, sources, subsets
from paperjax.evals import classification
from paperjax.method import Method, PaperInfo
from paperjax.models import vision

PAPER = PaperInfo(slug="uda", title="Unsupervised Data Augmentation for Consistency Training",
                  authors="Xie, Dai, Hovy, Luong, Le", year=2020, url="https://arxiv.org/abs/1904.12848",
                  family="semi-supervised")
MODES = ("uda", "supervised", "noise")
TSA = ("", "linear", "log", "exp")


def tsa_threshold(schedule: str, step, total_steps: int, num_classes: int):
  """η_t = c_t (1 − 1/K) + 1/K; the schedule's c_t rises from 0 (t=0) towards 1 (t=T)."""
  r = jnp.asarray(step, jnp.float32) / float(total_steps)
  if schedule == "linear":
    c = r
  elif schedule == "log":
    c = 1.0 - jnp.exp(-5.0 * r)
  elif schedule == "exp":
    c = jnp.exp(5.0 * (r - 1.0))
  else:
    raise ValueError(f"uda.tsa={schedule!r} is unknown; use one of {TSA}.")
  return c * (1.0 - 1.0 / num_classes) + 1.0 / num_classes


def uda_loss(sup_logits, labels, orig_logits, aug_logits, *, step, total_steps, coeff=1.0, temperature=-1.0,
             confidence=-1.0, tsa=""):
  """(loss, metrics) of the rule above; temperature/confidence −1 and tsa "" switch those parts off."""
  K = sup_logits.shape[-1]
  ce = optax.softmax_cross_entropy_with_integer_labels(sup_logits, labels)
  metrics = {}
  if tsa:
    eta = tsa_threshold(tsa, step, total_steps, K)
    p_correct = jnp.take_along_axis(jax.nn.softmax(sup_logits), labels[:, None], axis=-1)[:, 0]
    keep = jax.lax.stop_gradient((p_correct <= eta).astype(jnp.float32))
    sup = jnp.sum(ce * keep) / jnp.maximum(jnp.sum(keep), 1.0)
    metrics.update(tsa_threshold=eta, sup_trained_ratio=keep.mean())
  else:
    sup = ce.mean()
  metrics["sup_loss"] = sup
  if orig_logits is None or coeff == 0.0:
    return sup, metrics
  kl = lc.kl_consistency(orig_logits, aug_logits, temperature if temperature > 0 else 1.0)
  if confidence > 0:
    mask = (jax.nn.softmax(jax.lax.stop_gradient(orig_logits)).max(-1) > confidence).astype(jnp.float32)
    kl = kl * mask
    metrics["unsup_mask_ratio"] = mask.mean()
  unsup = kl.mean()
  metrics["unsup_loss"] = unsup
  return sup + coeff * unsup, metrics


def example_fn_for(config):
  u = config.uda
  sup_aug = augment.named(u.sup_augment)
  if u.mode == "noise":
    strong = lambda x, rng: augment.gaussian_noise(x, rng, float(u.noise_std))
  else:
    strong = augment.named(u.augment)

  def fn(ex, rng):
    out = {"image": sup_aug(augment.as_float_image(ex["image"]), rng), "label": np.int32(ex["label"])}
    if "unlabeled_image" in ex and u.mode != "supervised":
      orig = np.asarray(ex["unlabeled_image"], np.float32)
      out["unlabeled_orig"] = orig
      out["unlabeled_aug"] = strong(orig, rng)   # a batch [r, H, W, C]: one draw per image
    return out
  return fn


def make(config, ctx) -> Method:
  u = config.uda
  if u.mode not in MODES:
    raise ValueError(f"uda.mode={u.mode!r} is unknown; use one of {MODES}.")
  if u.tsa not in TSA:
    raise ValueError(f"uda.tsa={u.tsa!r} is unknown; use one of {TSA}.")
  model = vision.Classifier(dict(config.model), int(u.num_classes))
  total = int(config.train.steps)
  coeff = 0.0 if u.mode == "supervised" else float(u.coeff)

  def loss_fn(params, batch, rng, state):
    x = batch["image"]
    if coeff and "unlabeled_orig" in batch:
      uo = batch["unlabeled_orig"].reshape((-1,) + x.shape[1:])
      ua = batch["unlabeled_aug"].reshape((-1,) + x.shape[1:])
      logits = model.apply({"params": params}, jnp.concatenate([x, uo, ua]))   # one pass, as the official code
      n, m = x.shape[0], uo.shape[0]
      sup_logits, orig_logits, aug_logits = logits[:n], logits[n:n + m], logits[n + m:]
    else:
      sup_logits, orig_logits, aug_logits = model.apply({"params": params}, x), None, None
    value, metrics = uda_loss(sup_logits, batch["label"], orig_logits, aug_logits, step=state.step, total_steps=total,
                              coeff=coeff, temperature=float(u.temperature), confidence=float(u.confidence), tsa=u.tsa)
    return value, (metrics, None)

  logits_fn = jax.jit(lambda p, x: model.apply({"params": p}, x))
  bs, n = int(config.eval.batch_size), int(config.eval.max_examples)
  test = classification.load_arrays(sources.records(config.data.source, config.data.get("eval_split", "validation")),
                                     max_examples=n, transform=lambda r: {**r, "image": augment.as_float_image(r["image"])})
  labeled_view = {**dict(config.data.subset), "view": "labeled", "unlabeled": "none", "with_index": False}
  labeled = classification.load_arrays(subsets.apply(sources.records(config.data.source, "train"), labeled_view))
  evaluators = [classification.Accuracy("accuracy", test, logits_fn, batch_size=bs),
                classification.Accuracy("labeled_train_accuracy", labeled, logits_fn, batch_size=bs)]
  return Method(init=lambda rng, ex: model.init(rng, jnp.asarray(ex["image"]))["params"], loss=loss_fn,
                step=step_lib.stateful_sgd_step(loss_fn), example_fn=example_fn_for(config), evaluators=evaluators,
                model=model, summary_keys=("accuracy", "labeled_train_accuracy"))
