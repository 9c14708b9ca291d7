"""Diffusion-Based Neural Network Weights Generation (Soro et al., ICLR 2025). https://arxiv.org/abs/2402.18153

Learn to generate the weights of a network for a new dataset:
  zoo        many small networks trained on many datasets (here: binary digit tasks, a class pair each in a
             random label order), trained side by side as one population (`population.independent_step`)
  VAE        an auto-encoder over the flattened (standardised) weights: ‖w − D(E(w))‖² + β·KL, β small
  condition  c(D) = the mean input of a few samples per class, in label order (the paper: frozen CLIP
             features of a few samples per class through a set encoder)
  diffusion  DDPM ε-prediction on z = E(w) conditioned on c(D):  E‖ε − ε_θ(√ᾱ_t z + √(1−ᾱ_t) ε, t, c(D))‖²
  generate   z ~ DDPM(c(D_new)) → w = D(z) → used directly, or as the initialisation of fine-tuning
Controls: the same sampler with a shuffled condition (another held-out task's), random initialisation, the
zoo's mean weights (≈ chance: label order is random, so the mean network is symmetric), and the weights of
the seen task whose condition is nearest.

Stages (configs/d2nwg.py): `zoo` (the population of tasks × seeds) then `generator` (one stage that trains
the VAE for `d2nwg.vae_steps` steps, then the latent diffusion on the VAE frozen at that point —
`extras["vae_frozen"]` — for the remaining steps; the zoo's flattened weights sit in `extras["zoo"]`).

Deviations. Conditions are raw pixel means (no CLIP offline); one VAE over the whole 1,090-parameter
vector (the paper chunks large layers); no noise augmentation of the VAE's inputs/latents (unverified in
the digest); latents are the encoder means standardised per dimension over the zoo.
"""

from __future__ import annotations

import functools
import itertools

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from paperjax import diffusion, optim, population
from paperjax import step as step_lib
from paperjax.data import sources
from paperjax.method import Method, PaperInfo
from paperjax.models import denoisers, mlp, vae as vae_lib

PAPER = PaperInfo(slug="d2nwg", title="Diffusion-Based Neural Network Weights Generation", authors="Soro et al.",
                  year=2025, url="https://arxiv.org/abs/2402.18153", family="generative")
PHASES = ("zoo", "generator")


# --------------------------------------------------------------------------- tasks


@functools.lru_cache(maxsize=4)
def tasks(held_out: int = 9, shots: int = 10, task_seed: int = 0) -> dict:
  """All 45 digit pairs, each in a random label order (fixed by `task_seed`); the last `held_out` of a
  fixed permutation are never in the zoo. Per task: train/validation rows, labels and its condition."""
  def arrays(split):
    r = sources.records("builtin:digits", split)
    return (np.stack([r[i]["image"] for i in range(len(r))]).reshape(len(r), -1).astype(np.float32),
            np.array([r[i]["label"] for i in range(len(r))]))
  (xtr, ytr), (xva, yva) = arrays("train"), arrays("validation")
  rng = np.random.default_rng(task_seed)
  pairs = [tuple(rng.permutation(p)) for p in itertools.combinations(range(10), 2)]   # random label order
  order = rng.permutation(len(pairs))
  out = []
  for t in order:
    c0, c1 = pairs[t]
    tr, va = np.flatnonzero((ytr == c0) | (ytr == c1)), np.flatnonzero((yva == c0) | (yva == c1))
    shot = [rng.choice(np.flatnonzero(ytr == c), shots, replace=False) for c in (c0, c1)]
    cond = np.concatenate([xtr[s].mean(0) for s in shot])
    out.append(dict(pair=(int(c0), int(c1)), train=tr, val=va, y_train=(ytr[tr] == c1).astype(np.int32),
                    y_val=(yva[va] == c1).astype(np.int32), cond=cond.astype(np.float32)))
  return {"x_train": xtr, "x_val": xva, "seen": out[:len(out) - held_out], "held_out": out[len(out) - held_out:]}


