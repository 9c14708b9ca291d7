"""A decoder LM trained on a data mixture and evaluated per domain: what every data-mixture paper
(SlimPajama-DC, domain upsampling, Skill-it) shares, so its `method.py` only says how the weights move.

  config     `config(method)`: a tiny byte-level decoder, `config.mixture` (data/mixture.py) and
             `config.eval` (batch size, exact-match examples per task)
  method     `method(config, ctx, between=...)`: loss = next-token cross-entropy on each row's
             loss_mask, with the train loss per source (`loss/<source>`, exact over the log window);
             the stream is a `MixtureStream` (its realised proportions are logged as `mix/<source>`);
             evaluators: held-out loss per source (`val/<source>`, `val/mean`) and, for each task source,
             greedy-decoding exact match (`em/<source>`, `em/mean`)
  between    `between(stream, state, step, ctx) -> (state, metrics)`: e.g. Skill-it's weight update,
             which calls `stream.set_weights(...)`
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from paperjax import config_lib, losses
from paperjax.data import mixture
from paperjax.evals import lm as lm_evals
from paperjax.method import Context, Method
from paperjax.models import lm


def config(method: str, **mixture_overrides) -> ml_collections.ConfigDict:
  c = config_lib.base(method)
  c.model = ml_collections.ConfigDict(dict(
      kind="decoder", d_model=64, num_heads=2, head_dim=32, d_ff=192, num_layers=2, activation="gelu",
      dropout=0.0, dtype="float32", param_dtype="float32", logits_dtype="float32", tie_embeddings=True,
      scan_layers=False, remat="none", attention_impl="auto"))
  c.mixture = mixture.config_block(**mixture_overrides)
  c.eval = ml_collections.ConfigDict(dict(batch_size=32, em_examples=128))
  c.data.update(batch_size=16, raw_length=int(c.mixture.length))
  c.optimizer.update(lr=3e-3, warmup_steps=20, clip_norm=1.0)
  c.train.update(steps=300, log_every=50, eval_every=0, eval_batches=4, ckpt_every=0)
  return c


def rows(config, ctx, split: str) -> dict:
  """{source: rows} of `config.mixture.sources` for `split` (tokenised once, cached in the workdir)."""
  from paperjax import data as data_lib  # pylint: disable=g-import-not-at-top
  m = config.mixture
  cache = data_lib.cache_dir_for(ctx.workdir)
  return {n: mixture.build_rows(spec, split, ctx.tokenizer, int(m.length), i, cache, int(m.get("max_chars", 0) or 0))
          for i, (n, spec) in enumerate(dict(m.sources).items())}


def evaluators(config, ctx, model, rows_fn: Callable = rows) -> list:
  """Held-out loss per source and exact match per task source (identical batches every run)."""
  from paperjax.data import tasks  # pylint: disable=g-import-not-at-top
  if ctx.abstract:
    return []
  held_out = rows_fn(config, ctx, config.data.get("eval_split", "validation"))
  sums_fn = jax.jit(lambda params, batch: lm.loss_sums(model, params, batch))
  out = [lm_evals.per_source_loss("val", held_out, sums_fn, batch_size=int(config.eval.batch_size),
                                  num_batches=int(config.train.eval_batches), seed=int(config.get("eval_seed", 1234)),
                                  process_index=ctx.process_index, process_count=ctx.process_count)]
  n_em = int(config.eval.em_examples)
  ems = []
  for name, spec in dict(config.mixture.sources).items():
    if n_em and tasks.is_task(spec):
      task = tasks.from_spec(spec, "validation")
      ems.append(lm_evals.ExactMatch(f"em/{name}", [task[i] for i in range(min(n_em, len(task)))], model,
                                     ctx.tokenizer, int(config.mixture.length), batch_size=min(64, n_em)))
  if ems:
    out.append(_EMGroup("em", ems))
  return out


class _EMGroup(lm_evals.GroupEvaluator):
  def __call__(self, params, ctx):
    out = super().__call__(params, ctx)
    out["em/mean"] = float(np.mean(list(out.values())))
    return out


def method(config, ctx: Context, *, between: Callable | None = None, rows_fn: Callable = rows,
           summary_keys=("val/mean", "em/mean")) -> Method:
  """The mixture LM; `rows_fn(config, ctx, split) -> {source: rows}` replaces how sources become rows
  (e.g. SlimPajama-DC's deduplicated corpora), `between` moves the weights."""
  names = list(dict(config.mixture.sources))
  model, mcfg = lm.build(config, ctx.tokenizer.vocab_size)
  holder: dict = {}

  def loss(params, batch, rng):
    deterministic = model.cfg.dropout == 0.0
    logits = model.apply({"params": params}, batch, deterministic=deterministic,
                         rngs=None if deterministic else {"dropout": rng})
    targets, mask = lm.targets_and_mask(batch, model.cfg.kind)
    _, _, per_tok = losses.token_cross_entropy(logits, targets, mask)
    per_ex, w_ex = per_tok.sum(-1), mask.astype(jnp.float32).sum(-1)
    onehot = jax.nn.one_hot(batch["source"], len(names), dtype=jnp.float32)
    metrics = {"target_tokens": w_ex.sum()}
    for i, n in enumerate(names):  # train loss per source, token-weighted, exact over the log window
      metrics[f"sum/loss/{n}"] = (per_ex * onehot[:, i]).sum()
      metrics[f"count/loss/{n}"] = (w_ex * onehot[:, i]).sum()
    return per_ex.sum() / jnp.maximum(w_ex.sum(), 1.0), metrics

  def make_iterator(ctx_):
    holder["stream"] = mixture.stream(config, ctx_, rows_fn(config, ctx_, config.data.get("train_split", "train")))
    return holder["stream"]

  hook = None
  if between is not None:
    hook = lambda state, step, ctx_: between(holder["stream"], state, step, ctx_)

  length = int(config.mixture.length)
  return Method(
      init=lambda rng, example: lm.init(model, rng, {k: v for k, v in example.items() if k == "tokens"}),
      loss=loss, make_iterator=make_iterator, between=hook, evaluators=evaluators(config, ctx, model, rows_fn),
      flops_per_example=lm.flops_per_example(mcfg, {"tokens": length})["full"], tokens_per_example=length,
      model=model, summary_keys=tuple(summary_keys))


def apply_args(c, kv: dict, where: str, others: str = "") -> ml_collections.ConfigDict:
  return config_lib.apply_common_args(c, kv, where, others)
