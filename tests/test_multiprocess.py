"""Two real JAX processes (gloo collectives on 127.0.0.1) train exactly like one process on the same
global mesh and batch, and their checkpoint resumes in one process on a different mesh."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np

from tests.conftest import ROOT, xla_flags
from tests.test_cli import SMALL

ARGS = ["--config=configs/ul2.py", *[a for a in SMALL if not a.startswith("--config.train.steps")],
        "--config.train.steps=6", "--config.train.eval_batches=1"]


def _losses(workdir):
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _single(workdir, devices, *extra):
  env = dict(os.environ, XLA_FLAGS=xla_flags(devices), JAX_PLATFORMS="cpu",
             PYTHONPATH=str(ROOT))
  out = subprocess.run([sys.executable, "-m", "paperjax.main", *ARGS, f"--workdir={workdir}", *extra],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  return out


def test_two_processes_match_one_and_resume_elsewhere(tmp_path):
  two = tmp_path / "two"
  out = subprocess.run(["bash", "launch/local.sh", "2", "2", *ARGS, f"--workdir={two}", "--config.train.stop_at=4"],
                       capture_output=True, text=True, cwd=ROOT, timeout=600, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode == 0, out.stderr[-3000:] + open(two / "proc1.log").read()[-3000:]
  one = tmp_path / "one"
  _single(one, 4)                                   # same global mesh: data=4
  l2, l1 = _losses(two), _losses(one)
  assert sorted(l2) == [1, 2, 3, 4] and sorted(l1) == [1, 2, 3, 4, 5, 6]
  np.testing.assert_allclose([l2[s] for s in range(1, 5)], [l1[s] for s in range(1, 5)], rtol=1e-5)

  # The 2-process checkpoint (step 4) continues in 1 process on another mesh (data=1 x tensor=2).
  moved = tmp_path / "moved"
  shutil.copytree(two, moved)
  res = _single(moved, 2, "--config.mesh.shape=(1,1,2)")
  assert "resuming at step 4" in res.stdout and "another number of processes" in res.stdout
  lm = _losses(moved)
  np.testing.assert_allclose([lm[5], lm[6]], [l1[5], l1[6]], rtol=1e-4)
