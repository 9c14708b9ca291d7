"""Decentralized Diffusion Models (McAllister et al., 2025). https://arxiv.org/abs/2501.05450

The data are split into K clusters by k-means; K flow-matching experts train in complete isolation,
expert k on cluster k only:

  x_t = (1−t)·x₀ + t·ε,   L_k = E_{x₀ ∈ S_k, t ~ U(0,1), ε} ‖v_θk(x_t, t) − (ε − x₀)‖²

and a router r_φ(k | x_t, t) is trained as a K-way classifier of x₀'s cluster from the noisy input.
Sampling integrates dx/dt = v(x, t) from t = 1 to 0 with the ensemble v = Σ_k r_φ(k | x_t, t)·v_θk(x_t, t),
or with the top-k experts under the router (renormalised). The justification: the global marginal flow
is u_t(x) = Σ_k p(k | x_t = x)·u_t^k(x) (u_t^k: cluster k's own marginal flow), so if every expert
learns its cluster's flow and the router learns the posterior, the ensemble is the monolith's flow
(tests/papers/test_ddm.py checks the identity with exact flows and the exact posterior).

Stages (configs/ddm.py): `experts` — `population.independent_step`: the K experts stacked on the
population axis (`clients`), each on its own cluster's stream, no collective in the step (asserted on
its jaxpr); `router` — the shared loop's plain step on all data, the experts frozen in
`extras["experts"]`, evaluated with ensemble and top-1 sampling. The baseline (`variant=monolith`) is
one flow-matching model of the same architecture trained for K × the experts' steps (equal training
FLOPs).

Deviations. k-means on raw coordinates (2-D) or 16 PCA components of the pixels (images) instead of
DINOv2 features (not available offline); the router is an MLP of the experts' shape (the paper: a
small DiT); top-1 evaluates every expert and picks one (the same samples as sparse routing, not its
cost); Euler sampling with a fixed number of steps (the paper uses its backbone's sampler).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from paperjax import diffusion, optim, population, selection
from paperjax.data import partition, sources
from paperjax.evals import generative
from paperjax.method import Method, PaperInfo
from paperjax.models import denoisers

PAPER = PaperInfo(slug="ddm", title="Decentralized Diffusion Models", authors="McAllister, Tancik, Song, Kanazawa",
                  year=2025, url="https://arxiv.org/abs/2501.05450", family="generative")
PHASES = ("experts", "router", "monolith")


# --------------------------------------------------------------------------- the paper's rules


def ensemble_velocity(weights_BK, velocities_KBD):
  """v = Σ_k r(k | x_t, t)·v_k: [B, K] router weights (rows sum to 1) × [K, B, ...] expert velocities."""
  w = jnp.moveaxis(weights_BK, -1, 0)
  return jnp.sum(w.reshape(w.shape + (1,) * (velocities_KBD.ndim - 2)) * velocities_KBD, axis=0)


def top_k_weights(weights_BK, k: int):
  """The router's k largest weights per row, renormalised to sum to 1 (sparse routing); k = K: unchanged."""
  K = weights_BK.shape[-1]
  if k >= K:
    return weights_BK
  kth = jnp.sort(weights_BK, axis=-1)[:, K - k][:, None]
  kept = jnp.where(weights_BK >= kth, weights_BK, 0.0)
  return kept / jnp.sum(kept, axis=-1, keepdims=True)


def noisy(x0, t, eps):
  b = diffusion.bcast(t, x0)
  return (1 - b) * x0 + b * eps


def t_embed(t):
  """The flow time as the network's noise input (DDPM positional embedding of 1000·t)."""
  return 1000.0 * t


# --------------------------------------------------------------------------- clusters


def cluster_features(x: np.ndarray, pca=None) -> np.ndarray:
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  return pca.transform(x) if pca is not None else x


def clusters(config) -> dict:
  """k-means of the training data: centroids, the PCA (images) and each training example's cluster
  (cached per source, K, seed and PCA size: every stage and evaluator sees the same partition)."""
  return _clusters(config.data.source, int(config.ddm.experts), int(config.seed), int(config.ddm.pca_dims))


