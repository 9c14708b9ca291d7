"""LOOK: the leave-one-out kNN loss against a loop, its own memory slot never matters, the memory
update writes exactly the batch's indices."""

import jax.numpy as jnp
import numpy as np

from paperjax.papers.look import claim, method

R = np.random.default_rng(0)


def _unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


N, D, B, K, TAU = 12, 4, 3, 4, 0.5
BANK = _unit(R.normal(size=(N, D)))
LAB = R.integers(0, 2, N)
Z = _unit(R.normal(size=(B, D)))
IDX = np.array([1, 5, 7])
Y = LAB[IDX]


def _loss(bank=BANK, z=Z):
  return method.look_loss(jnp.asarray(z), jnp.asarray(Y), jnp.asarray(IDX), jnp.asarray(bank), jnp.asarray(LAB), K, TAU)


def test_loss_matches_a_loop_over_the_k_nearest_others():
  loss, p = _loss()
  want = []
  for b in range(B):
    s = BANK @ Z[b] / TAU
    s[IDX[b]] = -np.inf
    nn = np.argsort(-s)[:K]
    w = np.exp(s[nn])
    want.append(max(w[LAB[nn] == Y[b]].sum() / w.sum(), method.MIN_P))
  np.testing.assert_allclose(p, want, rtol=1e-5)
  np.testing.assert_allclose(loss, -np.mean(np.log(want)), rtol=1e-5)
  assert np.all((np.asarray(p) > 0) & (np.asarray(p) <= 1))


def test_own_memory_slot_is_left_out():
  _, p = _loss()
  for b in range(B):
    bank = BANK.copy()
    bank[IDX[b]] = Z[b]                  # a perfect match of itself would dominate if it were counted
    np.testing.assert_allclose(_loss(bank)[1][b], p[b], rtol=1e-6)


def test_memory_update_writes_exactly_the_batch():
  new = np.asarray(method.update_memory(jnp.asarray(BANK), jnp.asarray(IDX), jnp.asarray(Z), 0.5))
  untouched = np.setdiff1d(np.arange(N), IDX)
  np.testing.assert_array_equal(new[untouched], BANK[untouched].astype(np.float32))
  np.testing.assert_allclose(new[IDX], _unit(0.5 * BANK[IDX] + 0.5 * Z), rtol=1e-5)


def test_coarse_labels():
  np.testing.assert_array_equal(method.coarse_labels(np.arange(10), [(0, 6, 8, 9), (1, 4, 7), (2, 3, 5)]),
                                [0, 1, 2, 2, 1, 2, 0, 1, 0, 0])


def test_judge():
  row = dict(look_fine_linear_probe=0.95, ce_fine_linear_probe=0.88, look_fine_knn=0.95, ce_fine_knn=0.85,
             look_coarse_linear_probe=0.97, ce_coarse_linear_probe=0.97, look_coarse_knn=0.97, ce_coarse_knn=0.96)
  assert claim.judge([row] * 3)["passed"]
  out = claim.judge([dict(row, ce_fine_linear_probe=0.95)] * 3)
  assert not out["passed"] and "local structure" in out["analysis"]
