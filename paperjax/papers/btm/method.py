"""Branch-Train-Merge: Embarrassingly Parallel Training of Expert Language Models (Li, Gururangan,
Dettmers, Lewis, Althoff, Smith, Zettlemoyer, 2022). https://arxiv.org/abs/2208.03306

Rule. (1) Seed: train one LM on all domains. (2) Branch: copy it into K expert LMs (ELMs), one per
domain. (3) Train: each ELM only on its own domain, with *no communication at all* between experts.
(4) Merge, two ways:
  ensemble   p(x_t | x_<t) = Σ_j p_j(x_t | x_<t) · P(D=j | x_<t),   P(D=j | x_<t) ∝ P(D=j) · Π_{s<t} p_j(x_s | x_<s)
  average    θ = Σ_j w_j θ_j (uniform w here)
Control: random-split ELMs (the same procedure, data split at random instead of by domain), which the
paper finds do not help: domain specialisation is what matters.

Stages (configs/btm.py): `seed` (the shared trainer's plain step on the domain mixture) then `branch`
(`population.independent_step`: the K experts stacked on the `clients` axis, each training on its
domain's stream inside `shard_map` — the step has no collective, asserted on its jaxpr in
tests/papers/test_btm.py). The branch stage's parameters *are* the stacked experts, so evaluators see
all of them: per domain, the posterior ensemble, the uniform parameter average and each domain's own
expert, plus the ensemble's posterior on the right expert.
Defaults: the official code's cached-prior ensemble (ENSEMBLE_TYPE=cached_prior) estimates P(D=j) from
~100 held-out sequences; we use a uniform prior (deviation: with 4 balanced toy domains the prior is
~uniform anyway) and the posterior over the sequence so far. LR and steps are toy-sized.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from paperjax import optim, population
from paperjax.data import partition
from paperjax.method import Method, PaperInfo
from paperjax.models import task as task_lib

PAPER = PaperInfo(slug="btm", title="Branch-Train-Merge: Embarrassingly Parallel Training of Expert Language Models",
                  authors="Li et al.", year=2022, url="https://arxiv.org/abs/2208.03306",
                  family="distributed/communication")


def token_logprobs(model, params, batch):
  """log p(x_t | x_<t) for t = 1..L−1 of a decoder batch: [B, L−1] (and the mask)."""
  logits = model.apply({"params": params}, batch).astype(jnp.float32)
  lp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
  tgt = batch["tokens"][:, 1:]
  return jnp.take_along_axis(lp, tgt[..., None], axis=-1)[..., 0], batch["loss_mask"][:, 1:].astype(jnp.float32)


def ensemble_logprobs(lp_KBT, log_prior_K=None):
  """Posterior-weighted ensemble of K experts' token log-probs [K, B, T] → ([B, T], posterior [K, B, T]).
  The weight of expert j at position t is P(D=j | x_<t): prior × likelihood of the tokens before t."""
  K = lp_KBT.shape[0]
  log_prior = jnp.full((K,), -jnp.log(K)) if log_prior_K is None else log_prior_K
  before = jnp.cumsum(lp_KBT, axis=-1) - lp_KBT                    # Σ_{s<t} log p_j(x_s)
  log_post = jax.nn.log_softmax(log_prior[:, None, None] + before, axis=0)
  return jax.nn.logsumexp(lp_KBT + log_post, axis=0), jnp.exp(log_post)


@dataclasses.dataclass
class MergeEvaluator:
  """Per held-out domain d: `ens/<d>` (posterior ensemble), `avg/<d>` (uniform parameter average),
  `own/<d>` (expert d alone), `posterior_own/<d>` (ensemble weight on expert d after `after` tokens);
  and their means over domains (`ens`, `avg`, `own`)."""
  model: object
  domains: list                # (name, batches)
  after: int = 64

  def __post_init__(self):
    def sums(stacked, batch):
      lp, mask = jax.vmap(lambda p: token_logprobs(self.model, p, batch))(stacked)
      mask = mask[0]
      ens, post = ensemble_logprobs(lp)
      avg_lp, _ = token_logprobs(self.model, population.average(stacked), batch)
      return {"ens": -(ens * mask).sum(), "avg": -(avg_lp * mask).sum(), "own": -(lp * mask).sum((1, 2)),
              "post": post[:, :, min(self.after, post.shape[-1] - 1)].mean(-1), "n": mask.sum()}
    self._sums = jax.jit(sums)

  def __call__(self, stacked, ctx) -> dict[str, float]:
    out, means = {}, {"ens": [], "avg": [], "own": []}
    for d, (name, batches) in enumerate(self.domains):
      rows = jax.device_get([self._sums(stacked, b) for b in batches])
      n = sum(float(r["n"]) for r in rows)
      for k in ("ens", "avg"):
        out[f"{k}/{name}"] = sum(float(r[k]) for r in rows) / n
        means[k].append(out[f"{k}/{name}"])
      if d < len(rows[0]["own"]):
        out[f"own/{name}"] = sum(float(r["own"][d]) for r in rows) / n
        out[f"posterior_own/{name}"] = sum(float(r["post"][d]) for r in rows) / len(rows)
        means["own"].append(out[f"own/{name}"])
    out.update({k: sum(v) / len(v) for k, v in means.items() if v})
    return out


def domain_name(spec: str) -> str:
  return spec.split(":")[-1].replace("/", "_")


def make(config, ctx) -> Method:
  t = task_lib.build(config, ctx)
  phase = config.btm.phase
  if phase == "seed":  # the seed LM (and the dense baseline): the shared loop's own step on the mixture
    return Method(init=t.init, loss=t.loss, example_fn=t.example_fn, evaluators=t.evaluators, model=t.model,
                  summary_keys=("val_loss",))
  if phase != "branch":
    raise ValueError(f"btm.phase={phase!r} is unknown; use 'seed' or 'branch'.")
  K = int(config.population.clients)
  population.check_mesh(ctx.mesh, K)
  inner_tx = optim.build(config.population.inner_optimizer,
                         int(config.train.steps) * int(config.population.local_steps))[0]
  per_client = lambda example: jax.tree.map(lambda x: x[0, 0], population.split_batch(example)[0])

  evaluators = []
  if not getattr(ctx, "abstract", False):
    from paperjax import data as data_lib
    domains = []
    for spec in config.population.domains:
      dcfg = ml_collections.ConfigDict(config.data.to_dict())
      dcfg.source = spec
      src = data_lib.build_source(dcfg, "validation", ctx.tokenizer, data_lib.cache_dir_for(ctx.workdir))
      domains.append((domain_name(spec), task_lib._eval_batches(src, config, task_lib.lm_example)))
    evaluators = [MergeEvaluator(t.model, domains, after=int(config.btm.posterior_after))]
  return Method(
      init=lambda rng, example: population.stack(t.init(rng, per_client(example)), K), loss=t.loss,
      # Branch: every expert starts as the seed LM; then they train with no collective at all.
      step=population.independent_step(t.loss, inner_tx), init_extras=population.independent_extras(inner_tx),
      from_previous=population.from_one,
      make_iterator=lambda ctx: partition.client_streams(config, ctx, example_fn=t.example_fn),
      batch_axis=population.AXIS, evaluators=evaluators, model=t.model, summary_keys=("ens", "avg", "own"))