@functools.lru_cache(maxsize=8)
def _clusters(source: str, K: int, seed: int, pca_dims: int) -> dict:
  field, shape = diffusion.data_field(source)
  src = sources.records(source, "train")
  x = np.stack([diffusion.to_float_image(src[i]) if field == "image" else np.asarray(src[i][field], np.float32)
                for i in range(len(src))])
  pca = None
  if x[0].size > pca_dims > 0:
    from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
    pca = PCA(pca_dims, random_state=0).fit(x.reshape(len(x), -1))
  feats = cluster_features(x, pca)
  # Lloyd on a fixed subsample of ≤ 5,000 points; every example then goes to its nearest centroid.
  fit = np.random.default_rng(seed).permutation(len(feats))[:5000]
  centroids, _ = selection.kmeans(feats[fit], K, seed=seed)
  assign = nearest(feats, centroids)
  return {"field": field, "shape": shape, "centroids": centroids, "pca": pca, "assign": assign, "x": x}


def nearest(feats: np.ndarray, centroids: np.ndarray) -> np.ndarray:
  d = ((feats[:, None, :] - centroids[None]) ** 2).sum(-1)
  return d.argmin(1).astype(np.int32)


# --------------------------------------------------------------------------- method


def make(config, ctx) -> Method:
  d = config.ddm
  if d.phase not in PHASES:
    raise ValueError(f"ddm.phase={d.phase!r} is unknown; use one of {PHASES}.")
  K = int(d.experts)
  cl = clusters(config)
  field, shape = cl["field"], cl["shape"]
  to_model, from_model = diffusion.scalers(field)
  model = denoisers.build(config.model, shape)
  router = denoisers.build(config.model, shape, kind="mlp", out_dim=K)
  velocity = lambda p, x, t: model.apply({"params": p}, x, t_embed(t))

  def fm_loss(params, batch, rng):
    x0 = to_model(batch[field].astype(jnp.float32))
    return jnp.mean(diffusion.flow_matching_loss(lambda x, t: velocity(params, x, t), x0, rng)), {}

  def init_one(rng):
    return model.init(rng, jnp.zeros((1,) + shape), jnp.zeros((1,)))["params"]

  example_fn = (lambda ex, rng: {"image": diffusion.to_float_image(ex)}) if field == "image" else None
  abstract = ctx is None or getattr(ctx, "abstract", False)

  if d.phase == "monolith":
    evals = [] if abstract else _evaluators(config, sample_fns(config, velocity, None, K, shape, from_model),
                                            ("monolith",))
    return Method(init=lambda rng, ex: init_one(rng), loss=fm_loss, example_fn=example_fn, evaluators=evals,
                  model=model, summary_keys=_summary_keys(("monolith",)))

  if d.phase == "experts":
    population.check_mesh(ctx.mesh, K)
    inner_tx = optim.build(config.population.inner_optimizer, int(config.train.steps) * int(config.population.local_steps))[0]
    parts = [np.flatnonzero(cl["assign"] == k) for k in range(K)]

    def make_iterator(ctx_):
      src = sources.records(config.data.source, "train")
      p = config.population
      return partition.ClientStreams(src, parts, batch_size=int(p.batch_size), local_steps=int(p.local_steps),
                                     seed=int(config.seed), example_fn=(lambda ex: example_fn(ex, None)) if example_fn else None,
                                     process_index=ctx_.process_index, process_count=ctx_.process_count)

    # Different initialisations per expert (they are independent models, not branches of one).
    init = lambda rng, ex: population.stack_members([init_one(r) for r in jax.random.split(rng, K)])
    return Method(init=init, loss=fm_loss, step=population.independent_step(fm_loss, inner_tx),
                  init_extras=population.independent_extras(inner_tx), make_iterator=make_iterator,
                  batch_axis=population.AXIS, model=model, summary_keys=tuple(f"loss/member{k}" for k in range(K)))

  # router: a K-way classifier of x₀'s cluster from (x_t, t); the experts sit frozen in extras.
  centroids, pca = cl["centroids"], cl["pca"]

  def router_example(ex, rng):
    x = diffusion.to_float_image(ex) if field == "image" else np.asarray(ex[field], np.float32)
    return {field: x, "cluster": nearest(cluster_features(x[None], pca), centroids)[0]}

  def router_loss(params, batch, rng):
    x0 = to_model(batch[field].astype(jnp.float32))
    t_rng, e_rng = jax.random.split(rng)
    t = jax.random.uniform(t_rng, (x0.shape[0],))
    xt = noisy(x0, t, jax.random.normal(e_rng, x0.shape))
    logits = router.apply({"params": params}, xt, t_embed(t))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["cluster"]).mean()
    return ce, {"router_accuracy": jnp.mean(logits.argmax(-1) == batch["cluster"])}

  def init_extras(rng, params):
    return {"experts": population.stack_members([init_one(r) for r in jax.random.split(rng, K)])}

  def from_previous(prev, params, extras):
    if jax.tree.structure(prev) != jax.tree.structure(extras["experts"]):
      raise ValueError("The router stage needs the experts stage's stacked experts as the previous stage; "
                       "run configs/ddm.py's stages in order (experts, then router).")
    return params, {**extras, "experts": prev}

  route = lambda p, x, t: jax.nn.softmax(router.apply({"params": p}, x, t_embed(t)), axis=-1)
  modes = tuple(m for m in ("ensemble", "top1", "top2") if m != "top2" or K > 2)
  evals = [] if abstract else _evaluators(config, sample_fns(config, velocity, route, K, shape, from_model), modes)
  if not abstract:
    evals.append(RouterAccuracy(route, cl, to_model, float(d.router_eval_seed)))
  return Method(init=lambda rng, ex: router.init(rng, jnp.zeros((1,) + shape), jnp.zeros((1,)))["params"],
                loss=router_loss, init_extras=init_extras, from_previous=from_previous, example_fn=router_example,
                eval_params=lambda state: {"router": state.params, "experts": state.extras["experts"]},
                evaluators=evals, model=router,
                summary_keys=_summary_keys(modes) + ("router_acc_t0.05", "router_acc_t0.5", "router_acc_t0.95"))