class ZooStreams(grain.DatasetIterator):
  """Per round, every zoo member's minibatch of its own task: {"image": [M, H, B, 64], "label": [M, H, B],
  "client", "num_examples"}; a member's draws depend only on (seed, member, round) — checkpointable by round."""

  def __init__(self, data: dict, members: list[int], batch_size: int, local_steps: int, seed: int):
    super().__init__()
    self.data, self.members, self.B, self.H, self.seed = data, members, batch_size, local_steps, seed
    self._round = 0

  def __next__(self) -> dict:
    xs, ys = [], []
    for m, t in enumerate(self.members):
      task = self.data["seen"][t]
      idx = np.random.default_rng([self.seed, m, self._round]).integers(0, len(task["train"]), (self.H, self.B))
      xs.append(self.data["x_train"][task["train"][idx]])
      ys.append(task["y_train"][idx])
    self._round += 1
    M = len(self.members)
    return {"image": np.stack(xs), "label": np.stack(ys), "client": np.arange(M, dtype=np.int32),
            "num_examples": np.ones(M, np.float32)}

  def get_state(self) -> dict:
    return {"next_index": self._round}

  def set_state(self, state: dict) -> None:
    self._round = int(state["next_index"])


class RandomRows(grain.DatasetIterator):
  """{"idx": [B] random zoo rows} per step, fixed by (seed, step); checkpointable by step."""

  def __init__(self, n: int, batch_size: int, seed: int):
    super().__init__()
    self.n, self.B, self.seed, self._step = n, batch_size, seed, 0

  def __next__(self) -> dict:
    idx = np.random.default_rng([self.seed, 23, self._step]).integers(0, self.n, self.B).astype(np.int32)
    self._step += 1
    return {"idx": idx}

  def get_state(self) -> dict:
    return {"next_index": self._step}

  def set_state(self, state: dict) -> None:
    self._step = int(state["next_index"])


# --------------------------------------------------------------------------- method


def member_model(config) -> nn.Module:
  return mlp.MLP(hidden=tuple(config.d2nwg.member_hidden), num_classes=2)


def member_template(config):
  return nn.meta.unbox(member_model(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 64)))["params"])


