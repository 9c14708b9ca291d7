"""Vision backbones: shapes, logical axis names (so real presets shard), and parameter hand-over."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paperjax.method import copy_matching
from paperjax.models import heads, text, vision

X = jnp.zeros((2, 16, 16, 3))


@pytest.mark.parametrize("cfg", [dict(kind="cnn", channels=(8, 16), width=2.0, dense_dim=0),
                                 dict(kind="resnet", depth=18, width=0.125),
                                 dict(kind="vit", patch=4, d_model=32, num_layers=1, num_heads=2, d_ff=64)])
def test_backbones_shapes_and_logical_axes(cfg):
  m = vision.image_encoder(cfg)
  boxed = m.init(jax.random.PRNGKey(0), X)
  out = m.apply(nn.meta.unbox(boxed), X)
  assert out.shape == (2, m.features_dim)
  names = {a for s in jax.tree.leaves(nn.get_partition_spec(boxed), is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
           for a in s if a}
  assert {"embed", "mlp"} & names


def test_text_encoder_pools_at_the_last_real_token():
  t = text.TextEncoder(vocab_size=16, d_model=16, num_layers=1, num_heads=2, d_ff=32)
  tok = jnp.array([[5, 6, 1, 0, 0]])
  p = t.init(jax.random.PRNGKey(0), tok)
  a = t.apply(p, tok)
  b = t.apply(p, jnp.array([[5, 6, 1, 0, 0, 0, 0]]))          # more padding: same embedding
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_projection_head_outputs_every_layer():
  outs = heads.ProjectionHead((8, 8, 4)).apply(
      heads.ProjectionHead((8, 8, 4)).init(jax.random.PRNGKey(0), jnp.ones((2, 3))), jnp.ones((2, 3)))
  assert [o.shape[-1] for o in outs] == [3, 8, 8, 4]


def test_copy_matching_takes_shared_paths_only():
  prev = {"encoder": {"w": np.ones(3)}, "proj": {"layer0": np.ones(2), "layer1": np.ones(2)}}
  fresh = {"encoder": {"w": np.zeros(3)}, "proj": {"layer0": np.zeros(2)}, "head": np.zeros(4)}
  out, copied = copy_matching(prev, fresh, ("encoder",))
  assert copied == ["encoder/w"] and out["proj"]["layer0"].sum() == 0 and out["head"].sum() == 0
  out, copied = copy_matching(prev, fresh)
  assert sorted(copied) == ["encoder/w", "proj/layer0"]


def test_unknown_backbone_is_one_sentence_error():
  with pytest.raises(ValueError, match="image backbone"):
    vision.image_encoder({"kind": "mlp"})
