"""The shared selection module: scores against their formulas, geometry, and the subset stream
(exact round sizes, determinism, checkpointed state, resume through the loop)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax import selection


def test_el2n_and_ce_match_the_formulas():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  labels = np.array([0, 2])
  p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  want = np.linalg.norm(p - np.eye(3)[labels], axis=-1)
  np.testing.assert_allclose(selection.el2n(logits, labels), want, rtol=1e-6)
  np.testing.assert_allclose(selection.per_example_ce(logits, labels), -np.log(p[[0, 1], labels]), rtol=1e-6)


def test_per_example_grads_equal_one_by_one_grads_and_projection_preserves_norms():
  rng = np.random.default_rng(0)
  params = {"w": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32), "b": jnp.zeros(3)}
  x, y = rng.normal(size=(6, 5)).astype(np.float32), rng.integers(0, 3, 6)

  def loss_one(p, ex):
    logits = ex["x"] @ p["w"] + p["b"]
    return -jax.nn.log_softmax(logits)[ex["y"]]

  g = selection.per_example_grads(loss_one, params, {"x": x, "y": y}, chunk=6)
  grad_one = jax.jit(jax.grad(loss_one))
  for i in range(6):
    gi = grad_one(params, {"x": x[i], "y": y[i]})
    want = np.concatenate([np.ravel(gi["b"]), np.ravel(gi["w"])])  # ravel_pytree: keys sorted
    np.testing.assert_allclose(g[i], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(selection.grand(loss_one, params, {"x": x, "y": y}, chunk=6), np.linalg.norm(g, axis=-1), rtol=1e-5)
  gp = selection.per_example_grads(loss_one, params, {"x": x, "y": y}, proj_dim=4000, seed=1, chunk=6)
  assert gp.shape == (6, 4000)
  np.testing.assert_allclose(np.linalg.norm(gp, axis=-1), np.linalg.norm(g, axis=-1), rtol=0.1)


def test_kcenter_greedy_is_farthest_first():
  x = np.array([[0.0], [1.0], [10.0], [4.0], [6.0]])
  got = selection.kcenter_greedy(x, 3, initial=[0])
  assert got.tolist() == [0, 2, 3]  # 10 is farthest from 0; then 4 (distance 4 to {0, 10}) beats 6 (4) by index
  assert selection.top_k(np.array([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [1, 3]


def test_kmeans_spherical_assigns_by_cosine():
  x = np.array([[1, 0.1], [2, 0.0], [0, 1], [0.1, 3]], float)
  c, a = selection.kmeans(x, 2, seed=0, spherical=True)
  np.testing.assert_allclose(np.linalg.norm(c, axis=-1), 1.0, rtol=1e-6)
  assert a[0] == a[1] != a[2] == a[3]


class _Src:
  def __init__(self, n):
    self.n = n

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"x": np.int32(i)}


def test_stream_rounds_are_exact_and_the_state_restores_the_selection():
  sampler = lambda r: np.arange(10 * r, 10 * r + 10) % 50
  s = selection.SubsetStream(_Src(50), batch_size=5, seed=3, sampler=sampler, round_steps=2)
  seen = [next(s)["x"] for _ in range(4)]
  assert sorted(np.concatenate(seen[:2]).tolist()) == list(range(10))       # round 0 = its set, once
  assert sorted(np.concatenate(seen[2:]).tolist()) == list(range(10, 20))   # round 1
  state = s.get_state()
  a = [next(s)["x"].tolist() for _ in range(3)]
  t = selection.SubsetStream(_Src(50), batch_size=5, seed=3, sampler=sampler, round_steps=2)
  t.set_state(state)
  assert [next(t)["x"].tolist() for _ in range(3)] == a
  r = selection.SubsetStream(_Src(50), batch_size=5, seed=3, sampler=sampler, round_steps=2)
  r.set_state({**r.get_state(), "next_index": 4})  # the loop's reposition by global step (other process count)
  assert [next(r)["x"].tolist() for _ in range(3)] == a
  s.select([7, 8, 9], cost_s=0.5)       # a hook's selection starts a new round on exactly that set
  assert set(next(s)["x"].tolist()) <= {7, 8, 9}
  u = selection.SubsetStream(_Src(50), batch_size=5, seed=3)
  u.set_state(s.get_state())
  assert u.indices.tolist() == [7, 8, 9] and u.summary()["selection_s"] >= 0.5
  with pytest.raises(ValueError, match="outside"):
    s.select([50])


def test_stream_splits_global_batches_between_processes():
  one = selection.SubsetStream(_Src(30), batch_size=6, seed=1)
  parts = [selection.SubsetStream(_Src(30), batch_size=6, seed=1, process_index=p, process_count=2) for p in range(2)]
  for _ in range(7):
    assert next(one)["x"].tolist() == next(parts[0])["x"].tolist() + next(parts[1])["x"].tolist()


def test_a_resumed_run_trains_on_the_same_selected_examples(tmp_path):
  """EL2N coreset from a proxy stage: stop mid-way, resume — the same subset, the same parameters."""
  from configs import rs2 as cfg_lib
  from paperjax import train

  def cfg(stop_at):
    c = cfg_lib.get_config("el2n")
    c.stages = ({"name": "proxy", "overrides": {"selection.kind": "full", "train.steps": 2, "train.target_metric": ""}},
                {"name": "train", "overrides": {"selection.kind": "el2n"}})
    c.train.update(steps=6, stop_at=stop_at, eval_every=0, log_every=2, progress=False)
    c.data.batch_size = 8
    return c

  straight = train.run(cfg(0), str(tmp_path / "a"))
  train.run(cfg(4), str(tmp_path / "b"))
  resumed = train.run(cfg(0), str(tmp_path / "b"))
  assert resumed["step"] == 6 and resumed["data"]["subset_size"] == straight["data"]["subset_size"] == 144
  for a, b in zip(jax.tree.leaves(straight["final_params"]), jax.tree.leaves(resumed["final_params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_between_hook_selects_what_the_loop_trains_on_and_logs_its_metrics(tmp_path, monkeypatch):
  """The loop's seam: `between` may return (state, metrics); the stream then trains on the hook's set."""
  import json
  from configs import rs2 as cfg_lib
  from paperjax import registry, train

  calls = []

  def hook(stream, state, step, ctx):
    # the lowest-loss 100 examples under the current model (a score of the current parameters)
    arrays = selection.train_arrays(ctx.config)[1]
    model = selection.classifier(ctx.config.model, 10)
    logits = selection.logits_of(jax.jit(lambda p, x: model.apply({"params": p}, x)), state.params, arrays["image"])
    idx = selection.top_k(selection.per_example_ce(logits, arrays["label"]), 100, largest=False)
    stream.select(idx, cost_s=0.01)
    calls.append(step)
    return state, {"selected": len(idx)}

  monkeypatch.setattr(registry, "make", lambda config, ctx: selection.classifier_method(config, ctx, between=hook))
  c = cfg_lib.get_config("tiny")
  c.selection.kind = "lowest_loss"
  c.train.update(steps=6, between_every=2, eval_every=0, log_every=2, progress=False, target_metric="")
  c.data.batch_size = 8
  s = train.run(c, str(tmp_path))
  assert calls == [2, 4, 6] and s["data"]["subset_size"] == 100 and s["data"]["rounds"] == 4
  logged = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["between/selected"] for r in logged if "between/selected" in r] == [100, 100, 100]
