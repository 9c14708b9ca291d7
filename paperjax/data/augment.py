"""Image augmentations: seeded numpy ops usable as grain per-example transforms, and per batch.

Every op is `op(image, rng, ...) -> image` on float images in [0, 1] shaped [H, W, C] *or* a batch
[B, H, W, C] (random parameters are then drawn per example, in one vectorised call), with `rng` a
`np.random.Generator`. Inside a grain pipeline the generator is the one `random_map` hands each
example, so the noise depends only on (seed, example position) and is checkpointed with the
iterator (see `pipeline.py`). Ops clip to [0, 1].

  shift (pad-and-crop translate), random_resized_crop, flip, rotate (bilinear, any angle),
  rot90 (exact), brightness, contrast, saturation, colour_jitter, gaussian_noise, cutout,
  randaugment (RandAugment as UDA's image code uses it: N ops from a list of 15, magnitude 1..9,
  each applied with probability 0.5), compose(...), two_views(fn) for contrastive methods.

Shape suffixes in comments: B batch, H/W height/width, C channels.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Aug = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _batched(x: np.ndarray) -> tuple[np.ndarray, bool]:
  x = np.asarray(x, np.float32)
  if x.ndim == 3:
    return x[None], True
  if x.ndim != 4:
    raise ValueError(f"Augmentations take [H, W, C] or [B, H, W, C] images; got shape {x.shape}.")
  return x, False


def _out(x: np.ndarray, single: bool) -> np.ndarray:
  x = np.clip(x, 0.0, 1.0).astype(np.float32)
  return x[0] if single else x


# --------------------------------------------------------------------------- geometry


def shift(x, rng: np.random.Generator, max_shift: int = 1, fill: float = 0.0):
  """Translate by an integer offset in [-max_shift, max_shift]² (pad with `fill`, crop back)."""
  x, single = _batched(x)
  B, H, W, _ = x.shape
  p = int(max_shift)
  padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=fill)
  dy, dx = rng.integers(0, 2 * p + 1, size=(2, B))
  rows = dy[:, None] + np.arange(H)[None]   # B H
  cols = dx[:, None] + np.arange(W)[None]   # B W
  out = padded[np.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]
  return _out(out, single)


def _sample_bilinear(x_BHWC, ys_BHW, xs_BHW, fill: float):
  """Bilinear sampling at fractional source coordinates; outside the image reads `fill`."""
  B, H, W, C = x_BHWC.shape
  y0, x0 = np.floor(ys_BHW).astype(np.int64), np.floor(xs_BHW).astype(np.int64)
  wy, wx = (ys_BHW - y0)[..., None], (xs_BHW - x0)[..., None]
  b = np.arange(B)[:, None, None]

  def read(yy, xx):
    inside = ((yy >= 0) & (yy < H) & (xx >= 0) & (xx < W))[..., None]
    v = x_BHWC[b, np.clip(yy, 0, H - 1), np.clip(xx, 0, W - 1)]
    return np.where(inside, v, fill)

  return ((1 - wy) * (1 - wx) * read(y0, x0) + (1 - wy) * wx * read(y0, x0 + 1)
          + wy * (1 - wx) * read(y0 + 1, x0) + wy * wx * read(y0 + 1, x0 + 1))


def affine(x, matrix_B23, fill: float = 0.0):
  """Applies per-example 2x3 affine maps (output pixel (y, x) reads input A @ (y, x, 1), centred)."""
  x, single = _batched(x)
  B, H, W, _ = x.shape
  yy, xx = np.meshgrid(np.arange(H) - (H - 1) / 2, np.arange(W) - (W - 1) / 2, indexing="ij")
  coords = np.stack([yy, xx, np.ones_like(yy)], 0).reshape(3, -1)            # 3 HW
  src = np.einsum("bij,jn->bin", np.broadcast_to(matrix_B23, (B, 2, 3)), coords)
  ys = src[:, 0].reshape(B, H, W) + (H - 1) / 2
  xs = src[:, 1].reshape(B, H, W) + (W - 1) / 2
  return _out(_sample_bilinear(x, ys, xs, fill), single)


def rotate(x, rng: np.random.Generator, max_degrees: float = 15.0, fill: float = 0.0):
  """Rotation by an angle uniform in [-max_degrees, max_degrees] (bilinear)."""
  xb, _ = _batched(x)
  t = np.deg2rad(rng.uniform(-max_degrees, max_degrees, size=xb.shape[0]))
  m = np.zeros((len(t), 2, 3))
  m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
  return affine(x, m, fill)


def rot90(x, k):
  """Exact rotation by k·90° counter-clockwise (k an int, or one int per example of a batch)."""
  x, single = _batched(x)
  k = np.broadcast_to(np.asarray(k) % 4, (x.shape[0],))
  out = np.stack([np.rot90(img, int(kk), axes=(0, 1)) for img, kk in zip(x, k)])
  return _out(out, single)


def flip(x, rng: np.random.Generator, p: float = 0.5):
  """Horizontal flip with probability p."""
  x, single = _batched(x)
  do = rng.random(x.shape[0]) < p
  return _out(np.where(do[:, None, None, None], x[:, :, ::-1], x), single)


def random_resized_crop(x, rng: np.random.Generator, scale=(0.5, 1.0), ratio=(3 / 4, 4 / 3)):
  """Inception-style crop of a random area fraction and aspect ratio, resized back (bilinear)."""
  x, single = _batched(x)
  B, H, W, _ = x.shape
  area = rng.uniform(*scale, size=B)
  logr = rng.uniform(np.log(ratio[0]), np.log(ratio[1]), size=B)
  r = np.exp(logr)
  h = np.clip(np.sqrt(area / r), 0.1, 1.0) * H
  w = np.clip(np.sqrt(area * r), 0.1, 1.0) * W
  y0 = rng.uniform(0, 1, B) * (H - h)
  x0 = rng.uniform(0, 1, B) * (W - w)
  gy = (np.arange(H) + 0.5) / H
  gx = (np.arange(W) + 0.5) / W
  ys = y0[:, None, None] + gy[None, :, None] * h[:, None, None] - 0.5
  xs = x0[:, None, None] + gx[None, None, :] * w[:, None, None] - 0.5
  ys, xs = np.broadcast_to(ys, (B, H, W)), np.broadcast_to(xs, (B, H, W))
  return _out(_sample_bilinear(x, ys, xs, 0.0), single)


def center_crop_resize(x, size: int):
  """Central square crop resized to size×size (bilinear); uint8 inputs are scaled to [0, 1]."""
  x = np.asarray(x)
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / 255.0
  xb, single = _batched(x)
  B, H, W, _ = xb.shape
  s = min(H, W)
  y0, x0 = (H - s) / 2, (W - s) / 2
  g = (np.arange(size) + 0.5) * s / size - 0.5
  ys = np.broadcast_to((y0 + g)[None, :, None], (B, size, size))
  xs = np.broadcast_to((x0 + g)[None, None, :], (B, size, size))
  return _out(_sample_bilinear(xb, ys, xs, 0.0), single)


def as_float_image(x, size: int | None = None) -> np.ndarray:
  """An image as float32 [H, W, C] in [0, 1] (uint8 scaled), resized to size×size when given and different
  (real datasets: tfds images come as uint8 of varying size)."""
  x = np.asarray(x)
  if x.ndim == 2:
    x = x[..., None]
  if size and x.shape[:2] != (size, size):
    return center_crop_resize(x, size)
  return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def cutout(x, rng: np.random.Generator, size: int = 3, fill: float = 0.5):
  """Fills a size×size square at a random centre (it may hang over the border) with `fill`."""
  x, single = _batched(x)
  B, H, W, _ = x.shape
  cy, cx = rng.integers(0, H, B), rng.integers(0, W, B)
  yy, xx = np.arange(H)[None, :, None], np.arange(W)[None, None, :]
  lo = size // 2
  m = ((yy >= (cy - lo)[:, None, None]) & (yy < (cy - lo + size)[:, None, None])
       & (xx >= (cx - lo)[:, None, None]) & (xx < (cx - lo + size)[:, None, None]))
  return _out(np.where(m[..., None], fill, x), single)


# --------------------------------------------------------------------------- colour


def _per_example(rng, B, lo, hi):
  return rng.uniform(lo, hi, size=B)[:, None, None, None]


def brightness(x, rng: np.random.Generator, delta: float = 0.2):
  x, single = _batched(x)
  return _out(x + _per_example(rng, x.shape[0], -delta, delta), single)


def contrast(x, rng: np.random.Generator, lower: float = 0.6, upper: float = 1.4):
  x, single = _batched(x)
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return _out(mean + (x - mean) * _per_example(rng, x.shape[0], lower, upper), single)


def saturation(x, rng: np.random.Generator, lower: float = 0.6, upper: float = 1.4):
  """Blend with the grey image (a no-op on one-channel images)."""
  x, single = _batched(x)
  if x.shape[-1] == 1:
    return _out(x, single)
  grey = x.mean(axis=-1, keepdims=True)
  return _out(grey + (x - grey) * _per_example(rng, x.shape[0], lower, upper), single)


def colour_jitter(x, rng: np.random.Generator, strength: float = 0.5, p: float = 0.8):
  """SimCLR's colour distortion (brightness, contrast, saturation at `strength`), applied with prob p."""
  xb, single = _batched(x)
  s = strength
  y = saturation(contrast(brightness(xb, rng, 0.8 * s), rng, 1 - 0.8 * s, 1 + 0.8 * s), rng, 1 - 0.8 * s, 1 + 0.8 * s)
  do = rng.random(xb.shape[0]) < p
  return _out(np.where(do[:, None, None, None], y, xb), single)


