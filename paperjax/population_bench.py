"""Speed of a federated round: one jitted call over all clients vs a Python loop over clients.

  python -m paperjax.population_bench --model=mlp               # digits-MLP shape, both ways
  python -m paperjax.population_bench --model=cnn --rounds=1500 # FedJAX's EMNIST recipe shape

Both sides run the same FedAvg round (`population.fedopt_step`, inner SGD, outer SGD lr 1) on the same
device-resident synthetic data of the recipe's shape:
  jitted   the whole round — broadcast, vmap over clients of a `lax.scan` over local steps, the
           weighted-mean collective, the outer step — is one `jax.jit` call (what the trainer runs);
  loop     for each client, for each local step, one call of the jitted SGD step (`step.sgd_step`,
           what the trainer runs for plain training), then the weighted mean and the outer step as
           jitted tree ops — the plain way to simulate FedAvg.
FedJAX's EMNIST recipe shape: the `emnist_conv` CNN (models/mlp.py), 28×28×1 inputs, 62 classes,
10 clients per round, client batch 10, 20 local steps (one epoch of ~200 examples, the mean client
size of federated EMNIST), 1,500 rounds. Rounds/s exclude compilation (timed after a warm-up round).
"""

from __future__ import annotations

import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from paperjax import population, sharding, step as step_lib
from paperjax.method import Context
from paperjax.models import mlp
from paperjax.state import TrainState

_MODEL = flags.DEFINE_enum("model", "mlp", ["mlp", "cnn"], "mlp: digits 8×8 MLP(64); cnn: FedJAX EMNIST CNN.")
_ROUNDS = flags.DEFINE_integer("rounds", 0, "Rounds to time (0: 50 for mlp, 5 for cnn).")
_LOOP_ROUNDS = flags.DEFINE_integer("loop_rounds", 0, "Rounds to time for the Python loop (0: same; -1: skip).")
_CLIENTS = flags.DEFINE_integer("clients", 10, "Clients per round.")
_STEPS = flags.DEFINE_integer("local_steps", 20, "Local steps per client per round.")
_BATCH = flags.DEFINE_integer("batch", 10, "Client batch size.")
_MAP = flags.DEFINE_enum("client_map", "", ["", "vmap", "map", "unroll"], "How a round maps clients (default: vmap "
                         "for mlp and on accelerators, unroll for the CNN on CPU).")
_OUT = flags.DEFINE_string("out", None, "Write the result as JSON here.")

class _Cfg(dict):
  """Attribute access over a dict: the few config fields a round reads, without ml_collections (the
  benchmark runs on accelerator images that have only jax, flax and optax)."""
  __getattr__ = dict.__getitem__


SHAPES = {"mlp": ((8, 8, 1), 10), "cnn": ((28, 28, 1), 62)}


def setup(model_name: str, clients: int, local_steps: int, batch: int, n_distinct: int = 4, seed: int = 0):
  shape, n_cls = SHAPES[model_name]
  model = mlp.MLP((64,), n_cls) if model_name == "mlp" else mlp.EmnistCNN(n_cls)
  loss = mlp.classification_loss(model)
  rng = np.random.default_rng(seed)
  rounds = [{"image": jnp.asarray(rng.random((clients, local_steps, batch) + shape, np.float32)),
             "label": jnp.asarray(rng.integers(0, n_cls, (clients, local_steps, batch)), jnp.int32),
             "client": jnp.arange(clients, dtype=jnp.int32),
             "num_examples": jnp.full((clients,), 200.0, jnp.float32)} for _ in range(n_distinct)]
  params = model.init({"params": jax.random.PRNGKey(seed)}, rounds[0]["image"][0, 0])["params"]
  return model, loss, params, rounds


