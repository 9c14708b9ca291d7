"""synthetic:shapes: deterministic, held-out pairs never in train, captions and prompts."""

import numpy as np
import pytest

from paperjax.data import shapes, sources


def test_source_is_deterministic_and_holds_pairs_out_of_train():
  train = sources.records("synthetic:shapes", "train")
  val = sources.records("synthetic:shapes", "validation")
  a, b = train[11], train[11]
  np.testing.assert_array_equal(a["image"], b["image"])
  assert a["image"].shape == (16, 16, 3) and a["image"].dtype == np.float32
  pairs = {(int(train[i]["shape"]), int(train[i]["colour"])) for i in range(600)}
  assert not pairs & shapes.HELD_OUT and len(pairs) == 12
  held = [bool(val[i]["held_out"]) for i in range(400)]
  assert 0.15 < np.mean(held) < 0.35                               # 4 of 16 pairs
  assert sources.records("synthetic:shapes/32", "train")[0]["image"].shape == (32, 32, 3)


def test_shapes_are_distinguishable_by_their_pixels():
  rng = np.random.default_rng(0)
  masks = [shapes.render(s, 1, 0, np.ones(3, np.float32), 32, rng).mean() for s in range(4)]
  assert len({round(m, 2) for m in masks}) == 4                   # different areas: circle, square, triangle, star


def test_captions_and_prompts():
  rec = sources.records("synthetic:shapes", "train")[3]
  attrs = shapes.attributes(rec)
  cap = shapes.caption(rec, template=0)
  assert all(attrs[k] in cap for k in attrs)
  assert len(shapes.prompts("shape")) == 4 and len(shapes.prompts("pair")) == 16
  with pytest.raises(ValueError, match="attribute"):
    shapes.prompts("texture")
  with pytest.raises(ValueError, match="image size"):
    sources.records("synthetic:shapes/big", "train")