def sample_fns(config, velocity, route, K: int, shape, from_model) -> dict:
  """{mode: jitted sample(params, rng, n)} with Euler steps of the monolith, the ensemble or top-k."""
  steps = int(config.ddm.sample_steps)

  def make_sampler(mode):
    def sample(params, rng, n):
      z = jax.random.normal(rng, (n,) + shape)
      if mode == "monolith":
        v = lambda x, t: velocity(params, x, t)
      else:
        k = K if mode == "ensemble" else int(mode[3:])

        def v(x, t):
          vel = jax.vmap(lambda p: velocity(p, x, t))(params["experts"])
          return ensemble_velocity(top_k_weights(route(params["router"], x, t), k), vel)
      return from_model(diffusion.euler_flow_sample(v, z, steps))
    return jax.jit(sample, static_argnums=2)

  modes = ("monolith",) if route is None else ("ensemble", "top1", "top2")
  return {m: make_sampler(m) for m in modes}


def _evaluators(config, samplers: dict, modes) -> list:
  ref = generative.reference(config)
  return [generative.SampleQuality(m, samplers[m], **ref) for m in modes]


def _summary_keys(modes) -> tuple[str, ...]:
  return tuple(f"{m}_{k}" for m in modes for k in ("energy_distance", "mmd", "modes_covered", "within_3std",
                                                    "fd_digits", "png"))


class RouterAccuracy:
  """The router's accuracy at predicting x₀'s cluster from x_t at t ∈ {0.05, 0.5, 0.95} (2,000 training
  examples, one fixed noise draw):
  high near t = 0, near chance (the largest cluster's share) near t = 1."""
  name = "router_accuracy"

  def __init__(self, route, cl, to_model, seed: float = 0.0):
    self.route, self.cl, self.to_model, self.seed = route, cl, to_model, int(seed)

  def __call__(self, params, ctx) -> dict:
    x = jnp.asarray(self.to_model(self.cl["x"][:2000]))
    y = np.asarray(self.cl["assign"][:2000])
    out = {}
    for t in (0.05, 0.5, 0.95):
      eps = jax.random.normal(jax.random.PRNGKey(self.seed), x.shape)
      tt = jnp.full((x.shape[0],), t)
      p = jax.device_get(jax.jit(self.route)(params["router"], noisy(x, tt, eps), tt))
      out[f"router_acc_t{t:g}"] = float(np.mean(np.asarray(p).argmax(-1) == y))
    out["router_chance"] = float(np.bincount(y).max() / len(y))
    return out

