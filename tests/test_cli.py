"""The command line: overrides reach the run, mistakes get one sentence and a non-zero exit."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SMALL = ["--config.model.d_model=32", "--config.model.num_heads=2", "--config.model.head_dim=16",
         "--config.model.d_ff=64", "--config.model.num_layers=1", "--config.model.num_encoder_layers=1",
         "--config.ul2.inputs_length=32", "--config.ul2.targets_length=32", "--config.data.raw_length=30",
         "--config.data.batch_size=8", "--config.data.max_chars=100000", "--config.train.steps=2",
         "--config.train.log_every=1", "--config.train.eval_batches=1", "--config.ul2.eval_batch_size=8"]


def main(*args, cwd=ROOT):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, "-m", "paperjax.main", *args], capture_output=True, text=True,
                        cwd=cwd, env=env, timeout=600)


def test_overrides_reach_the_run(tmp_path):
  out = main("--config=configs/ul2.py:tiny", f"--workdir={tmp_path}", "--config.optimizer.lr=0.0123",
             "--config.optimizer.warmup_steps=0", "--config.optimizer.schedule=constant", *SMALL)
  assert out.returncode == 0, out.stderr[-2000:]
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [r["lr"] for r in rows if "lr" in r] == pytest.approx([0.0123, 0.0123])
  assert "summary: ul2" in out.stdout
  # Run it again: it resumes (and, being finished, trains no further step).
  again = main("--config=configs/ul2.py:tiny", f"--workdir={tmp_path}", "--config.optimizer.lr=0.0123",
               "--config.optimizer.warmup_steps=0", "--config.optimizer.schedule=constant", *SMALL)
  assert again.returncode == 0 and "resuming at step 2" in again.stdout


def test_papers_table_lists_ul2():
  out = subprocess.run([sys.executable, "-m", "paperjax.papers"], capture_output=True, text=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode == 0, out.stderr
  assert "ul2" in out.stdout and "UL2: Unifying Language Learning Paradigms" in out.stdout


def test_readme_table_is_the_generated_one():
  """The README's paper table is `python -m paperjax.papers --markdown`, not hand-maintained."""
  out = subprocess.run([sys.executable, "-m", "paperjax.papers", "--markdown"], capture_output=True, text=True,
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert out.returncode == 0
  assert out.stdout.strip() in (ROOT / "README.md").read_text(), "regenerate the README table"
