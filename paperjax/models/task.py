"""A model, its loss, its per-example transform and its held-out evaluators, from the config.

Methods that change *how* a shared model is trained (population papers: FedAvg, DiLoCo, zeroth-order
federated tuning, ...) but not the model take all of it from here:

  data.kind="text"     the shared decoder LM (`model.kind="decoder"`): chunks → {tokens, loss_mask};
                       loss = mean next-token cross-entropy; evaluator `val_loss` (+ one per domain)
  data.kind="records"  `model.kind` "mlp" or "cnn" (models/mlp.py) on {image, label}; loss = cross-
                       entropy; evaluator `val_loss` and `val_accuracy`
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from paperjax.data import pipeline


# The shared decoder LM's config block (configs write `c.model = task.decoder_config(d_model=..., ...)`).
DECODER = dict(kind="decoder", d_model=64, num_heads=4, head_dim=16, d_ff=128, num_layers=2, num_encoder_layers=0,
               activation="gelu", dropout=0.0, dtype="float32", param_dtype="float32", logits_dtype="float32",
               tie_embeddings=True, scan_layers=False, remat="none", attention_impl="")


def decoder_config(**overrides) -> dict:
  unknown = set(overrides) - set(DECODER)
  if unknown:
    raise ValueError(f"decoder_config got unknown fields {sorted(unknown)}; known: {sorted(DECODER)}.")
  return {**DECODER, **overrides}


@dataclasses.dataclass
class Task:
  init: Callable                 # (rng, one batch) -> boxed params
  loss: Callable                 # (params, batch, rng) -> (loss, aux)
  example_fn: Callable | None    # per-example host transform (source item -> batch fields)
  evaluators: Sequence
  model: object


@dataclasses.dataclass
class SumsEvaluator:
  """Reports Σ metric_sums / Σ count over fixed held-out batches: `sums_fn(params, batch) -> {name: (sum, count)}`."""
  batches: Sequence[dict]
  sums_fn: Callable
  name: str = "val"

  def __call__(self, params, ctx) -> dict[str, float]:
    acc: dict[str, list] = {}
    for out in jax.device_get([self.sums_fn(params, b) for b in self.batches]):
      for k, (s, n) in out.items():
        a = acc.setdefault(k, [0.0, 0.0])
        a[0] += float(s)
        a[1] += float(n)
    return {k: s / max(n, 1e-9) for k, (s, n) in acc.items()}


def _eval_batches(source, config, example_fn, n: int | None = None):
  bs = int(config.get("eval_batch_size", 0) or config.data.batch_size)
  n = n or int(config.train.eval_batches)
  n = max(1, min(n, len(source) // bs)) if len(source) >= bs else 1
  bs = min(bs, len(source))
  return pipeline.fixed_batches(source, batch_size=bs, num_batches=n, seed=int(config.get("eval_seed", 1234)),
                                example_fn=(lambda x, rng: example_fn(x)) if example_fn else None)


def lm_example(chunk, rng=None) -> dict:
  del rng  # deterministic (the signature of `Method.example_fn`)
  chunk = np.asarray(chunk, np.int32)
  return {"tokens": chunk, "loss_mask": np.ones_like(chunk)}


def build(config, ctx) -> Task:
  kind = config.data.get("kind", "text")
  if kind == "text":
    task = _lm_task(config, ctx)
  elif kind == "records":
    task = _classifier_task(config, ctx)
  else:
    raise ValueError(f"data.kind={kind!r} is unknown; use 'text' or 'records'.")
  return task


def _abstract(ctx) -> bool:
  return bool(getattr(ctx, "abstract", False))  # the AOT preflight: shapes only, no held-out data


def _lm_task(config, ctx) -> Task:
  from paperjax import data as data_lib
  from paperjax.models import lm
  if config.model.kind != "decoder":
    raise ValueError(f"Population LM methods use model.kind='decoder', not {config.model.kind!r}.")
  model, _ = lm.build(config, ctx.tokenizer.vocab_size)

  def loss(params, batch, rng):
    s, w = lm.loss_sums(model, params, batch)
    return s / jnp.maximum(w, 1.0), {}

  sums = jax.jit(lambda p, b: {"val_loss": lm.loss_sums(model, p, b)})
  cache = data_lib.cache_dir_for(ctx.workdir)
  evaluators = []
  domains = tuple(config.get("population", {}).get("domains", ()) or ())
  specs = [(None, config.data.source)] if not domains else [(None, "+".join(domains))] + [
      (d.split(":")[-1].replace("/", "_"), d) for d in domains]
  for name, spec in ([] if _abstract(ctx) else specs):
    dcfg = ml_collections.ConfigDict(config.data.to_dict())
    dcfg.source = spec
    src = data_lib.build_source(dcfg, config.data.get("eval_split", "validation"), ctx.tokenizer, cache)
    fn = sums if name is None else jax.jit(lambda p, b, name=name: {f"val_loss/{name}": lm.loss_sums(model, p, b)})
    evaluators.append(SumsEvaluator(_eval_batches(src, config, lm_example), fn))
  return Task(init=lambda rng, b: lm.init(model, rng, b), loss=loss, example_fn=lm_example,
              evaluators=evaluators, model=model)


def _classifier_task(config, ctx) -> Task:
  from paperjax import data as data_lib
  from paperjax.models import mlp
  mk = config.model.get("kind", "mlp")
  n_cls = int(config.model.get("num_classes", 10))
  if mk == "mlp":
    model = mlp.MLP(tuple(config.model.get("hidden", (64,))), n_cls)
  elif mk == "cnn":
    model = mlp.EmnistCNN(n_cls)
  else:
    raise ValueError(f"model.kind={mk!r} is not a classifier; use 'mlp' or 'cnn' with data.kind='records'.")
  loss = mlp.classification_loss(model)

  def sums_fn(params, batch):
    ce, aux = loss(params, batch, None)
    n = jnp.asarray(batch["label"].shape[0], jnp.float32)
    return {"val_loss": (ce * n, n), "val_accuracy": (aux["accuracy"] * n, n)}

  evaluators = []
  if not _abstract(ctx):
    src = data_lib.build_source(config.data, config.data.get("eval_split", "validation"))
    evaluators = [SumsEvaluator(_eval_batches(src, config, None, n=len(src)), jax.jit(sums_fn))]
  init = lambda rng, b: model.init({"params": rng}, jnp.asarray(b["image"]))["params"]
  return Task(init=init, loss=loss, example_fn=None, evaluators=evaluators, model=model)