def gaussian_noise(x, rng: np.random.Generator, std: float = 0.1):
  x, single = _batched(x)
  return _out(x + rng.normal(0.0, std, size=x.shape), single)


# --------------------------------------------------------------------------- RandAugment

# UDA's image RandAugment (google-research/uda image/randaugment/policies.py): two ops drawn from
# these 15, each with a magnitude uniform in 1..9 (of 10) and applied with probability 0.5.
RANDAUGMENT_OPS = ("Invert", "Cutout", "Sharpness", "AutoContrast", "Posterize", "ShearX", "TranslateX",
                   "TranslateY", "ShearY", "Rotate", "Equalize", "Contrast", "Color", "Solarize", "Brightness")


def _equalize(img):
  out = np.empty_like(img)
  for c in range(img.shape[-1]):
    v = img[..., c]
    order = np.argsort(v, axis=None, kind="stable")
    ranks = np.empty(v.size)
    ranks[order] = np.arange(v.size)
    out[..., c] = (ranks / max(v.size - 1, 1)).reshape(v.shape)
  return out


def _enhance(img, degenerate, factor):
  return degenerate + factor * (img - degenerate)


def apply_op(img_HWC: np.ndarray, name: str, magnitude: float, rng: np.random.Generator) -> np.ndarray:
  """One RandAugment op at `magnitude` in [0, 10] (signs of geometric ops drawn at random)."""
  m = magnitude / 10.0
  sign = 1.0 if rng.random() < 0.5 else -1.0
  H, W, _ = img_HWC.shape
  if name == "Invert":
    return 1.0 - img_HWC
  if name == "Cutout":
    return cutout(img_HWC, rng, size=max(1, int(round(m * 0.5 * min(H, W)))))
  if name == "Sharpness":
    blur = img_HWC.copy()
    pad = np.pad(img_HWC, ((1, 1), (1, 1), (0, 0)), mode="edge")
    k = (pad[:-2, :-2] + pad[:-2, 1:-1] + pad[:-2, 2:] + pad[1:-1, :-2] + 5 * pad[1:-1, 1:-1]
         + pad[1:-1, 2:] + pad[2:, :-2] + pad[2:, 1:-1] + pad[2:, 2:]) / 13.0
    blur[1:-1, 1:-1] = k[1:-1, 1:-1]
    return _enhance(img_HWC, blur, 1.0 + sign * 0.9 * m)
  if name == "AutoContrast":
    lo, hi = img_HWC.min(axis=(0, 1), keepdims=True), img_HWC.max(axis=(0, 1), keepdims=True)
    return np.where(hi > lo, (img_HWC - lo) / np.maximum(hi - lo, 1e-6), img_HWC)
  if name == "Posterize":
    bits = max(1, 8 - int(round(m * 4)))
    levels = 2 ** bits
    return np.floor(img_HWC * (levels - 1e-6)) / (levels - 1)
  if name in ("ShearX", "ShearY"):
    s = sign * 0.3 * m
    mat = np.array([[1.0, s if name == "ShearY" else 0.0, 0.0], [s if name == "ShearX" else 0.0, 1.0, 0.0]])
    mat = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) if s == 0 else mat
    return affine(img_HWC, mat[None])
  if name in ("TranslateX", "TranslateY"):
    t = sign * 0.3 * m * (W if name == "TranslateX" else H)
    mat = np.array([[1.0, 0.0, t if name == "TranslateY" else 0.0], [0.0, 1.0, t if name == "TranslateX" else 0.0]])
    return affine(img_HWC, mat[None])
  if name == "Rotate":
    t = np.deg2rad(sign * 30.0 * m)
    mat = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0]])
    return affine(img_HWC, mat[None])
  if name == "Equalize":
    return _equalize(img_HWC)
  if name == "Contrast":
    return _enhance(img_HWC, img_HWC.mean(), 1.0 + sign * 0.9 * m)
  if name == "Color":
    return _enhance(img_HWC, img_HWC.mean(axis=-1, keepdims=True), 1.0 + sign * 0.9 * m)
  if name == "Solarize":
    thresh = 1.0 - m
    return np.where(img_HWC >= thresh, 1.0 - img_HWC, img_HWC)
  if name == "Brightness":
    return _enhance(img_HWC, np.zeros_like(img_HWC), 1.0 + sign * 0.9 * m)
  raise ValueError(f"Unknown RandAugment op {name!r}; use one of {RANDAUGMENT_OPS}.")


