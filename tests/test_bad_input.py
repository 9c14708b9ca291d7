"""The catalogue of wrong inputs a user will really type. Each gets one sentence that names the problem
and the fix, a non-zero exit, no traceback, and leaves an existing workdir's checkpoints untouched."""

import hashlib
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT, xla_flags
from tests.test_cli import SMALL

CATALOGUE = [
    # (id, extra args, env, what the message must say)
    ("unknown-key", ["--config.optimizer.lrr=1"], {}, "Unknown config key 'optimizer.lrr' (did you mean 'lr'?)"),
    ("wrong-type", ["--config.optimizer.lr=fast"], {}, "could not convert string to float: 'fast'"),
    ("unknown-preset", ["--config=configs/ul2.py:huge"], {}, "Unknown preset 'huge'; this config has tiny, base, large"),
    ("no-config-file", ["--config=configs/ul22.py"], {}, "Cannot load the config file 'configs/ul22.py'"),
    ("unknown-paper", ["--config.method=ul3"], {}, "Unknown paper 'ul3'"),
    ("unknown-dataset", ["--config.data.source=builtin:wikipedia"], {}, "Unknown source builtin:wikipedia; available:"),
    ("tfds-not-prepared", ["--config.data.source=tfds:mnist"], {"TFDS_DATA_DIR": "{tmp}/tfds"},
     "tfds dataset 'mnist' is not prepared"),
    ("unknown-code-domain", ["--config.data.source=builtin:stdlib_code/numpy"], {}, "has no package 'numpy'"),
    ("mesh-vs-devices", ["--config.mesh.shape=(3,1,1)"], {}, "mesh.shape (3, 1, 1) uses 3 devices but 1 are available"),
    ("mesh-two-fills", ["--config.mesh.shape=(-1,-1,1)"], {}, "has more than one -1"),
    ("batch-vs-data-axis", ["--config.data.batch_size=6", "--config.mesh.shape=(4,1,1)"],
     {"XLA_FLAGS": xla_flags(4)}, "data.batch_size=6 is not divisible by the 4 devices"),
    ("zero-batch", ["--config.data.batch_size=0"], {}, "data.batch_size=0 must be positive"),
    ("zero-steps", ["--config.train.steps=0"], {}, "train.steps=0 must be at least 1"),
    ("sequence-too-short", ["--config.ul2.inputs_length=2"], {}, "no raw length in [2, 30] fits inputs_length=2"),
    ("empty-corpus", ["--config.data.max_chars=10"], {}, "fewer than one chunk of 30"),
    ("unknown-optimizer", ["--config.optimizer.name=adamm"], {}, "optimizer.name='adamm' is not an optax optimizer"),
    ("unknown-schedule", ["--config.optimizer.schedule=cosin"], {}, "optimizer.schedule='cosin' is unknown"),
    ("unknown-model-kind", ["--config.model.kind=gpt"], {}, "UL2 needs model.kind 'encdec' or 'prefix_lm'"),
    ("unknown-remat", ["--config.model.remat=some"], {}, "model.remat='some' is unknown"),
    ("unknown-tokenizer", ["--config.data.tokenizer=wordpiece"], {}, "Unknown tokenizer kind 'wordpiece'"),
    ("unwritable-workdir", ["--workdir=/proc/paperjax-run"], {}, "Cannot create the workdir '/proc/paperjax-run'"),
    ("other-model-shape", ["--config.model.d_model=48"], {}, "different config"),
    ("half-multiprocess", ["--num_processes=2"], {}, "needs all of --coordinator_address"),
    ("unknown-xla-flag-set", ["--xla_flags=fast"], {}, "Unknown XLA flag set 'fast'; use one of ['gemm_fusion', 'none', 'tuned', 'tuned_nomerge', 'tuned_ops']"),
]


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
  """A finished run whose checkpoints must survive every mistake below."""
  wd = tmp_path_factory.mktemp("existing")
  out = subprocess.run([sys.executable, "-m", "paperjax.main", "--config=configs/ul2.py", *SMALL, f"--workdir={wd}"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  return wd


def _fingerprint(path):
  h = hashlib.sha1()
  for p in sorted(pathlib.Path(path).rglob("*")):
    if p.is_file():
      h.update(str(p.relative_to(path)).encode() + p.read_bytes())
  return h.hexdigest()


@pytest.mark.parametrize("case", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_bad_input(case, existing_run, tmp_path):
  name, extra, env_extra, needle = case
  wd = tmp_path / "w"
  shutil.copytree(existing_run, wd)
  before = _fingerprint(wd / "checkpoints")
  config = next((e for e in extra if e.startswith("--config=")), "--config=configs/ul2.py")
  workdir = next((e for e in extra if e.startswith("--workdir=")), f"--workdir={wd}")
  extra = [e for e in extra if e not in (config, workdir)]
  args = [config, *SMALL, workdir]  # --config must come before its --config.<key> overrides
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  env.update({k: v.format(tmp=tmp_path) for k, v in env_extra.items()})
  out = subprocess.run([sys.executable, "-m", "paperjax.main", *args, *extra], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
  assert out.returncode != 0, out.stdout[-1000:]
  assert needle in out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr
  errors = [l for l in out.stderr.splitlines() if l.startswith("paperjax: error:")]
  assert len(errors) == 1
  assert _fingerprint(wd / "checkpoints") == before
