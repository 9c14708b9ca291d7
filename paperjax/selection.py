"""Data selection: which training examples a run sees, chosen from per-example scores or geometry.

One module for every selection / pruning / coreset paper (RS2, Dataset Quantization, kMQ, DP4TL, ...):

  scores       `logits_of` (batched forward), `per_example_ce`, `el2n` = ‖softmax(f(x)) − onehot(y)‖₂
               (Paul et al. 2021), `per_example_grads` = vmap(grad) of a one-example loss, flattened,
               with an optional Gaussian random projection (Johnson–Lindenstrauss, k columns, 1/√k),
               `grand` = ‖∇_θ ℓ(x, y)‖₂ (GraNd), `embed` (features of a frozen or current model)
  geometry     `kmeans` (scikit-learn, optionally spherical: unit-norm rows, Lloyd on the sphere's
               chord distance), `kcenter_greedy` (Sener & Savarese's farthest-first traversal, numpy),
               `semdedup` (near-duplicate removal inside k-means clusters), `text_features` (char
               n-gram tf-idf → SVD embeddings of short texts, an offline sentence-encoder stand-in)
  subsets      `random_subset`, `top_k`, `class_balanced_top_k`
  the stream   `SubsetStream`: batches drawn from the *current* index set of a record source. The set
               changes by round: a model-free `sampler(round)` (RS2, static subsets) called every
               `round_steps` batches, or `select(indices)` from a `Method.between` hook or a stage's
               `from_previous` (scores of a proxy). Its state — round, position in the round, the index
               set, the seconds spent selecting — is checkpointed with the train state (a grain
               `DatasetIterator`), so a resumed run trains on the same examples; `summary()` goes
               into the run's summary (`summary["data"]`).
  baselines    `classifier_method(config, ctx, ...)`: an image classifier (an MLP or any backbone of
               models/vision.py + a linear head) trained on a stream; `config.selection.kind` picks a shared baseline — "full",
               "static_random", "el2n" (highest EL2N of a proxy stage's model, kept fixed), "kcenter" —
               or the paper's own sampler / proxy rule passed in by its `method.py`.

Time-to-accuracy: set `train.target_metric` / `train.target_value`; the loop reports the first step
and the loop seconds (evaluation excluded; selection, data and compilation included) at which the
target was reached (`summary["time_to_target"]`). Selection done before the loop (a proxy stage, a
`from_previous` scoring pass) is in `summary["data"]["selection_s"]`; claims add the proxy stage.

Everything here runs on the host (numpy / scikit-learn) except the scores, which are jitted; at the
toy scales in this repo the O(n²) geometry is milliseconds to seconds.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import grain
import jax
from jax.flatten_util import ravel_pytree
import jax.numpy as jnp
import ml_collections
import numpy as np

# --------------------------------------------------------------------------- scores


def logits_of(apply_fn: Callable, params, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
  """apply_fn(params, x_batch) → logits, over `images` in fixed-size (padded) batches."""
  from paperjax.evals import classification  # pylint: disable=g-import-not-at-top
  return classification.batched_apply(apply_fn, params, np.asarray(images), batch_size)


def per_example_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  z = logits - logits.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -logp[np.arange(len(labels)), labels]


def el2n(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """EL2N score ‖softmax(logits) − onehot(label)‖₂ per example (Paul et al. 2021, eq. 2)."""
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  p[np.arange(len(labels)), labels] -= 1.0
  return np.linalg.norm(p, axis=-1)


def per_example_grads(loss_one: Callable, params, batch: dict, *, proj_dim: int = 0, seed: int = 0,
                      chunk: int = 64) -> np.ndarray:
  """[N, D] per-example gradients of `loss_one(params, example) -> scalar` (vmap of grad), flattened
  over every parameter, or [N, proj_dim] after a Gaussian random projection R/√proj_dim (the same
  R for every example, drawn from `seed`; it preserves inner products in expectation)."""
  flat_fn = lambda p, ex: ravel_pytree(jax.grad(loss_one)(p, ex))[0]
  fn = jax.jit(jax.vmap(flat_fn, in_axes=(None, 0)))
  n = len(next(iter(batch.values())))
  out = []
  proj = None
  for s in range(0, n, chunk):
    g = fn(params, {k: jnp.asarray(v[s:s + chunk]) for k, v in batch.items()})
    if proj_dim:
      if proj is None:
        proj = jax.random.normal(jax.random.PRNGKey(seed), (g.shape[1], proj_dim)) / np.sqrt(proj_dim)
      g = g @ proj
    out.append(np.asarray(g))
  return np.concatenate(out)


def grand(loss_one: Callable, params, batch: dict, chunk: int = 64) -> np.ndarray:
  """GraNd score ‖∇_θ ℓ(x, y)‖₂ per example (Paul et al. 2021, eq. 1, one initialisation)."""
  return np.linalg.norm(per_example_grads(loss_one, params, batch, chunk=chunk), axis=-1)


def embed(features_fn: Callable, params, images: np.ndarray, batch_size: int = 256, normalize: bool = False) -> np.ndarray:
  f = logits_of(features_fn, params, images, batch_size)
  return f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12) if normalize else f


def text_features(texts: Sequence[str], dim: int = 64, seed: int = 0) -> np.ndarray:
  """[N, dim] unit-norm embeddings of short texts without a pretrained encoder: character 1–3-gram
  tf-idf (scikit-learn) reduced by truncated SVD (LSA) — the offline stand-in for a sentence
  encoder when a selection rule clusters instructions."""
  from sklearn.decomposition import TruncatedSVD  # pylint: disable=g-import-not-at-top
  from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
  x = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True).fit_transform(list(texts))
  dim = int(min(dim, x.shape[1] - 1))
  f = TruncatedSVD(dim, random_state=int(seed)).fit_transform(x)
  return (f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------- geometry


def kmeans(x: np.ndarray, k: int, seed: int = 0, spherical: bool = False, n_init: int = 3):
  """(centroids [k, D], assignment [N]) by scikit-learn's k-means; spherical: rows (and centroids)
  unit-normalised, so the assignment is by cosine similarity."""
  from sklearn.cluster import KMeans  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64)
  if spherical:
    x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  km = KMeans(n_clusters=int(k), n_init=n_init, random_state=int(seed)).fit(x)
  c = km.cluster_centers_
  if spherical:
    c = c / np.maximum(np.linalg.norm(c, axis=-1, keepdims=True), 1e-12)
    return c, np.argmax(x @ c.T, axis=-1)
  return c, km.labels_


def semdedup(x: np.ndarray, centroids: np.ndarray, assign: np.ndarray, eps: float) -> np.ndarray:
  """SemDeDup (Abbas et al. 2023): boolean keep-mask over the rows of `x` (unit-norm embeddings).
  Inside each k-means cluster, members are ordered by decreasing cosine distance to the centroid
  (least prototypical first) and member j is removed when its largest cosine similarity to any
  earlier member is > 1 − eps (the triangular-max rule of the paper, so of a group of near-duplicates
  the least prototypical one is kept)."""
  x = np.asarray(x, np.float64)
  keep = np.ones(len(x), bool)
  for k in range(len(centroids)):
    idx = np.flatnonzero(assign == k)
    if len(idx) < 2:
      continue
    idx = idx[np.argsort(x[idx] @ centroids[k], kind="stable")]   # farthest from the centroid first
    sim = np.triu(x[idx] @ x[idx].T, k=1)
    keep[idx[sim.max(axis=0) > 1.0 - float(eps)]] = False
  return keep


def kcenter_greedy(x: np.ndarray, k: int, seed: int = 0, initial: Sequence[int] = ()) -> np.ndarray:
  """Farthest-first traversal: repeatedly add the point farthest (L2) from the chosen set
  (Sener & Savarese 2018's k-Center-Greedy); starts from `initial` or one random point."""
  x = np.asarray(x, np.float64)
  chosen = list(initial) or [int(np.random.default_rng(seed).integers(len(x)))]
  d = np.min(np.linalg.norm(x[:, None] - x[chosen][None], axis=-1), axis=1)
  while len(chosen) < k:
    i = int(np.argmax(d))
    chosen.append(i)
    d = np.minimum(d, np.linalg.norm(x - x[i], axis=-1))
  return np.asarray(chosen[:k], np.int64)


# --------------------------------------------------------------------------- subsets


def random_subset(n: int, k: int, seed: int) -> np.ndarray:
  return np.sort(np.random.default_rng([int(seed), 104729]).choice(n, int(k), replace=False))


def top_k(scores: np.ndarray, k: int, largest: bool = True) -> np.ndarray:
  """Indices of the k largest (or smallest) scores, ties broken by index (stable)."""
  order = np.argsort(-scores if largest else scores, kind="stable")
  return np.sort(order[:int(k)])


def subset_size(n: int, fraction: float) -> int:
  k = int(round(float(fraction) * n))
  if not 1 <= k <= n:
    raise ValueError(f"selection.fraction={fraction} keeps {k} of {n} examples; use a fraction in (0, 1].")
  return k


# --------------------------------------------------------------------------- the stream


class SubsetStream(grain.DatasetIterator):
  """Global batches of `batch_size` records from the current index set of `source`.

  Order: within round r the set is visited in passes, pass p in the permutation drawn from
  (seed, r, p); batch b of the round is positions [b·B, (b+1)·B) of those concatenated passes.
  Process i of N takes its contiguous share of each global batch. With a `sampler`, round r's set is
  `sampler(r)` and a new round starts every `round_steps` batches (0: never); `select()` starts a new
  round with the given set (a between-round hook). State: {round, step_in_round, indices,
  selection_s, next_index}; it is JSON (grain's checkpoint handler stores it beside the train state)."""

  def __init__(self, source, *, batch_size: int, seed: int, sampler: Callable[[int], np.ndarray] | None = None,
               indices: np.ndarray | None = None, round_steps: int = 0, example_fn: Callable | None = None,
               process_index: int = 0, process_count: int = 1, selection_s: float = 0.0):
    super().__init__()
    if batch_size % process_count:
      raise ValueError(f"data.batch_size={batch_size} does not divide among {process_count} processes; "
                       f"use a multiple of {process_count}.")
    self.source, self.batch_size, self.seed = source, int(batch_size), int(seed)
    self.sampler, self.round_steps, self.example_fn = sampler, int(round_steps), example_fn
    self.local = slice(process_index * batch_size // process_count, (process_index + 1) * batch_size // process_count)
    self._round, self._step, self._next, self._selection_s = 0, 0, 0, float(selection_s)
    self.labels = None  # optional: per-example labels of `source`, for the summary's class counts
    if indices is None:
      indices = self._timed(sampler, 0) if sampler is not None else np.arange(len(source))
    self._set(indices)

  # -- selection
  def _timed(self, fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    self._selection_s += time.perf_counter() - t
    return out

  def _set(self, indices):
    idx = np.asarray(indices, np.int64).reshape(-1)
    if len(idx) == 0:
      raise ValueError("The selection is empty; keep at least one example (check selection.fraction).")
    if idx.min() < 0 or idx.max() >= len(self.source):
      raise ValueError(f"The selection holds indices outside 0..{len(self.source) - 1}.")
    self.indices = idx

  def select(self, indices, cost_s: float = 0.0) -> None:
    """Start a new round on `indices` (from a hook that scored the examples; `cost_s` its time)."""
    self._set(indices)
    self._round, self._step = self._round + 1, 0
    self._selection_s += float(cost_s)

  @property
  def round(self) -> int:
    return self._round

  # -- iteration
  def _positions(self, r: int, b: int) -> np.ndarray:
    n, B = len(self.indices), self.batch_size
    pos = np.arange(b * B, (b + 1) * B)
    out = np.empty(B, np.int64)
    for p in np.unique(pos // n):
      perm = np.random.default_rng([self.seed, 31337, r, int(p)]).permutation(n)
      m = pos // n == p
      out[m] = self.indices[perm[pos[m] % n]]
    return out

  def __next__(self) -> dict:
    if self.sampler is not None and self.round_steps and self._step >= self.round_steps:
      self._round, self._step = self._round + 1, 0
      self._set(self._timed(self.sampler, self._round))
    ids = self._positions(self._round, self._step)
    recs = []
    for j, i in enumerate(ids[self.local], start=self.local.start):
      rec = self.source[int(i)]
      if self.example_fn is not None:
        rec = self.example_fn(rec, np.random.default_rng([self.seed, 7, self._next, j]))
      recs.append(rec)
    self._step += 1
    self._next += 1
    return {k: np.stack([np.asarray(r[k]) for r in recs]) for k in recs[0]}

  # -- checkpointing
  def get_state(self) -> dict:
    return {"next_index": self._next, "round": self._round, "step_in_round": self._step,
            "indices": self.indices.tolist(), "selection_s": self._selection_s}

  def set_state(self, state: dict) -> None:
    n = int(state["next_index"])
    if self.sampler is not None and self.round_steps and (
        "indices" not in state or int(state["round"]) * self.round_steps + int(state["step_in_round"]) != n):
      # Repositioned by the global step alone (the loop does this when the checkpoint was written by
      # another number of processes): model-free rounds are replayed from the sampler.
      self._round, self._step, self._next = n // self.round_steps, n % self.round_steps, n
      self._set(self.sampler(self._round))
      return
    if "indices" not in state:
      raise ValueError("This selection stream cannot be repositioned without its saved state (a hook chose its "
                       "examples); resume with the number of processes that wrote the checkpoint.")
    self._round, self._step = int(state["round"]), int(state["step_in_round"])
    self._next, self._selection_s = int(state["next_index"]), float(state.get("selection_s", 0.0))
    self._set(state["indices"])

  def summary(self) -> dict:
    out = {"rounds": self._round + 1, "subset_size": int(len(self.indices)), "source_size": len(self.source),
           "selection_s": round(self._selection_s, 4)}
    if self.labels is not None:  # which classes the current selection holds, and how many of each
      cls, cnt = np.unique(self.labels[self.indices], return_counts=True)
      out["class_counts"] = {int(c): int(n) for c, n in zip(cls, cnt)}
    return out


# --------------------------------------------------------------------------- shared baselines

BASELINES = ("full", "static_random", "el2n", "kcenter")


def config_block(**overrides) -> ml_collections.ConfigDict:
  """`config.selection`: kind (a baseline or the paper's rule), fraction kept, round length, seed."""
  return ml_collections.ConfigDict({**dict(kind="full", fraction=0.1, round_steps=0, seed=0),
                                    **overrides})


def _prep(record) -> dict:
  from paperjax.data import augment  # pylint: disable=g-import-not-at-top
  return {"image": augment.as_float_image(record["image"]), "label": np.int32(record["label"])}


def train_arrays(config, split: str | None = None, source_fn: Callable | None = None) -> tuple[object, dict]:
  """A split (the train split after `data.subset` by default) and its images/labels as float arrays;
  `source_fn(config, split)` builds a paper's own record source instead of `config.data.source`."""
  from paperjax import data as data_lib  # pylint: disable=g-import-not-at-top
  from paperjax.evals import classification  # pylint: disable=g-import-not-at-top
  split = split or config.data.get("train_split", "train")
  src = source_fn(config, split) if source_fn is not None else data_lib.build_source(config.data, split)
  n = int(config.get("eval", {}).get("max_examples", 0) or 0) if split != config.data.get("train_split", "train") else 0
  return src, classification.load_arrays(src, max_examples=n, transform=_prep)


def pixel_features(images: np.ndarray) -> np.ndarray:
  return np.asarray(images, np.float32).reshape(len(images), -1)


def pixel_pca(images: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
  """PCA-`dim` of the flattened pixels (scikit-learn): a model-free image embedding for selection toys."""
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  x = pixel_features(images)
  return PCA(n_components=min(int(dim), x.shape[1]), random_state=int(seed)).fit_transform(x)


def classifier(model_cfg, num_classes: int):
  """`model.kind` "mlp" (models/mlp.py: hidden sizes) or an image backbone + linear head (vision.Classifier)."""
  from paperjax.models import mlp, vision  # pylint: disable=g-import-not-at-top
  cfg = dict(model_cfg)
  if cfg.get("kind") == "mlp":
    return mlp.MLP(tuple(cfg.get("hidden", (128,))), int(num_classes))
  return vision.Classifier({k: v for k, v in cfg.items() if k not in ("hidden", "num_classes")}, int(num_classes))


def classifier_method(config, ctx, *, sampler_for: Callable | None = None, from_proxy: Callable | None = None,
                      between: Callable | None = None, summary_keys: Sequence[str] = ("accuracy",),
                      source_fn: Callable | None = None, keep_previous: bool = False):
  """A classifier (`classifier(config.model)`) trained with cross-entropy on a `SubsetStream`,
  evaluated by validation accuracy (`accuracy`).

  `config.selection.kind` in BASELINES picks a shared baseline; any other kind is the paper's and
  needs one of:
    sampler_for(n, arrays) -> sampler(round) -> indices     model-free selection (RS2, DQ bins)
    from_proxy(proxy_params, model, arrays) -> indices      static selection from the previous stage's
                                                            model (scored once, before training)
    between(stream, state, step, ctx) -> (state, metrics)   selection between rounds from the current model
  `source_fn(config, split)`: the paper's own record source. `keep_previous`: a fine-tuning stage —
  start from the previous stage's parameters wherever names and shapes match (a new head stays fresh).
  """
  import optax  # pylint: disable=g-import-not-at-top
  from paperjax.evals import classification  # pylint: disable=g-import-not-at-top
  from paperjax.method import Method  # pylint: disable=g-import-not-at-top
  s = config.selection
  kind = str(s.kind)
  model = classifier(config.model, int(config.model.get("num_classes", 10)))
  apply = jax.jit(lambda p, x: model.apply({"params": p}, x))
  holder: dict = {}

  def loss(params, batch, rng):
    del rng
    logits = model.apply({"params": params}, batch["image"])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    return ce, {"train_accuracy": jnp.mean(logits.argmax(-1) == batch["label"])}

  evaluators = []
  if not ctx.abstract:
    _, test = train_arrays(config, config.data.get("eval_split", "validation"), source_fn)
    evaluators = [classification.Accuracy("accuracy", test, apply, batch_size=int(config.get("eval", {}).get("batch_size", 256)))]

  def make_iterator(ctx_):
    src, arrays = train_arrays(config, source_fn=source_fn)
    n, seed = len(src), int(s.seed)
    sampler, indices, t = None, None, time.perf_counter()
    if kind == "full":
      indices = np.arange(n)
    elif kind == "static_random":
      indices = random_subset(n, subset_size(n, s.fraction), seed)
    elif kind == "kcenter":
      indices = np.sort(kcenter_greedy(pixel_features(arrays["image"]), subset_size(n, s.fraction), seed))
    elif kind == "el2n" or (kind not in BASELINES and from_proxy is not None):
      # Scored in `from_previous` from the proxy stage's parameters; until then (a single-stage run,
      # the smoke test) the full set.
      sampler = None
    elif sampler_for is not None:
      sampler = sampler_for(n, arrays)
    elif between is None:
      raise ValueError(f"selection.kind={kind!r} is unknown; use one of {BASELINES} or the paper's own kind.")
    stream = SubsetStream(src, batch_size=int(config.data.batch_size), seed=int(config.seed), sampler=sampler,
                          indices=indices, selection_s=time.perf_counter() - t if indices is not None else 0.0,
                          round_steps=int(s.round_steps), example_fn=lambda r, rng: _prep(r),
                          process_index=ctx_.process_index, process_count=ctx_.process_count)
    stream.labels = np.asarray(arrays["label"])
    holder.update(stream=stream, arrays=arrays)
    return stream

  def el2n_from_proxy(proxy_params, model_, arrays):
    del model_
    logits = logits_of(apply, proxy_params, arrays["image"])
    return top_k(el2n(logits, arrays["label"]), subset_size(len(logits), s.fraction))

  rule = el2n_from_proxy if kind == "el2n" else from_proxy

  def from_previous(prev, params, extras):
    if keep_previous:
      from paperjax.method import copy_matching  # pylint: disable=g-import-not-at-top
      params, _ = copy_matching(prev, params)
    # Otherwise the previous stage is a proxy: its parameters score the examples; training starts afresh.
    if rule is not None:
      t = time.perf_counter()
      idx = rule(prev, model, holder["arrays"])
      holder["stream"].select(idx, cost_s=time.perf_counter() - t)
    return params, extras

  hook = None
  if between is not None:
    hook = lambda state, step, ctx_: between(holder["stream"], state, step, ctx_)

  def init(rng, example):
    return model.init(rng, jnp.asarray(example["image"]))["params"]

  return Method(init=init, loss=loss, evaluators=evaluators, make_iterator=make_iterator,
                from_previous=from_previous, between=hook, model=model, summary_keys=tuple(summary_keys))


def proxy_stages(proxy_steps: int, kind: str) -> tuple:
  """Stages for a static selection scored by a proxy: `proxy` (full data, `proxy_steps`) → `train`."""
  return ({"name": "proxy", "overrides": {"selection.kind": "full", "train.steps": int(proxy_steps),
                                          "train.target_metric": ""}},
          {"name": "train", "overrides": {"selection.kind": kind}})


def apply_args(c, kv: dict, where: str, extra: str = "") -> ml_collections.ConfigDict:
  """`config_lib.apply_common_args` (steps=, seed=) where `seed=` also seeds the selection."""
  from paperjax import config_lib  # pylint: disable=g-import-not-at-top
  if "seed" in kv:
    c.selection.seed = int(kv["seed"])
  return config_lib.apply_common_args(c, kv, where, extra)

