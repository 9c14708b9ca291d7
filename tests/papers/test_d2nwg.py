"""D2NWG: the task suite (held-out pairs, label order, conditions), the zoo's per-member streams, the
flatten/unflatten round trip, the generator's VAE-then-diffusion schedule with a frozen VAE, the stages
end to end, and the claim's judge."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from configs import d2nwg as d2nwg_config
from paperjax import optim, train
from paperjax.method import Context
from paperjax.papers.d2nwg import claim, method
from paperjax.state import TrainState
from tests.conftest import shrink


def test_tasks_hold_out_pairs_and_condition_on_class_means_in_label_order():
  data = method.tasks()
  assert len(data["seen"]) == 36 and len(data["held_out"]) == 9
  seen = {frozenset(t["pair"]) for t in data["seen"]}
  assert not seen & {frozenset(t["pair"]) for t in data["held_out"]} and len(seen) == 36
  t = data["held_out"][0]
  c0, c1 = t["pair"]
  from paperjax.data import sources
  r = sources.records("builtin:digits", "validation")
  y = np.array([r[i]["label"] for i in t["val"]])
  np.testing.assert_array_equal(t["y_val"], (y == c1).astype(int))
  assert set(np.unique(y)) == {c0, c1}
  # The condition's first half is class c0's mean image (its 10 shots come from the train split).
  x0 = data["x_train"][t["train"][t["y_train"] == 0]]
  assert t["cond"].shape == (128,) and np.min(np.abs(t["cond"][:64] - x0.mean(0))) >= 0
  assert np.linalg.norm(t["cond"][:64] - x0.mean(0)) < np.linalg.norm(t["cond"][64:] - x0.mean(0))
  # Label orders are random: some tasks put the larger digit first.
  assert any(t["pair"][0] > t["pair"][1] for t in data["seen"]) and any(t["pair"][0] < t["pair"][1] for t in data["seen"])


def test_zoo_streams_feed_each_member_its_own_task_and_resume():
  data = method.tasks()
  members = [0, 0, 5]
  s = method.ZooStreams(data, members, batch_size=4, local_steps=2, seed=0)
  b = next(s)
  assert b["image"].shape == (3, 2, 4, 64) and b["label"].shape == (3, 2, 4)
  for m, t in enumerate(members):
    rows = data["x_train"][data["seen"][t]["train"]]
    assert all(any(np.array_equal(x, r) for r in rows) for x in b["image"][m].reshape(-1, 64))
  assert not np.array_equal(b["image"][0], b["image"][1])     # two seeds of one task: different batches
  state = s.get_state()
  nxt = next(s)
  s2 = method.ZooStreams(data, members, batch_size=4, local_steps=2, seed=0)
  s2.set_state(state)
  np.testing.assert_array_equal(next(s2)["image"], nxt["image"])


def test_ravel_round_trip():
  c = d2nwg_config.get_config()
  p = method.member_template(c)
  flat, unravel = ravel_pytree(p)
  assert flat.shape == (64 * 16 + 16 + 16 * 2 + 2,)      # 1,090 weights
  jax.tree.map(np.testing.assert_array_equal, unravel(flat), p)


def _generator(vae_steps=2):
  c = shrink(d2nwg_config.get_config())
  c.stages = ()
  c.d2nwg.update(phase="generator", vae_steps=vae_steps, diffusion_steps=10)
  ctx = Context(config=c, abstract=True)
  ctx.tx, ctx.lr_schedule = optim.build(c.optimizer, 10)
  return c, method.make(c, ctx), ctx


def test_generator_trains_the_vae_then_diffusion_on_the_frozen_vae():
  c, m, ctx = _generator(vae_steps=2)
  params = nn.meta.unbox(m.init(jax.random.PRNGKey(0), None))
  zoo_prev = jax.tree.map(lambda x: jnp.stack([x + i for i in range(int(c.population.clients))]),
                          method.member_template(c))
  params, extras = m.from_previous(zoo_prev, params, m.init_extras(jax.random.PRNGKey(1), params))
  np.testing.assert_allclose(np.asarray(extras["zoo"]).mean(0), 0, atol=1e-4)           # standardised
  state = TrainState.create(params, ctx.tx, rng=jax.random.PRNGKey(2), extras=extras)
  step = jax.jit(lambda s, b: m.step(s, b, ctx))
  batch = {"idx": np.arange(8, dtype=np.int32)}
  snapshots = []
  for _ in range(4):
    old_vae = state.params["vae"]
    state, metrics = step(state, batch)
    snapshots.append((old_vae, state.extras["vae_frozen"], float(metrics["phase_vae"])))
  assert [s[2] for s in snapshots] == [1.0, 1.0, 0.0, 0.0]
  jax.tree.map(np.testing.assert_array_equal, snapshots[1][1], snapshots[1][0])   # follows the VAE in phase 1
  jax.tree.map(np.testing.assert_array_equal, snapshots[3][1], snapshots[1][0])   # then frozen
  # In phase 2 the diffusion denoiser moves and the loss is the DDPM loss.
  assert np.isfinite(float(metrics["ddpm"])) and float(metrics["loss"]) == float(metrics["ddpm"])


def test_stages_run_end_to_end(tmp_path):
  c = shrink(d2nwg_config.get_config(), steps=3)
  c.d2nwg.update(diffusion_steps=10, samples_per_task=2, vae_steps=2)
  s = train.run(c, str(tmp_path))
  assert list(s["stages"]) == ["zoo", "generator"]
  for k in claim.KEYS:
    assert np.isfinite(s["eval"][k])
  import os
  assert os.path.exists(s["eval"]["filters_png"])


def test_judge():
  row = dict(generated_acc=0.9, shuffled_condition_acc=0.5, nearest_seen_task_acc=0.85, zoo_mean_acc=0.5,
             random_init_acc=0.5, vae_recon_acc_drop=0.0, finetune_steps_to_95_generated=1,
             finetune_steps_to_95_random=6, zoo_seen_acc=0.99, generated_seen_acc=0.95, final_ddpm_loss=0.05)
  out = claim.judge([row] * 3)
  assert out["passed"] and all(out["metrics"]["checks"].values())
  assert not claim.judge([dict(row, generated_acc=0.84)] * 3)["passed"]
  assert not claim.judge([dict(row, shuffled_condition_acc=0.75)] * 3)["passed"]
