"""The same tiny run on 1 device, on data=8, on data=4 x tensor=2 and on data=2 x fsdp=4 gives the
same losses.

The single-device run has its own interpreter; the three 8-device layouts share one with 8 fake CPU
devices (XLA needs the flag before start), each layout its own train.run.
"""

import json

import numpy as np

from tests.conftest import run_python

SCRIPT = """
import json, sys
from configs import ul2
from paperjax import train
from tests.conftest import shrink
for shape in {shapes}:
  c = shrink(ul2.get_config(), steps=4)
  c.model.num_heads = 4          # divisible by the tensor axis
  c.train.log_every = 1
  c.mesh.shape = shape
  s = train.run(c, None)
  print("LOSSES" + json.dumps([r["loss"] for r in s["history"] if "loss" in r]))
import jax; print("DEVICES", jax.device_count())
"""


def _losses(shapes, devices):
  out = run_python(SCRIPT.format(shapes=list(shapes)), devices=devices)
  assert out.returncode == 0, out.stderr[-3000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith("LOSSES")]
  assert len(lines) == len(shapes)
  return [np.array(json.loads(l[len("LOSSES"):])) for l in lines]


def test_losses_match_across_meshes():
  [single] = _losses([(1, 1, 1)], devices=1)
  data8, mixed, fsdp = _losses([(8, 1, 1), (4, 1, 2), (2, 4, 1)], devices=8)
  assert len(single) == 4 and np.all(np.isfinite(single))
  np.testing.assert_allclose(data8, single, rtol=2e-5, atol=0)
  np.testing.assert_allclose(mixed, single, rtol=2e-5, atol=0)
  np.testing.assert_allclose(fsdp, single, rtol=2e-5, atol=0)