def randaugment(x, rng: np.random.Generator, num_ops: int = 2, magnitude: float | None = None,
                prob: float = 0.5, ops: Sequence[str] = RANDAUGMENT_OPS):
  """RandAugment: `num_ops` ops drawn uniformly, each applied with probability `prob` at `magnitude`
  (None: uniform in 1..9 per op, as UDA's image code draws it)."""
  xb, single = _batched(x)
  out = np.empty_like(xb)
  for i, img in enumerate(xb):
    for _ in range(num_ops):
      name = ops[int(rng.integers(len(ops)))]
      mag = float(rng.integers(1, 10)) if magnitude is None else float(magnitude)
      if rng.random() < prob:
        img = np.clip(apply_op(img, name, mag, rng), 0.0, 1.0)
    out[i] = img
  return _out(out, single)


# --------------------------------------------------------------------------- on device (jax)


def rotation_copies(x_BHWC, num: int):
  """jax, on device: [B·num, H, W, C] where copy b·num + j is x_b rotated by j·(4/num) quarter turns
  (num in 1, 2, 4) — the transformed batch of rotation pretext tasks (RotNet, SLA)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  if num not in (1, 2, 4):
    raise ValueError(f"{num} rotations: use 1, 2 or 4 (multiples of 90 degrees).")
  step = 4 // num
  copies = jnp.stack([jnp.rot90(x_BHWC, k=j * step, axes=(1, 2)) for j in range(num)], axis=1)
  return copies.reshape((-1,) + x_BHWC.shape[1:])


# --------------------------------------------------------------------------- composition


def compose(*ops: Aug) -> Aug:
  """Applies ops in order with the same generator (each consumes its own draws)."""
  def fn(x, rng):
    for op in ops:
      x = op(x, rng)
    return x
  return fn


def two_views(fn: Aug) -> Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]:
  """Two independent draws of `fn` on the same image (the positive pair of contrastive methods)."""
  return lambda x, rng: (fn(x, rng), fn(x, rng))


def simclr_small(max_shift: int = 1, crop_scale=(0.6, 1.0), jitter: float = 0.5, noise: float = 0.05) -> Aug:
  """SimCLR's recipe for small images: random resized crop, shift, colour distortion, noise
  (no flip: digits are not flip-invariant; no blur: 8x8 images have nothing to blur)."""
  return compose(lambda x, r: random_resized_crop(x, r, scale=crop_scale),
                 lambda x, r: shift(x, r, max_shift),
                 lambda x, r: colour_jitter(x, r, jitter),
                 lambda x, r: gaussian_noise(x, r, noise))


NAMED = {
    "none": lambda x, rng: np.asarray(x, np.float32),
    "shift": shift,
    "flip": flip,
    "rotate": rotate,
    "noise": gaussian_noise,
    "cutout": cutout,
    "colour": colour_jitter,
    "crop": random_resized_crop,
    "randaugment": randaugment,
    "simclr": simclr_small(),
    "flip_crop": compose(flip, lambda x, r: shift(x, r, 4, fill=0.5)),
}


def named(name: str) -> Aug:
  """An augmentation by config name ('randaugment', 'noise', 'simclr', 'shift+cutout', ...)."""
  parts = [p for p in name.split("+") if p]
  unknown = [p for p in parts if p not in NAMED]
  if unknown or not parts:
    raise ValueError(f"Unknown augmentation {name!r}; use one of {sorted(NAMED)} (join with '+').")
  return compose(*[NAMED[p] for p in parts])