def time_jitted(loss, params, rounds, n_rounds: int, client_map: str = "vmap") -> dict:
  mesh = sharding.make_mesh((population.AXIS, "data", "fsdp", "tensor"), (-1, 1, 1, 1))
  cpu_conv = client_map == "unroll"   # conv nets on CPU: straight-line clients and local steps
  cfg = _Cfg(population=_Cfg(weighting="examples", clients=0, clients_per_round=0, client_map=client_map,
                             unroll=True if cpu_conv else 1))
  inner, outer = optax.sgd(0.1), optax.sgd(1.0)
  extras = population.unbox(population.fedopt_extras(inner, cfg, keep_inner_state=False)(None, params))
  params = jax.tree.map(jnp.copy, params)  # the round donates its state: keep the caller's params
  state = TrainState.create(params, outer, rng=jax.random.PRNGKey(0), extras=extras)
  ctx = Context(config=cfg, mesh=mesh, tx=outer)
  fn = population.fedopt_step(loss, inner, cfg, keep_inner_state=False)
  round_fn = jax.jit(lambda s, b: fn(s, b, ctx), donate_argnums=(0,))
  t0 = time.perf_counter()
  state, m = round_fn(state, rounds[0])
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - t0
  state, m = round_fn(state, rounds[0])  # outputs are laid out on the mesh: one more trace for them
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for r in range(n_rounds):
    state, m = round_fn(state, rounds[r % len(rounds)])
  jax.block_until_ready(state)
  dt = time.perf_counter() - t0
  return {"rounds": n_rounds, "seconds": dt, "rounds_per_s": n_rounds / dt, "first_round_s": compile_s,
          "final_loss": float(m["loss"])}


def time_loop(loss, params, rounds, n_rounds: int) -> dict:
  inner, outer = optax.sgd(0.1), optax.sgd(1.0)
  sgd = jax.jit(step_lib.sgd_step(loss, inner, lambda s: 0.1))
  mean = jax.jit(lambda deltas, w: jax.tree.map(lambda *d: sum(wi * di for wi, di in zip(w, d)) / sum(w), *deltas))
  @jax.jit
  def server(params, opt_state, delta):
    u, opt_state = outer.update(delta, opt_state, params)
    return optax.apply_updates(params, u), opt_state
  sub = jax.jit(lambda a, b: jax.tree.map(jnp.subtract, a, b))
  opt_state = outer.init(params)
  rng = jax.random.PRNGKey(0)

  def one_round(params, opt_state, batch):
    C, H = batch["label"].shape[:2]
    deltas, w = [], []
    for c in range(C):
      s = TrainState.create(params, inner, rng=rng)
      for h in range(H):
        s, _ = sgd(s, {"image": batch["image"][c, h], "label": batch["label"][c, h]})
      deltas.append(sub(params, s.params))
      w.append(batch["num_examples"][c])
    return server(params, opt_state, mean(deltas, w))

  for _ in range(2):  # compile, and trace again for outputs laid out by the first call
    params, opt_state = one_round(params, opt_state, rounds[0])
  jax.block_until_ready(params)
  t0 = time.perf_counter()
  for r in range(n_rounds):
    params, opt_state = one_round(params, opt_state, rounds[r % len(rounds)])
  jax.block_until_ready(params)
  dt = time.perf_counter() - t0
  return {"rounds": n_rounds, "seconds": dt, "rounds_per_s": n_rounds / dt}


def run(model_name="mlp", rounds=0, loop_rounds=0, clients=10, local_steps=20, batch=10, client_map="") -> dict:
  client_map = client_map or ("unroll" if model_name == "cnn" and jax.default_backend() == "cpu" else "vmap")
  rounds = rounds or (50 if model_name == "mlp" else 5)
  loop_rounds = rounds if loop_rounds == 0 else loop_rounds
  _, loss, params, data = setup(model_name, clients, local_steps, batch)
  out = {"model": model_name, "clients_per_round": clients, "local_steps": local_steps, "client_batch": batch,
         "params": int(sum(x.size for x in jax.tree.leaves(params))),
         "device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "jax": jax.__version__,
         "host": platform.machine(), "client_map": client_map}
  out["jitted"] = time_jitted(loss, params, data, rounds, client_map)
  if loop_rounds > 0:
    out["python_loop"] = time_loop(loss, params, data, loop_rounds)
    out["speedup"] = out["jitted"]["rounds_per_s"] / out["python_loop"]["rounds_per_s"]
  out["seconds_for_1500_rounds"] = 1500 / out["jitted"]["rounds_per_s"]
  return out


def main(argv):
  del argv
  out = run(_MODEL.value, _ROUNDS.value, _LOOP_ROUNDS.value, _CLIENTS.value, _STEPS.value, _BATCH.value, _MAP.value)
  print(json.dumps(out, indent=1))
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  app.run(main)
