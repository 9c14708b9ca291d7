"""Skill-it! A Data-Driven Skills Framework for Understanding and Training Language Models
(Chen, Roberts, Bhatia, Wang, Zhang, Sala, Ré; NeurIPS 2023). https://arxiv.org/abs/2307.14430

Rule. Skills are data slices with a skills graph A ∈ R^{k×k}: A_ii = 1 and A_ij = 0.5 for every learned
edge i → j (training on skill i helps skill j; the official `trainer/mw_trainer.py` sets every
off-diagonal edge to 0.5 for the synthetic tasks). Online multiplicative weights: every T steps the
per-skill validation losses L_j are measured and the sampling distribution for the next T steps is
    p_i ∝ w_init,i · exp( η · Σ_j A_ij · Σ_{τ = t−w+1}^{t} L_j(τ) ),
a sum over the last w evaluations (η = 0.5, w = 3 in the paper's LEGO runs, `scripts/lego/pt/skillit.sh`).
Before the first evaluation the official code uses L = 1 for every skill: p_0 ∝ w_init · exp(η A·1).

Graph learning (brute force, the paper's §2.3): train on skill j alone and on {i, j} (equal weights)
for H steps from the same initialisation; edge i → j iff L_j after {i, j} is lower than after j alone —
with the same steps, half of the j data must be made up for by what i teaches about j.

Baselines of the paper's LEGO comparison: `random` (the natural proportions 1:1:1:3:5) and
`stratified` (uniform over skills), at equal tokens.

Shared code: the stream with online weights is `MixtureStream.set_weights` (data/mixture.py), whose
`memo` keeps the loss history so a resumed run continues the same update; the LM and per-skill
evaluators (held-out loss, exact match of the queried value) are `paperjax/mixture_lm.py`; LEGO is
`data/tasks.py`. Deviations: a tiny byte-level decoder trained from scratch instead of GPT-Neo-125M;
fewer steps (the LEGO run in the paper is 6,000 steps of 32 with an update every 1,000).
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np

from paperjax import mixture_lm
from paperjax.data import pipeline, tasks
from paperjax.method import Method, PaperInfo
from paperjax.models import lm

PAPER = PaperInfo(slug="skill_it", title="Skill-it! A Data-Driven Skills Framework for Understanding and Training Language Models",
                  authors="Chen, Roberts, Bhatia, Wang, Zhang, Sala, Ré", year=2023, url="https://arxiv.org/abs/2307.14430",
                  family="lm-data-mixture")
SAMPLINGS = ("skill_it", "random", "stratified", "fixed")
RANDOM_PROPORTIONS = (1, 1, 1, 3, 5)  # scripts/lego/pt/run_random.sh


def skill_names(k: int = tasks.LEGO_K) -> list[str]:
  return [f"skill{i}" for i in range(k)]


def chain_edges(k: int) -> np.ndarray:
  """LEGO's path graph: variable i is the parent of i+1, so skill i → skill i+1."""
  e = np.zeros((k, k))
  e[np.arange(k - 1), np.arange(1, k)] = 1.0
  return e


def skills_graph(edges: np.ndarray) -> np.ndarray:
  """A = I + 0.5·E (off-diagonal edges at 0.5, as the official trainer sets them)."""
  e = np.asarray(edges, np.float64).copy()
  np.fill_diagonal(e, 0.0)
  return np.eye(len(e)) + 0.5 * (e > 0)


def mw_weights(w_init, graph, history, eta: float, window: int) -> np.ndarray:
  """p ∝ w_init · exp(η · A · Σ_{last `window`} L); `history` is a list of per-skill loss vectors."""
  recent = np.asarray(history[-window:], np.float64).sum(0)
  logits = np.log(np.asarray(w_init, np.float64)) + eta * np.asarray(graph) @ recent
  p = np.exp(logits - logits.max())
  return p / p.sum()


