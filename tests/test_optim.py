"""`optimizer.param_copy`: the optimizer writes the weight kernels in the compute dtype, and the step
differentiates that copy instead of casting the fp32 kernels every step — the same numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paperjax import bench, optim
from paperjax import step as step_lib
from tests.conftest import needs_cuda_plugin, run_for_h100


def _params():
  r = np.random.default_rng(0)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  return {"dense": {"kernel": f(3, 2), "bias": f(2)}, "embed": {"embedding": f(5, 2)}, "norm": {"scale": f(2)}}


def test_param_copy_keeps_the_kernels_cast_from_the_updated_parameters():
  params = _params()
  tx = optim.with_param_copy(optax.adamw(0.1, weight_decay=0.1), jnp.bfloat16)
  state = tx.init(params)
  masked = lambda x: isinstance(x, optax.MaskedNode)
  assert state.copy["dense"]["kernel"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(state.copy["dense"]["kernel"], params["dense"]["kernel"].astype(jnp.bfloat16))
  assert all(masked(state.copy[k][n]) for k, n in (("dense", "bias"), ("embed", "embedding"), ("norm", "scale")))

  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  updates, state = tx.update(grads, state, params)
  new = optax.apply_updates(params, updates)
  # Adam's first update is -lr·sign(g) (plus decay): the kernel moved, and the copy is the moved one.
  want = params["dense"]["kernel"] - 0.1 * (1.0 + 0.1 * params["dense"]["kernel"])
  np.testing.assert_allclose(new["dense"]["kernel"], want, atol=2e-6)
  np.testing.assert_array_equal(state.copy["dense"]["kernel"], new["dense"]["kernel"].astype(jnp.bfloat16))

  view = optim.compute_params(new, state)
  assert view["dense"]["kernel"] is state.copy["dense"]["kernel"]
  assert all(view[k][n] is new[k][n] for k, n in (("dense", "bias"), ("embed", "embedding"), ("norm", "scale")))
  plain = optax.adamw(0.1).init(params)
  assert optim.compute_params(params, plain) is params
  with pytest.raises(ValueError, match="needs the parameters"):
    tx.update(grads, state)


def test_build_wraps_the_optimizer_and_refuses_bad_options():
  opt = bench.AttrDict(name="adamw", lr=1e-3, warmup_steps=0, schedule="constant", clip_norm=1.0, param_copy="bfloat16")
  tx, _ = optim.build(opt, 10)
  assert isinstance(tx.init(_params()), optim.ParamCopyState)
  opt.update(param_copy="bf17")
  with pytest.raises(ValueError, match="not a dtype"):
    optim.build(opt, 10)
  opt.update(param_copy="", group_leaves=True)
  tx, _ = optim.build(opt, 10)  # grouped inside the global-norm clip: a chain's second state
  assert isinstance(tx.init(_params())[1], optim.GroupedState)
  opt.update(name="paperjax.papers.fira.method:fira")
  with pytest.raises(ValueError, match="group_leaves=False"):
    optim.build(opt, 10)


def _casts_of_inputs(step_fn, state, batch) -> int:
  """f32 → bf16 converts applied directly to the step's own inputs (the state's parameters)."""
  jaxpr = jax.make_jaxpr(step_fn)(state, batch).jaxpr
  while len(jaxpr.eqns) == 1 and "jaxpr" in jaxpr.eqns[0].params:  # the jitted step's own body
    jaxpr = jaxpr.eqns[0].params["jaxpr"].jaxpr
  inputs = set(map(id, jaxpr.invars))
  return sum(1 for e in jaxpr.eqns if e.primitive.name == "convert_element_type"
             and e.params["new_dtype"] == jnp.bfloat16 and id(e.invars[0]) in inputs
             and e.invars[0].aval.dtype == jnp.float32 and e.invars[0].aval.ndim >= 2)


@pytest.mark.default_codegen
@pytest.mark.parametrize("flags", [
    ["--shape=tiny"],
    # The UL2 large preset's layers: scanned, rematerialised, Adafactor, an encoder-decoder.
    pytest.param(["--shape=tiny_encdec", "--scan", "--remat=dots_no_batch", "--optimizer=adafactor",
                  "--padding_lengths"], marks=pytest.mark.slow),
])
def test_param_copy_trains_the_same_numbers_without_casting_the_kernels(flags):
  """Three steps of the bench's bf16 model with and without the copy: the same losses and the same
  parameters to the last bit, and (unscanned) the copy's step casts none of its fp32 kernels (the plain
  one casts every one of them)."""
  runs = {}
  for copy in (False, True):
    argv = flags + ["--batch=4", "--dtype=bfloat16", "--loss_chunk=32"] + (["--param_copy"] if copy else [])
    b = bench.build(bench.parse_args(argv))
    state, _ = step_lib.init_sharded(b.init_state, jax.random.PRNGKey(0), b.mesh, b.rules, b.tx)
    batch = jax.device_put(b.example, b.batch_shardings)
    n_kernels = sum(1 for x in jax.tree.leaves(optim.matrix_labels(state.params)) if x == "matrix")
    with step_lib.mesh_context(b.mesh, b.rules):
      casts = _casts_of_inputs(b.p_step, state, batch)
    losses = []
    for _ in range(3):
      state, metrics = b.p_step(state, batch)
      losses.append(float(metrics["loss"]))
    runs[copy] = (losses, state, casts, n_kernels)
    if copy:  # the copy is laid out as its kernel (FSDP shards it too): its logical specs are the kernel's
      with step_lib.mesh_context(b.mesh, b.rules):
        boxed = jax.eval_shape(b.init_state, jax.random.PRNGKey(0))
      specs = step_lib.state_specs(boxed, b.tx)
      masked = lambda x: isinstance(x, optax.MaskedNode)
      pairs = jax.tree.leaves(jax.tree.map(lambda c, p: None if masked(c) else (c, p), specs.opt_state.copy,
                                           specs.params, is_leaf=masked), is_leaf=lambda x: isinstance(x, tuple))
      assert len(pairs) == n_kernels and all(c == p for c, p in pairs) and any(len(p) for _, p in pairs), pairs
  (l0, s0, c0, n), (l1, s1, c1, _) = runs[False], runs[True]
  assert l0 == l1 and l0[0] != l0[-1]
  jax.tree.map(np.testing.assert_array_equal, s0.params, s1.params)
  if "--scan" not in flags:  # (scanned, the casts are inside the loop's body, on each layer's slice)
    assert n > 0 and c0 >= n and c1 == c0 - n
  masked = lambda x: isinstance(x, optax.MaskedNode)
  jax.tree.map(lambda c, p: masked(c) or np.testing.assert_array_equal(c, p.astype(jnp.bfloat16)),
               s1.opt_state.copy, s1.params, is_leaf=masked)


def _layered_params():
  """Three 'layers' of equal-shaped leaves, a leaf Adafactor factors (both dims ≥ 128), odd ones out."""
  r = np.random.default_rng(1)
  f = lambda *s: jnp.asarray(r.normal(size=s), jnp.float32)
  layer = lambda: {"kernel": f(160, 130), "bias": f(130), "scale": f(130)}
  return {"layers": [layer() for _ in range(3)], "head": {"kernel": f(130, 7)}, "embed": {"embedding": f(11, 130)}}


@pytest.mark.parametrize("make", [
    lambda: optax.adafactor(1e-2),  # factored moments, update clipping, parameter scale: all per leaf
    lambda: optax.adamw(1e-2, weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p)),
])
def test_grouped_optimizer_is_the_per_leaf_optimizer(make):
  """Run once per group of equal-shaped leaves (stacked, vmapped), the optimizer makes the updates it
  makes leaf by leaf — per-leaf statistics, clipping and masks included — over several steps."""
  params = _layered_params()
  plain, grouped = make(), optim.grouped(make())
  s_plain, s_grouped = plain.init(params), grouped.init(params)
  assert len(s_grouped.groups) == len(optim.leaf_groups(params)) == 4  # embedding, head, biases + scales, kernels
  p_plain = p_grouped = params
  plain_update, grouped_update = jax.jit(plain.update), jax.jit(grouped.update)  # eager optax: slow, same numbers
  r = np.random.default_rng(2)
  for _ in range(3):
    grads = jax.tree.map(lambda x: jnp.asarray(r.normal(size=x.shape) * r.uniform(0.1, 10), jnp.float32), params)
    u_plain, s_plain = plain_update(grads, s_plain, p_plain)
    u_grouped, s_grouped = grouped_update(grads, s_grouped, p_grouped)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7), u_plain, u_grouped)
    p_plain, p_grouped = optax.apply_updates(p_plain, u_plain), optax.apply_updates(p_grouped, u_grouped)
  # And the comparison can fail: the optimizer applied to the stacks themselves (statistics and masks
  # over the whole group, not per leaf) makes other updates for some group.
  leaves = jax.tree.leaves(params)
  g_leaves = jax.tree.leaves(grads)
  whole = make()
  u_fresh = jax.tree.leaves(plain_update(grads, plain.init(params), params)[0])
  differs = []
  for members in optim.leaf_groups(params):
    p_stack, g_stack = (jnp.stack([xs[i] for i in members]) for xs in (leaves, g_leaves))
    u_stack, _ = jax.jit(whole.update)(g_stack, whole.init(p_stack), p_stack)
    per_leaf = jnp.stack([u_fresh[i] for i in members])
    differs.append(not np.allclose(u_stack, per_leaf, rtol=1e-3))
  assert any(differs), differs


def test_grouped_optimizer_state_is_sharded_as_its_members():
  """The stacked optimizer leaves take their members' logical specs behind the stack axis (an FSDP run
  shards them as it shards the per-leaf state); the step runs."""
  b = bench.build(bench.parse_args(["--shape=tiny", "--batch=4", "--group_leaves", "--optimizer=adamw"]))
  with step_lib.mesh_context(b.mesh, b.rules):
    boxed = jax.eval_shape(b.init_state, jax.random.PRNGKey(0))
  specs = step_lib.state_specs(boxed, b.tx)
  grouped = next(x for x in jax.tree.leaves(specs.opt_state, is_leaf=lambda x: isinstance(x, optim.GroupedState))
                 if isinstance(x, optim.GroupedState))
  params = step_lib._raw_values(boxed.params)  # pylint: disable=protected-access
  param_specs = jax.tree.leaves(nn_specs(boxed.params), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  checked = 0
  for members, group in zip(optim.leaf_groups(params), grouped.groups):
    want = jax.sharding.PartitionSpec(None, *param_specs[members[0]])
    mu = group[0].mu  # AdamW's first moment, stacked: [members, *shape]
    assert mu == want, (members, mu, want)
    checked += any(want[1:])
  assert checked  # some group is sharded along a parameter axis, so the check can fail


def nn_specs(boxed):
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  return nn.get_partition_spec(boxed)


def test_global_norm_is_the_norm_of_every_leaf_and_the_clip_is_optaxs():
  """`optim.global_norm` (small leaves concatenated NORM_GROUP at a time, big ones alone) is the 2-norm of all
  the leaves, by hand in float64 — 70 small leaves (three groups, the last short), two over NORM_ALONE, bf16 and
  fp32, empty and scalar leaves; and `optim.clip_by_global_norm` scales exactly as optax's clip, under and over."""
  rng = np.random.default_rng(0)
  tree = {"small": [rng.normal(size=(i % 7 + 1, 3)).astype(np.float32) for i in range(70)],
          "big": [np.full((optim.NORM_ALONE,), 1e-3, np.float32), np.ones((optim.NORM_ALONE + 1,), np.float32)],
          "bf16": jnp.asarray(rng.normal(size=(5, 4)), jnp.bfloat16), "empty": np.zeros((0, 3), np.float32),
          "scalar": np.float32(2.5)}
  want = np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(tree)))
  got = jax.jit(optim.global_norm)(tree)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(float(got), want, rtol=1e-6)
  small = {"a": jnp.asarray(rng.normal(size=(40, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=(9,)), jnp.float32)}
  for max_norm in (1e3, 0.5):  # under (unchanged) and over (scaled to max_norm)
    ours, _ = optim.clip_by_global_norm(max_norm).update(small, optax.EmptyState())
    theirs, _ = optax.clip_by_global_norm(max_norm).update(small, optax.EmptyState())
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    assert float(optim.global_norm(ours)) == pytest.approx(min(max_norm, float(optim.global_norm(small))), rel=1e-6)


@needs_cuda_plugin
def test_global_norm_is_a_few_reductions_in_the_h100_program():
  """Compiled for an H100 (deviceless): the norm of 100 parameter-like leaves takes 100 or more reduction
  kernels as optax computes it, and one per NORM_GROUP leaves (at most two kernels each) as `global_norm` does."""
  out = run_for_h100("""
    import optax
    from paperjax import optim
    leaves = [spec((64 + i, 96), jnp.float32) for i in range(100)]
    out = {}
    for name, f in (("optax", optax.tree.norm), ("ours", optim.global_norm)):
      out[name] = sum(k[5] for k in kernels(compiled(f, leaves)) if k[0] == "reduce")
    print(json.dumps(out))
  """)
  assert out["optax"] >= 100 and out["ours"] <= 2 * -(-100 // optim.NORM_GROUP), out


def test_global_norm_gathers_nothing_over_a_mesh():
  """Four devices, leaves sharded over them along one axis or another: `global_norm` reduces each leaf where it
  lies (no all-gather, all-to-all or collective-permute: only scalars are summed across devices) and has
  optax's value."""
  from tests.conftest import run_python
  r = run_python("""
import re, jax, jax.numpy as jnp, numpy as np, optax
from jax.sharding import NamedSharding, PartitionSpec as P
from paperjax import optim
mesh = jax.make_mesh((4,), ("fsdp",), axis_types=(jax.sharding.AxisType.Auto,))
rng = np.random.default_rng(0)
tree = [jax.device_put(jnp.asarray(rng.normal(size=s), jnp.float32), NamedSharding(mesh, sp))
        for s, sp in [((64, 32), P("fsdp", None)), ((32, 64), P(None, "fsdp")), ((16,), P()), ((128, 8), P("fsdp"))] * 3]
text = jax.jit(optim.global_norm).lower(tree).compile().as_text()
moved = re.findall(r"all-gather|all-to-all|collective-permute", text)
assert not moved, moved
np.testing.assert_allclose(float(jax.jit(optim.global_norm)(tree)), float(optax.tree.norm(tree)), rtol=1e-6)
print("OK")
""", devices=4)
  assert r.returncode == 0 and "OK" in r.stdout, r.stderr[-3000:]
