"""Faults: preemption (SIGTERM), SIGKILL at a random moment, a corrupted newest checkpoint."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from configs import ul2 as ul2_config
from paperjax import train
from tests.conftest import ROOT, shrink
from tests.test_cli import SMALL

STEPS = 40
ARGS = ["--config=configs/ul2.py", *[a for a in SMALL if not a.startswith(("--config.train.steps", "--config.train.log_every"))],
        f"--config.train.steps={STEPS}", "--config.train.log_every=1", "--config.train.ckpt_every=3",
        "--config.train.eval_batches=1"]


def _start(workdir):
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  return subprocess.Popen([sys.executable, "-m", "paperjax.main", *ARGS, f"--workdir={workdir}"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _curve(workdir):
  """Loss per step; a step trained twice (after a kill) keeps its last value."""
  rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl")) if l.strip()]
  return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _wait_for_step(workdir, step, proc, timeout=300):
  t0 = time.time()
  while time.time() - t0 < timeout:
    path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(path) and any(r.get("step", 0) >= step for r in map(json.loads, filter(str.strip, open(path)))):
      return
    assert proc.poll() is None, proc.stderr.read()[-3000:]
    time.sleep(0.05)
  raise TimeoutError


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  wd = tmp_path_factory.mktemp("straight")
  p = _start(wd)
  assert p.wait(600) == 0, p.stderr.read()[-3000:]
  return _curve(wd)


def test_sigterm_saves_and_exits_cleanly_then_resumes_identically(tmp_path, straight):
  p = _start(tmp_path)
  _wait_for_step(tmp_path, 5, p)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=300)
  assert p.returncode == 0, err[-3000:]
  assert "stopped by SIGTERM at step" in out
  stopped = int(out.split("stopped by SIGTERM at step ")[1].split(";")[0])
  assert stopped < STEPS
  assert str(stopped) in os.listdir(tmp_path / "checkpoints")
  p2 = _start(tmp_path)
  out2, err2 = p2.communicate(timeout=600)
  assert p2.returncode == 0, err2[-3000:]
  assert f"resuming at step {stopped}" in out2
  assert _curve(tmp_path) == straight


def test_sigkill_at_a_random_moment_resumes_from_last_complete_checkpoint(tmp_path, straight):
  p = _start(tmp_path)
  _wait_for_step(tmp_path, random.Random(os.getpid()).randint(4, 20), p)
  p.kill()
  p.wait()
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  p2 = _start(tmp_path)
  out2, err2 = p2.communicate(timeout=600)
  assert p2.returncode == 0, err2[-3000:]
  if saved:
    assert f"resuming at step {saved[-1]}" in out2 or "resuming at step" in out2
  assert _curve(tmp_path) == straight


def test_corrupted_newest_checkpoint_falls_back_and_is_kept(tmp_path, caplog):
  cfg = shrink(ul2_config.get_config(), steps=6)
  cfg.train.ckpt_every = 2
  cfg.train.stop_at = 4
  train.run(cfg, str(tmp_path))
  newest = tmp_path / "checkpoints" / "4"
  files = [os.path.join(d, f) for d, _, fs in os.walk(newest / "state") for f in fs if os.path.getsize(os.path.join(d, f)) > 0]
  for f in files:  # garbage bytes over every array file of the newest state
    with open(f, "r+b") as fh:
      fh.write(b"\x00garbage" * 8)
      fh.truncate(32)
  cfg.train.stop_at = 0
  s = train.run(cfg, str(tmp_path))
  assert any("step 4" in r.message and "could not be restored" in r.message for r in caplog.records)
  assert s["step"] == 6
  assert newest.exists()  # never deleted silently