def make(config, ctx) -> Method:
  g = config.d2nwg
  if g.phase not in PHASES:
    raise ValueError(f"d2nwg.phase={g.phase!r} is unknown; use one of {PHASES}.")
  data = tasks(int(g.held_out), int(g.shots))
  seeds = int(g.seeds_per_task)
  members = [t for t in range(len(data["seen"])) for _ in range(seeds)]
  M = len(members)
  net = member_model(config)
  if int(config.population.clients) != M:
    raise ValueError(f"population.clients={config.population.clients} must equal the zoo size "
                     f"{len(data['seen'])} tasks × {seeds} seeds = {M}; set it with configs/d2nwg.py.")

  if g.phase == "zoo":
    inner_tx = optim.build(config.population.inner_optimizer, int(config.train.steps) * int(config.population.local_steps))[0]
    loss = mlp.classification_loss(net)

    def init(rng, ex):
      keys = jax.random.split(rng, M)
      return population.boxed(jax.vmap(lambda r: nn.meta.unbox(net.init(r, jnp.zeros((1, 64)))["params"]))(keys))

    return Method(init=init, loss=loss, step=population.independent_step(loss, inner_tx),
                  init_extras=population.independent_extras(inner_tx),
                  make_iterator=lambda ctx_: ZooStreams(data, members, int(config.population.batch_size),
                                                        int(config.population.local_steps), int(config.seed)),
                  batch_axis=population.AXIS, model=net)

  # generator: VAE, then latent DDPM conditioned on the task.
  template = member_template(config)
  P = ravel_pytree(template)[0].shape[0]
  latent, T, vae_steps = int(g.latent), int(g.diffusion_steps), int(g.vae_steps)
  vae = vae_lib.MLPVAE(P, latent, tuple(g.vae_hidden))
  den = denoisers.build(config.model, (latent,))
  cond_members = jnp.asarray(np.stack([data["seen"][t]["cond"] for t in members]))

  def init(rng, ex):
    a, b = jax.random.split(rng)
    return {"vae": vae.init(a, jnp.zeros((1, P)))["params"],
            "denoiser": den.init(b, jnp.zeros((1, latent)), jnp.zeros((1,)), None, jnp.zeros((1, cond_members.shape[1])))["params"]}

  def init_extras(rng, params):
    return {"zoo": jnp.zeros((M, P)), "mean": jnp.zeros((P,)), "std": jnp.ones((P,)), "vae_frozen": params["vae"]}

  def from_previous(prev, params, extras):
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(prev)
    if flat.shape != (M, P):
      raise ValueError(f"The generator stage needs the zoo stage's {M} members of {P} weights (got {flat.shape}); "
                       "run configs/d2nwg.py's stages in order.")
    mean, std = flat.mean(0), flat.std(0) + 1e-6
    return params, {**extras, "zoo": (flat - mean) / std, "mean": mean, "std": std}

  def latents(vae_params, zoo):
    mu, _ = vae.apply({"params": vae_params}, zoo, method=vae_lib.MLPVAE.encode)
    return mu, mu.mean(0), mu.std(0) + 1e-6

  eps_fn = lambda p, zt, t, c: den.apply({"params": p}, zt, t.astype(jnp.float32), None, c)

  def loss_fn(params, batch, rng, state):
    zoo = state.extras["zoo"]
    x = zoo[batch["idx"]]
    r1, r2 = jax.random.split(rng)
    vae_value, vae_aux = vae_lib.vae_loss(vae, params["vae"], x, r1, float(g.beta))
    mu, zm, zs = latents(state.extras["vae_frozen"], zoo)
    z0 = jax.lax.stop_gradient((mu[batch["idx"]] - zm) / zs)
    c = cond_members[batch["idx"]]
    diff_value = jnp.mean(diffusion.ddpm_loss(lambda zt, t: eps_fn(params["denoiser"], zt, t, c), z0, r2, T))
    in_vae = state.step < vae_steps
    value = jnp.where(in_vae, vae_value, diff_value)
    frozen = jax.tree.map(lambda a, b: jnp.where(in_vae, a, b), params["vae"], state.extras["vae_frozen"])
    return value, ({**vae_aux, "ddpm": diff_value, "phase_vae": in_vae.astype(jnp.float32)}, {"vae_frozen": frozen})

  evaluators = [] if ctx is None or ctx.abstract else [WeightGenEval(config, data, members, net, vae, den, eps_fn, latents)]
  return Method(init=init, loss=loss_fn, step=step_lib.stateful_sgd_step(loss_fn), init_extras=init_extras,
                from_previous=from_previous,
                make_iterator=lambda ctx_: RandomRows(M, int(config.data.batch_size), int(config.seed)),
                eval_params=lambda state: {"params": state.params, "extras": state.extras}, evaluators=evaluators,
                model=den, summary_keys=("generated_acc", "generated_seen_acc", "shuffled_condition_acc",
                                         "nearest_seen_task_acc", "zoo_mean_acc", "random_init_acc",
                                         "vae_recon_acc_drop", "finetune_steps_to_95_generated",
                                         "finetune_steps_to_95_random", "filters_png"))


def accuracy_fn(net):
  def acc(params, x, y, mask):
    return jnp.sum(mask * (net.apply({"params": params}, x).argmax(-1) == y)) / jnp.sum(mask)
  return acc


