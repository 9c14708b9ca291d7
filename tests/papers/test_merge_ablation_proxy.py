"""The merge proxy's rule: the average of unit models (identity on identical models, linear in the
units), every member starting from the shared base, and the candidate mixtures."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax import population
from paperjax.papers.merge_ablation_proxy import method as mp
from paperjax.papers.merge_ablation_proxy import claim


UNITS = {"w": jnp.asarray(np.random.default_rng(0).normal(size=(6, 3, 2)), jnp.float32), "b": jnp.arange(6.0)}


def test_average_of_identical_models_is_the_model():
  same = jax.tree.map(lambda x: jnp.stack([x[0]] * 6), UNITS)
  for a, e in zip(jax.tree.leaves(mp.proxy_params(same, (1, 4))), jax.tree.leaves(jax.tree.map(lambda x: x[0], UNITS))):
    np.testing.assert_allclose(a, e, rtol=1e-6)


def test_average_is_linear_in_the_units():
  ab = mp.proxy_params(UNITS, (0, 1, 2, 3))
  a, b = mp.proxy_params(UNITS, (0, 1)), mp.proxy_params(UNITS, (2, 3))
  for x, y, z in zip(jax.tree.leaves(ab), jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, (y + z) / 2, rtol=1e-6)
  np.testing.assert_allclose(mp.proxy_params(UNITS, (2, 5))["b"], 3.5)


def test_every_member_starts_from_the_shared_base():
  base = {"w": jnp.ones((3, 2)), "b": jnp.array(2.0)}
  fresh = jax.tree.map(lambda x: jnp.zeros((6,) + x.shape), base)
  start, _ = population.from_one(base, fresh, {})
  for s, b in zip(jax.tree.leaves(start), jax.tree.leaves(base)):
    assert s.shape[0] == 6 and all(np.array_equal(s[i], b) for i in range(6))


def test_mixtures_are_distinct_and_fixed_by_the_seed():
  m = mp.mixtures(6, 2, 10, seed=0)
  assert len(set(m)) == 10 and all(len(x) == 2 and x[0] < x[1] for x in m)
  assert m == mp.mixtures(6, 2, 10, seed=0) != mp.mixtures(6, 2, 10, seed=1)
  with pytest.raises(ValueError, match="exceeds"):
    mp.mixtures(6, 2, 16, seed=0)


def test_judge_separates_a_good_proxy_from_a_bad_one():
  r = np.random.default_rng(0)
  true = r.normal(size=(10, 8)) + np.arange(8)
  good = {"true": true, "proxy": true + 0.05 * r.normal(size=true.shape), "baseline": true + r.normal(size=true.shape)}
  assert claim.judge([good], 600, 2000)["passed"]
  bad = dict(good, proxy=r.normal(size=true.shape))
  assert not claim.judge([bad], 600, 2000)["passed"]