def graph_from_losses(single: np.ndarray, pair: np.ndarray) -> np.ndarray:
  """Brute-force edges: E_ij = 1 iff L_j after training on {i, j} < L_j after j alone.
  `single[j]` = L_j after j alone, `pair[i, j]` = L_j after {i, j}."""
  k = len(single)
  e = (np.asarray(pair) < np.asarray(single)[None, :]).astype(np.float64)
  e[np.arange(k), np.arange(k)] = 0.0
  return e


def base_weights(config) -> dict:
  s = config.skill_it
  names = skill_names(int(s.k))
  if s.sampling == "random":
    return dict(zip(names, map(float, RANDOM_PROPORTIONS)))
  if s.sampling in ("stratified", "skill_it"):
    return {n: 1.0 for n in names}
  if s.sampling == "fixed":
    return dict(config.mixture.weights)
  raise ValueError(f"skill_it.sampling={s.sampling!r} is unknown; use one of {SAMPLINGS}.")


def graph_of(config) -> np.ndarray:
  k = int(config.skill_it.k)
  g = tuple(config.skill_it.graph or ())
  if not g:
    return skills_graph(chain_edges(k))
  if len(g) != k * k:
    raise ValueError(f"skill_it.graph has {len(g)} entries; give k*k = {k * k} (row i: the skills that skill i helps).")
  return skills_graph(np.asarray(g, np.float64).reshape(k, k))


def make(config, ctx) -> Method:
  s = config.skill_it
  cfg = ml_collections.ConfigDict(config.to_dict())
  cfg.mixture.weights = base_weights(config)
  names = skill_names(int(s.k))
  if list(dict(cfg.mixture.sources)) != sorted(names):
    raise ValueError(f"skill_it needs mixture.sources named {names} (LEGO skills); got {list(dict(cfg.mixture.sources))}.")
  graph, eta, window = graph_of(config), float(s.eta), int(s.window)
  w_init = np.ones(len(names))
  model, _ = lm.build(cfg, ctx.tokenizer.vocab_size)
  sums_fn = jax.jit(lambda params, batch: lm.loss_sums(model, params, batch))
  probe: dict = {}

  def skill_losses(params, ctx_) -> np.ndarray:
    if "batches" not in probe:  # held-out rows of every skill, fixed (the paper's per-skill validation sets)
      rows = mixture_lm.rows(cfg, ctx_, cfg.data.get("eval_split", "validation"))
      probe["batches"] = {n: pipeline.fixed_batches(rows[n], batch_size=int(s.probe_batch), num_batches=1,
                                                    seed=4321) for n in names}
    out = []
    for n in names:
      sums = [sums_fn(params, b) for b in probe["batches"][n]]
      out.append(sum(float(a) for a, _ in sums) / max(sum(float(w) for _, w in sums), 1e-9))
    return np.asarray(out)

  def between(stream, state, step, ctx_):
    if s.sampling != "skill_it":
      return state, {}
    history = stream.memo.setdefault("losses", [])
    history.append(skill_losses(state.params, ctx_).tolist())
    p = mw_weights(w_init, graph, history, eta, window)
    stream.set_weights(p)
    metrics = {f"weight/{n}": float(p[i]) for i, n in enumerate(names)}
    metrics.update({f"probe_loss/{n}": float(history[-1][i]) for i, n in enumerate(names)})
    return state, metrics

  m = mixture_lm.method(cfg, ctx, between=between, summary_keys=("em/mean", "val/mean"))
  make_iterator = m.make_iterator

  def make_iterator_with_initial_weights(ctx_):
    it = make_iterator(ctx_)
    if s.sampling == "skill_it":  # p_0 with L = 1 (the official loss_init); a resume overwrites it
      it.set_weights(mw_weights(w_init, graph, [np.ones(len(names))], eta, window))
    return it

  return dataclasses.replace(m, make_iterator=make_iterator_with_initial_weights)
