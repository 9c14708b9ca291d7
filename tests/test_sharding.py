"""The same tiny run on 1 device, on data=8, and on data=4 x tensor=2 gives the same losses.

Each layout runs in its own interpreter with 8 fake CPU devices (XLA needs the flag before start).
"""

import json

import numpy as np
import pytest

from tests.conftest import run_python

SCRIPT = """
import json, sys
from configs import ul2
from paperjax import train
from tests.conftest import shrink
c = shrink(ul2.get_config(), steps=4)
c.model.num_heads = 4          # divisible by the tensor axis
c.train.log_every = 1
c.mesh.shape = {shape}
s = train.run(c, None)
print("LOSSES" + json.dumps([r["loss"] for r in s["history"] if "loss" in r]))
import jax; print("DEVICES", jax.device_count())
"""


def _losses(shape, devices):
  out = run_python(SCRIPT.format(shape=shape), devices=devices)
  assert out.returncode == 0, out.stderr[-3000:]
  line = [l for l in out.stdout.splitlines() if l.startswith("LOSSES")][0]
  return np.array(json.loads(line[len("LOSSES"):]))


def test_losses_match_across_meshes():
  single = _losses((1, 1, 1), devices=1)
  data8 = _losses((8, 1, 1), devices=8)
  mixed = _losses((4, 1, 2), devices=8)
  assert len(single) == 4 and np.all(np.isfinite(single))
  np.testing.assert_allclose(data8, single, rtol=2e-5, atol=0)
  np.testing.assert_allclose(mixed, single, rtol=2e-5, atol=0)
  fsdp = _losses((2, 4, 1), devices=8)
  np.testing.assert_allclose(fsdp, single, rtol=2e-5, atol=0)