def padded(x: np.ndarray, y: np.ndarray, n: int):
  """(x, y, mask) padded to n rows, so every task's evaluation reuses one compilation."""
  pad = n - len(x)
  return (jnp.asarray(np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])),
          jnp.asarray(np.concatenate([y, np.zeros(pad, y.dtype)])),
          jnp.asarray(np.concatenate([np.ones(len(x)), np.zeros(pad)]).astype(np.float32)))


class WeightGenEval:
  """Held-out tasks: accuracy of generated weights (no training; also on as many seen tasks), with a shuffled condition, of the
  nearest seen task's zoo member, of the zoo's mean weights and of random initialisations; the VAE's
  reconstruction accuracy drop on the zoo; fine-tuning steps to 95% from generated vs random weights."""
  name = "weight_generation"

  def __init__(self, config, data, members, net, vae, den, eps_fn, latents):
    self.g, self.data, self.members, self.net = config.d2nwg, data, members, net
    self.vae, self.eps_fn, self.latents = vae, eps_fn, latents
    self.unravel = ravel_pytree(member_template(config))[1]
    self.acc = jax.jit(accuracy_fn(net))
    self.inner = config.population.inner_optimizer
    self.seed = int(config.seed)
    T, n = int(self.g.diffusion_steps), int(self.g.samples_per_task)

    def generate(params, extras, cond, rng):
      z = diffusion.ddpm_sample(lambda zt, t: eps_fn(params["denoiser"], zt, t, jnp.broadcast_to(cond, (n,) + cond.shape)),
                                (n, int(self.g.latent)), rng, T)
      _, zm, zs = latents(extras["vae_frozen"], extras["zoo"])
      w = vae.apply({"params": extras["vae_frozen"]}, z * zs + zm, method=vae_lib.MLPVAE.decode)
      return w * extras["std"] + extras["mean"]
    self.generate = jax.jit(generate)

  def save_filters(self, gen: np.ndarray, task: dict, workdir: str, step: int) -> str:
    """First-layer filters (8x8 each) of the networks generated for a held-out task, one row per network."""
    import os  # pylint: disable=g-import-not-at-top
    from paperjax.evals import generative  # pylint: disable=g-import-not-at-top
    kernels = [np.asarray(self.unravel(w)["hidden_0"]["kernel"]).T.reshape(-1, 8, 8, 1) for w in gen]
    k = np.concatenate(kernels)
    k = (k - k.min()) / max(float(k.max() - k.min()), 1e-12)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    path = os.path.join(workdir, "samples", f"generated_filters_pair{task['pair'][0]}{task['pair'][1]}_step{step}.png")
    return generative.save_image_grid(k, path, cols=kernels[0].shape[0])

  def task_arrays(self, task, split):
    n = max(len(t[split]) for t in self.data["seen"] + self.data["held_out"])
    return padded(self.data[f"x_{split}"][task[split]], task[f"y_{split}"], n)

  def mean_acc(self, flat_ws, task) -> float:
    x, y, mask = self.task_arrays(task, "val")
    return float(np.mean([float(self.acc(self.unravel(w), x, y, mask)) for w in flat_ws]))

  @functools.cached_property
  def _finetune(self):
    """(params, train (x, y, mask), val (x, y, mask)) → validation accuracy after each of 50 full-batch
    steps of the zoo's optimizer."""
    max_steps = 50
    tx = optim.build(self.inner, max_steps)[0]
    net, acc = self.net, accuracy_fn(self.net)

    def run(p, xtr, ytr, mtr, xva, yva, mva):
      def loss(q):
        ce = optax.softmax_cross_entropy_with_integer_labels(net.apply({"params": q}, xtr), ytr)
        return jnp.sum(mtr * ce) / jnp.sum(mtr)

      def one(carry, _):
        p, o = carry
        u, o = tx.update(jax.grad(loss)(p), o, p)
        p = optax.apply_updates(p, u)
        return (p, o), acc(p, xva, yva, mva)
      _, accs = jax.lax.scan(one, (p, tx.init(p)), None, length=max_steps)
      return accs
    return jax.jit(run)

  def steps_to(self, flat_w, task, target: float = 0.95) -> int:
    accs = np.asarray(self._finetune(self.unravel(flat_w), *self.task_arrays(task, "train"), *self.task_arrays(task, "val")))
    hit = np.flatnonzero(accs >= target)
    return int(hit[0]) + 1 if len(hit) else len(accs) + 1

  def __call__(self, both, ctx) -> dict:
    params, extras = both["params"], both["extras"]
    zoo = np.asarray(extras["zoo"]) * np.asarray(extras["std"]) + np.asarray(extras["mean"])
    held = self.data["held_out"]
    seen_conds = np.stack([t["cond"] for t in self.data["seen"]])
    rng = jax.random.PRNGKey(self.seed + 101)
    out = {k: [] for k in ("generated_acc", "shuffled_condition_acc", "nearest_seen_task_acc", "zoo_mean_acc",
                           "random_init_acc", "finetune_steps_to_95_generated", "finetune_steps_to_95_random")}
    for h, task in enumerate(held):
      gen = np.asarray(self.generate(params, extras, jnp.asarray(task["cond"]), jax.random.fold_in(rng, h)))
      if h == 0:
        gen_first = gen
      out["generated_acc"].append(self.mean_acc(gen, task))
      other = held[(h + 1) % len(held)]["cond"]
      shuf = np.asarray(self.generate(params, extras, jnp.asarray(other), jax.random.fold_in(rng, h)))
      out["shuffled_condition_acc"].append(self.mean_acc(shuf, task))
      near = int(np.argmin(((seen_conds - task["cond"]) ** 2).sum(1)))
      out["nearest_seen_task_acc"].append(self.mean_acc(zoo[[m for m, t in enumerate(self.members) if t == near]], task))
      out["zoo_mean_acc"].append(self.mean_acc(zoo.mean(0, keepdims=True), task))
      rand = [ravel_pytree(nn.meta.unbox(self.net.init(jax.random.PRNGKey(1000 + k), jnp.zeros((1, 64)))["params"]))[0]
              for k in range(len(gen))]
      out["random_init_acc"].append(self.mean_acc(np.stack(rand), task))
      out["finetune_steps_to_95_generated"].append(self.steps_to(gen[0], task))
      out["finetune_steps_to_95_random"].append(self.steps_to(np.asarray(rand[0]), task))
    res = {k: float(np.mean(v)) for k, v in out.items()}
    # The same sampler on tasks the zoo was trained on: does it reproduce what it has seen (a working
    # generator that does not generalise) or not even that?
    seen = self.data["seen"][:len(held)]
    res["generated_seen_acc"] = float(np.mean([
        self.mean_acc(np.asarray(self.generate(params, extras, jnp.asarray(t["cond"]), jax.random.fold_in(rng, 1000 + i))), t)
        for i, t in enumerate(seen)]))
    # VAE reconstruction on the zoo (the frozen VAE that the diffusion model was trained on).
    rec = np.asarray(self.vae.apply({"params": extras["vae_frozen"]}, extras["zoo"])) * np.asarray(extras["std"]) + np.asarray(extras["mean"])
    drops = []
    for m in range(0, len(self.members), max(1, len(self.members) // 30)):
      task = self.data["seen"][self.members[m]]
      drops.append(self.mean_acc(zoo[m:m + 1], task) - self.mean_acc(rec[m:m + 1], task))
    res["vae_recon_acc_drop"] = float(np.mean(drops))
    workdir = getattr(ctx, "workdir", None)
    if workdir and getattr(ctx, "process_index", 0) == 0:
      res["filters_png"] = self.save_filters(gen_first, held[0], workdir, int(getattr(ctx, "step", 0)))
    res["zoo_seen_acc"] = float(np.mean([self.mean_acc(zoo[m:m + 1], self.data["seen"][self.members[m]])
                                         for m in range(0, len(self.members), max(1, len(self.members) // 30))]))
    return res
