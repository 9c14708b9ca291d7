"""Diversify and Conquer: Diversity-Centric Data Selection with Iterative Refinement (Yu, Chen,
Ahmadian, Fadaee, 2024). https://arxiv.org/abs/2409.11378

Rule. Embed every instruction x_i, run k-means (K clusters C_1..C_K), select a budget of B examples.
  kMQ (static)      each cluster gets a share of B proportional to its size, n_k = B·|C_k|/N, drawn at
                    random inside the cluster (official `KMeansRandom`: int(|C_k|/N·B) per cluster)
  iterative kMQ     R rounds, B/R new examples per round. Round 0: an equal share B/(R·K) per cluster
                    (official `KMeansIter`). After training on the current selection S, generate ŷ_i for
                    every selected x_i and score it against the gold answer y_i with a reward R:
                      s_i = R(x_i, y_i) − R(x_i, ŷ_i)
                      w_k = exp(mean_{i∈S∩C_k} s_i) / Σ_j exp(mean_{i∈S∩C_j} s_j)
                    draw per-cluster counts ~ Multinomial(B/R, w) and add that many *unselected*
                    examples of each cluster, at random (official `selection/iter.py`, `select_new_iter`).
                    Clusters whose gold answers are bad (low R(x, y)) lose weight and fade out; clusters
                    the model already solves (R(x, ŷ) ≈ R(x, y)) get less too.
Baselines of the paper at the same budget: random, kM-Closest (each cluster's share taken closest to
its centroid), plus the shared full data and k-center greedy (on the same embeddings).

Defaults and their source. K = 48 for 16 templates (paper: K = 512–4096 for 10^5–10^6 examples, the
per-cluster count matters more than K), 3 rounds (paper and official `KMeansIter`: rounds 3), budget
10% (paper: 5–10%), no temperature on the softmax (official code: `np.exp(reward_diff)` normalised).

Deviations (toy scale, 2 CPU cores).
  * Embeddings: character n-gram tf-idf → SVD (`selection.text_features`) instead of a sentence encoder;
    k-means by scikit-learn (`selection.kmeans`) instead of faiss (niter 300, nredo 5).
  * Reward: the programmatic verifier of `paperjax/data/instructions.py` (R ∈ {0, 1}) instead of the
    3B reward model — a privileged, noise-free signal. With a binary R, a corrupted cluster scores
    s ≈ 0 − 0 = 0 (the model cannot answer it either), the same as a cluster already learnt, while an
    unlearnt clean cluster scores ≈ 1: the paper's weights favour the latter by e¹.
  * One model trained continuously through the rounds (the between-round hook of the shared loop,
    `train.between_every`), learning-rate schedule over all rounds, equal steps for every method;
    the official scripts instead fine-tune the base model afresh on the accumulated selection each
    iteration (more compute for the iterative method).
  * Exact budgets: the static shares use largest remainders (official: floor, a few short of B) and a
    round's multinomial count above a cluster's remaining size is re-drawn among clusters that still
    have examples (official: silently dropped), so every method selects exactly B.
  * kMQ's within-cluster quality weighting (Deita scores in the paper's kMQ) has no toy counterpart
    other than the verifier itself; the static kMQ samples uniformly inside clusters (`quality=None`).
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from paperjax import selection
from paperjax.data import instructions, tokenizers
from paperjax.method import Method, PaperInfo
from paperjax.models import lm

PAPER = PaperInfo(slug="kmq_diversify", title="Diversify and Conquer: Diversity-Centric Data Selection with "
                  "Iterative Refinement", authors="Yu, Chen, Ahmadian, Fadaee", year=2024,
                  url="https://arxiv.org/abs/2409.11378", family="dataset-distillation/pruning/selection")
KINDS = ("kmq_iter", "kmq", "kmclosest", "random", "kcenter", "full")


# --------------------------------------------------------------------------- the rule


def proportional_shares(sizes: np.ndarray, budget: int) -> np.ndarray:
  """n_k ∝ |C_k| summing to `budget` exactly (largest remainders), never above |C_k|."""
  sizes = np.asarray(sizes, np.int64)
  raw = budget * sizes / sizes.sum()
  n = np.floor(raw).astype(np.int64)
  for k in np.argsort(-(raw - n), kind="stable")[:budget - n.sum()]:
    n[k] += 1
  return np.minimum(n, sizes)


def equal_shares(sizes: np.ndarray, budget: int) -> np.ndarray:
  """An equal share per cluster (round 0 of iterative kMQ); a small cluster's surplus goes to the rest
  (water-filling), the remainder to the lowest cluster ids, so the shares sum to `budget`."""
  sizes = np.asarray(sizes, np.int64)
  n = np.zeros_like(sizes)
  left = min(int(budget), int(sizes.sum()))
  while left > 0:
    open_ = np.flatnonzero(n < sizes)
    give = np.zeros_like(n)
    give[open_] = left // len(open_)
    give[open_[:left % len(open_)]] += 1
    give = np.minimum(give, sizes - n)
    n += give
    left -= int(give.sum())
  return n


def sample_in_clusters(assign: np.ndarray, counts: np.ndarray, rng: np.random.Generator,
                       exclude: np.ndarray | None = None, quality: np.ndarray | None = None) -> np.ndarray:
  """counts[k] examples of cluster k, without replacement, skipping `exclude`; uniformly, or with
  probability ∝ `quality` (kMQ's quality-weighted variant)."""
  taken = np.zeros(len(assign), bool) if exclude is None else np.isin(np.arange(len(assign)), exclude)
  out = []
  for k, c in enumerate(np.asarray(counts)):
    if c <= 0:
      continue
    pool = np.flatnonzero((assign == k) & ~taken)
    p = None
    if quality is not None:
      q = np.maximum(np.asarray(quality, np.float64)[pool], 0) + 1e-12
      p = q / q.sum()
    out.append(rng.choice(pool, int(c), replace=False, p=p))
  return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def kmq_static(assign: np.ndarray, budget: int, seed: int, quality: np.ndarray | None = None) -> np.ndarray:
  K = int(assign.max()) + 1
  counts = proportional_shares(np.bincount(assign, minlength=K), budget)
  return sample_in_clusters(assign, counts, np.random.default_rng([int(seed), 4701]), quality=quality)


def km_closest(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray, budget: int) -> np.ndarray:
  """kM-Closest: each cluster's proportional share, the examples nearest to its centroid."""
  K = len(centroids)
  counts = proportional_shares(np.bincount(assign, minlength=K), budget)
  out = []
  for k in range(K):
    idx = np.flatnonzero(assign == k)
    d = np.linalg.norm(x[idx] - centroids[k], axis=-1)
    out.append(idx[np.argsort(d, kind="stable")[:counts[k]]])
  return np.sort(np.concatenate(out))


def round_budgets(budget: int, rounds: int) -> list[int]:
  """B/R per round; the last round takes the remainder, so the rounds sum to B."""
  per = budget // rounds
  return [per] * (rounds - 1) + [budget - per * (rounds - 1)]


def iter_round0(assign: np.ndarray, budget: int, rounds: int, seed: int) -> np.ndarray:
  K = int(assign.max()) + 1
  counts = equal_shares(np.bincount(assign, minlength=K), round_budgets(budget, rounds)[0])
  return sample_in_clusters(assign, counts, np.random.default_rng([int(seed), 4702]))


def reward_diff(gold_reward: np.ndarray, generated_reward: np.ndarray) -> np.ndarray:
  """s_i = R(x_i, y_gold) − R(x_i, ŷ_i)."""
  return np.asarray(gold_reward, np.float64) - np.asarray(generated_reward, np.float64)


def cluster_weights(assign_selected: np.ndarray, scores: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray]:
  """(w, mean score per cluster): w = softmax_k(mean_{i∈C_k} s_i); a cluster with no scored example
  has mean 0 (neutral)."""
  sums = np.bincount(assign_selected, weights=scores, minlength=K)
  cnt = np.bincount(assign_selected, minlength=K)
  mean = np.where(cnt > 0, sums / np.maximum(cnt, 1), 0.0)
  e = np.exp(mean - mean.max())
  return e / e.sum(), mean


def resample(assign: np.ndarray, selected: np.ndarray, weights: np.ndarray, n_new: int,
             rng: np.random.Generator) -> np.ndarray:
  """`n_new` unselected examples: counts ~ Multinomial(n_new, w) over clusters, capped by what each
  cluster has left; the shortfall is re-drawn among clusters that still have examples (∝ w)."""
  K = len(weights)
  left = np.bincount(assign, minlength=K) - np.bincount(assign[selected], minlength=K)
  counts = np.minimum(rng.multinomial(int(n_new), weights), left)
  short = int(n_new) - int(counts.sum())
  while short > 0 and (left - counts).sum() > 0:
    room = left - counts
    w = np.where(room > 0, weights, 0.0)
    extra = np.minimum(rng.multinomial(short, w / w.sum()), room)
    counts += extra
    short -= int(extra.sum())
  return sample_in_clusters(assign, counts, rng, exclude=selected)


# --------------------------------------------------------------------------- toy data


def toy_pool(config) -> list[dict]:
  k = config.kmq
  return instructions.pool(dict(k.sizes), tuple(k.corrupted), seed=int(k.pool_seed))


def clean_tasks(config) -> list[str]:
  return [t for t in dict(config.kmq.sizes) if t not in tuple(config.kmq.corrupted)]


class _Records:
  def __init__(self, recs):
    self.recs = recs

  def __len__(self):
    return len(self.recs)

  def __getitem__(self, i):
    return self.recs[int(i)]


# --------------------------------------------------------------------------- the method


def make(config, ctx) -> Method:
  s, k = config.selection, config.kmq
  kind = str(s.kind)
  if kind not in KINDS:
    raise ValueError(f"selection.kind={kind!r} is unknown for kmq_diversify; use one of {KINDS}.")
  tok = tokenizers.make_tokenizer("byte", specials=(), num_sentinels=0)
  model, mcfg = lm.build(config, tok.vocab_size)
  L = int(k.seq_len)
  rounds, K = int(k.rounds), int(k.clusters)
  holder: dict = {}

  def loss(params, batch, rng):
    sm, w = lm.loss_sums(model, params, batch, rng=rng)
    return sm / jnp.maximum(w, 1.0), {"answer_tokens": w}

  evaluators = []
  if not ctx.abstract:
    test = instructions.test_set(clean_tasks(config), int(k.test_per_task), seed=int(k.pool_seed) + 1)
    evaluators = [instructions.VerifierAccuracy(test, model, tok, L)]

  def make_iterator(ctx_):
    recs = toy_pool(config)
    n, seed = len(recs), int(s.seed)
    budget = n if kind == "full" else selection.subset_size(n, s.fraction)
    t = time.perf_counter()
    x = selection.text_features([r["instruction"] for r in recs], int(k.embed_dim), seed)
    centroids, assign = selection.kmeans(x, K, seed)
    assign = np.asarray(assign, np.int64)
    if kind == "full":
      idx = np.arange(n)
    elif kind == "random":
      idx = selection.random_subset(n, budget, seed)
    elif kind == "kcenter":
      idx = np.sort(selection.kcenter_greedy(x, budget, seed))
    elif kind == "kmq":
      idx = kmq_static(assign, budget, seed)
    elif kind == "kmclosest":
      idx = km_closest(x, centroids, assign, budget)
    else:
      idx = iter_round0(assign, budget, rounds, seed)
    stream = selection.SubsetStream(
        _Records(recs), batch_size=int(config.data.batch_size), seed=int(config.seed), indices=idx,
        selection_s=time.perf_counter() - t, example_fn=lambda r, rng: instructions.encode(r, tok, L),
        process_index=ctx_.process_index, process_count=ctx_.process_count)
    stream.labels = np.asarray([r["task"] for r in recs])
    holder.update(stream=stream, recs=recs, assign=assign, budget=budget)
    return stream

  def between(state, step, ctx_):
    """After each round but the last: score the current selection and add the next B/R examples."""
    stream, recs, assign = holder["stream"], holder["recs"], holder["assign"]
    r = stream.round + 1  # the round about to start
    if r >= rounds:
      return state, {}
    t = time.perf_counter()
    sel = stream.indices
    xs = [recs[i]["instruction"] for i in sel]
    gen = instructions.greedy_answers(model, state.params, tok, xs, length=L)
    gold_r = np.asarray([instructions.verify(x, recs[i]["answer"]) for x, i in zip(xs, sel)])
    gen_r = np.asarray([instructions.verify(x, y) for x, y in zip(xs, gen)])
    w, _ = cluster_weights(assign[sel], reward_diff(gold_r, gen_r), K)
    rng = np.random.default_rng([int(s.seed), 4703, r])
    new = resample(assign, sel, w, round_budgets(holder["budget"], rounds)[r], rng)
    stream.select(np.sort(np.concatenate([sel, new])), cost_s=time.perf_counter() - t)
    corrupted = np.asarray([recs[i]["corrupted"] for i in stream.indices])
    return state, {"selected": float(len(stream.indices)), "corrupted_share": float(corrupted.mean()),
                   "generated_reward": float(gen_r.mean()), "gold_reward": float(gold_r.mean())}

  def init(rng, example):
    return lm.init(model, rng, example)

  return Method(init=init, loss=loss, evaluators=evaluators, make_iterator=make_iterator,
                between=between if kind == "kmq_iter" else None, model=model,
                tokens_per_example=L, flops_per_example=lm.flops_per_example(mcfg, {"tokens": L})["full"],
                summary_keys=("accuracy",))


def corrupted_share(config, indices: np.ndarray) -> float:
  recs = toy_pool(config)
  return float(np.mean([recs[int(i)]["corrupted"] for i in indices]))
