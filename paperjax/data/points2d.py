"""`synthetic:ring[/<k>]` and `synthetic:moons`: procedural 2-D point clouds for generative toys.

  ring   k Gaussians (default 8) of std `RING_STD` centred on a circle of radius `RING_RADIUS`
         (the "8-Gaussian ring" of the GAN/diffusion literature); label = the mode's index
  moons  two interleaving half circles (scikit-learn's `make_moons` shape) with Gaussian noise of std
         `MOONS_NOISE`, centred and scaled to unit-ish spread; label = the moon

Records are `{"features": float32[2], "label": int32}` like the builtin tables, so the generative
evaluators read either. Item i of a split depends only on (name, split, i) — the same points on
every machine; train has 20,000 points and validation 2,000. `modes(spec)` gives a ring's centres and
std (for mode-coverage metrics); None for sources without isolated modes.
"""

from __future__ import annotations

import functools

import numpy as np

RING_RADIUS = 1.0
RING_STD = 0.08
MOONS_NOISE = 0.06
_LENGTH = {"train": 20_000, "validation": 2_000}
NAMES = ("ring", "moons")


def _rng(name: str, split: str) -> np.random.Generator:
  return np.random.default_rng([sum(map(ord, name)), 0 if split == "train" else 1])


@functools.lru_cache(maxsize=None)
def points(name: str, arg: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(x float32[n, 2], label int32[n]) of one split."""
  n, rng = _LENGTH[split], _rng(name + arg, split)
  if name == "ring":
    k = ring_modes(arg)
    label = rng.integers(0, k, n)
    angle = 2 * np.pi * label / k
    x = RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], -1) + RING_STD * rng.standard_normal((n, 2))
  elif name == "moons":
    if arg:
      raise ValueError(f"synthetic:moons takes no '/{arg}'; use synthetic:moons.")
    label = rng.integers(0, 2, n)
    t = np.pi * rng.uniform(size=n)
    x = np.where(label[:, None] == 0, np.stack([np.cos(t), np.sin(t)], -1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1))
    x = (x - np.array([0.5, 0.25])) / np.array([0.87, 0.5]) * 0.7 + MOONS_NOISE * rng.standard_normal((n, 2))
  else:
    raise ValueError(f"Unknown 2-D mixture {name!r}; use one of {NAMES}.")
  return x.astype(np.float32), label.astype(np.int32)


def ring_modes(arg: str) -> int:
  if not arg:
    return 8
  if not arg.isdigit() or not 2 <= int(arg) <= 64:
    raise ValueError(f"synthetic:ring/{arg}: the number of modes must be an integer in 2..64, e.g. synthetic:ring/8.")
  return int(arg)


def modes(spec: str) -> tuple[np.ndarray, float] | None:
  """(centres [k, 2], std) of a ring source spec ("synthetic:ring", "synthetic:ring/6"), else None."""
  name = spec.partition(":")[2]
  base, _, arg = name.partition("/")
  if base != "ring":
    return None
  k = ring_modes(arg)
  angle = 2 * np.pi * np.arange(k) / k
  return (RING_RADIUS * np.stack([np.cos(angle), np.sin(angle)], -1)).astype(np.float32), RING_STD


class _Points:
  def __init__(self, x: np.ndarray, label: np.ndarray):
    self._x, self._label = x, label

  def __len__(self):
    return len(self._x)

  def __getitem__(self, i: int) -> dict[str, np.ndarray]:
    i = int(i)
    if not -len(self) <= i < len(self):
      raise IndexError(f"index {i} out of range for a source of {len(self)} items")
    return {"features": self._x[i], "label": self._label[i]}


def load(name: str, arg: str, split: str) -> _Points:
  return _Points(*points(name, arg, split))
