"""`synthetic:shapes`: procedural images with captions, for two-tower (CLIP-style) models offline.

Each example is one shape on a noisy background, drawn anti-aliased from four attributes:
  shape    circle, square, triangle, star
  colour   red, green, blue, yellow   (jittered per example)
  size     small, large
  position left, right, top, bottom   (plus a ±1 px jitter)
Records are numeric: {"image": float32[S, S, 3] in [0, 1], "label": shape id, "shape", "colour",
"size", "position": int32, "held_out": bool}. Captions are text built from the attributes by
`caption(record, rng)` (several templates, some naming only a few attributes), so the method that
needs text tokenises them with its own tokenizer; zero-shot prompts come from `prompts(...)`.

Held-out combinations. The shape × colour pairs in `HELD_OUT` (one per shape and one per colour, a
Latin-square diagonal) never occur in the train split; validation draws every pair uniformly and
flags the held-out ones, so a zero-shot test on them needs composition, not memory.

`synthetic:shapes` is 16x16 (what a 2-core CPU trains in a minute); `synthetic:shapes/<S>` draws
S x S (S in 12..64). Item i of a split depends only on (split, i): identical on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("red", "green", "blue", "yellow")
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom")
HELD_OUT = frozenset({(0, 0), (1, 1), (2, 2), (3, 3)})   # (shape, colour): red circle, green square, ...
_RGB = np.array([[0.9, 0.15, 0.1], [0.15, 0.8, 0.2], [0.15, 0.3, 0.95], [0.95, 0.85, 0.1]], np.float32)
_LENGTH = {"train": 50_000, "validation": 1_024}

TEMPLATES = (
    "a {size} {colour} {shape} on the {position}.",
    "a photo of a {colour} {shape}.",
    "a {colour} {shape}.",
    "a picture of a {size} {shape} at the {position}.",
    "a {shape}.",
    "something {colour}.",
    "a {size} {colour} {shape}.",
    "the {shape} is {colour}.",
)
# Zero-shot prompts (ensembled by averaging normalised text embeddings, as CLIP does).
SHAPE_PROMPTS = ("a photo of a {shape}.", "a {shape}.", "a picture of a {shape}.")
COLOUR_PROMPTS = ("something {colour}.", "a photo of something {colour}.", "a {colour} thing.")


def _polygon_mask(yy, xx, verts) -> np.ndarray:
  """Inside test of a convex-or-star polygon by the even-odd rule (vectorised over pixels)."""
  inside = np.zeros(yy.shape, bool)
  n = len(verts)
  for i in range(n):
    (y1, x1), (y2, x2) = verts[i], verts[(i + 1) % n]
    cond = (y1 > yy) != (y2 > yy)
    xint = x1 + (yy - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
    inside ^= cond & (xx < xint)
  return inside


def render(shape: int, size: int, position: int, rgb: np.ndarray, S: int, rng: np.random.Generator) -> np.ndarray:
  """One [S, S, 3] image: the shape's coverage (4x4 supersampled), its colour, a noisy background."""
  r = S * (0.17 if size == 0 else 0.3)
  off = S * 0.2
  cy, cx = [(S / 2, S / 2 - off), (S / 2, S / 2 + off), (S / 2 - off, S / 2), (S / 2 + off, S / 2)][position]
  cy, cx = cy + rng.uniform(-1, 1), cx + rng.uniform(-1, 1)
  sub = 4
  g = (np.arange(S * sub) + 0.5) / sub
  yy, xx = np.meshgrid(g, g, indexing="ij")
  dy, dx = yy - cy, xx - cx
  if shape == 0:
    m = dy ** 2 + dx ** 2 <= r ** 2
  elif shape == 1:
    h = r * 0.85
    m = (np.abs(dy) <= h) & (np.abs(dx) <= h)
  elif shape == 2:
    verts = [(cy - r, cx), (cy + 0.75 * r, cx - 0.95 * r), (cy + 0.75 * r, cx + 0.95 * r)]
    m = _polygon_mask(yy, xx, verts)
  else:
    ang = -np.pi / 2 + np.arange(10) * np.pi / 5
    rad = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.45)
    m = _polygon_mask(yy, xx, list(zip(cy + rad * np.sin(ang), cx + rad * np.cos(ang))))
  cover = m.reshape(S, sub, S, sub).mean(axis=(1, 3))[..., None]
  bg = rng.uniform(0.0, 0.25) + rng.normal(0.0, 0.03, size=(S, S, 1))
  colour = np.clip(rgb + rng.normal(0.0, 0.05, size=3), 0.0, 1.0)
  img = (1 - cover) * bg + cover * colour
  return np.clip(img + rng.normal(0.0, 0.02, size=img.shape), 0.0, 1.0).astype(np.float32)


class Shapes(Sequence):
  """Random-access procedural source; the train split never shows a HELD_OUT shape × colour pair."""

  def __init__(self, split: str, size: int = 16, length: int | None = None):
    if not 12 <= size <= 64:
      raise ValueError(f"synthetic:shapes/{size}: the image size must be in 12..64; use e.g. synthetic:shapes/32.")
    self.split, self.size = split, size
    self._seed = ("train", "validation").index(split)
    self._len = length or _LENGTH[split]
    pairs = [(s, c) for s in range(len(SHAPES)) for c in range(len(COLOURS))]
    self._pairs = pairs if split == "validation" else [p for p in pairs if p not in HELD_OUT]

  def __len__(self):
    return self._len

  def __getitem__(self, index: int) -> dict:
    index = int(index)
    if not -self._len <= index < self._len:
      raise IndexError(f"index {index} out of range for a source of {self._len} items")
    index %= self._len
    rng = np.random.default_rng([17, self._seed, index])
    shape, colour = self._pairs[int(rng.integers(len(self._pairs)))]
    size, position = int(rng.integers(len(SIZES))), int(rng.integers(len(POSITIONS)))
    img = render(shape, size, position, _RGB[colour], self.size, rng)
    return {"image": img, "label": np.int32(shape), "shape": np.int32(shape), "colour": np.int32(colour),
            "size": np.int32(size), "position": np.int32(position),
            "held_out": np.bool_((shape, colour) in HELD_OUT)}


def attributes(record: dict) -> dict[str, str]:
  return {"shape": SHAPES[int(record["shape"])], "colour": COLOURS[int(record["colour"])],
          "size": SIZES[int(record["size"])], "position": POSITIONS[int(record["position"])]}


def caption(record: dict, rng: np.random.Generator | None = None, template: int | None = None) -> str:
  """A caption of the record's attributes from a random (or the given) template."""
  if template is None:
    template = int(rng.integers(len(TEMPLATES))) if rng is not None else 0
  return TEMPLATES[template].format(**attributes(record))


def prompts(attribute: str) -> list[list[str]]:
  """Zero-shot prompts per class of `attribute` ("shape" or "colour"): [classes][templates]."""
  if attribute == "shape":
    return [[t.format(shape=s) for t in SHAPE_PROMPTS] for s in SHAPES]
  if attribute == "colour":
    return [[t.format(colour=c) for t in COLOUR_PROMPTS] for c in COLOURS]
  if attribute == "pair":
    return [[f"a {c} {s}.", f"a photo of a {c} {s}."] for s in SHAPES for c in COLOURS]
  raise ValueError(f"Unknown attribute {attribute!r} for prompts; use 'shape', 'colour' or 'pair'.")


def load(arg: str, split: str) -> Shapes:
  size = 16
  if arg:
    if not arg.isdigit():
      raise ValueError(f"synthetic:shapes/{arg}: the part after '/' is the image size, e.g. synthetic:shapes/32.")
    size = int(arg)
  return Shapes(split, size)


def all_captions() -> list[str]:
  """Every caption the templates can produce (the caption language, e.g. to train a tokenizer)."""
  out = []
  for t in TEMPLATES:
    for s in SHAPES:
      for c in COLOURS:
        for z in SIZES:
          for p in POSITIONS:
            out.append(t.format(shape=s, colour=c, size=z, position=p))
  extra = [p for ps in (prompts("shape") + prompts("colour") + prompts("pair")) for p in ps]
  return sorted(set(out + extra))


def vocabulary() -> list[str]:
  """The caption language's words and punctuation, in a fixed order (for `tokenizers.WordTokenizer`)."""
  from paperjax.data.tokenizers import WordTokenizer  # pylint: disable=g-import-not-at-top
  return sorted({w for c in all_captions() for w in WordTokenizer.split(c)})
