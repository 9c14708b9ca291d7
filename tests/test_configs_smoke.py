"""Every config's default preset runs end to end for a few steps (at test size), and every preset parses."""

import importlib
import pathlib

import pytest

from paperjax import registry, train
from tests.conftest import shrink

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parent.parent / "configs").glob("*.py")
                 if not p.stem.startswith("_") and p.stem not in ("common",))


@pytest.mark.parametrize("name", CONFIGS)
def test_tiny_preset_runs(name, tmp_path):
  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.method in registry.slugs()
  s = train.run(shrink(config, steps=3), str(tmp_path))
  assert s["step"] == 3


@pytest.mark.parametrize("name", CONFIGS)
def test_every_preset_parses_and_has_a_docstring(name):
  mod = importlib.import_module(f"configs.{name}")
  assert mod.__doc__ and "python -m paperjax.main" in mod.__doc__
  for preset in mod.PRESETS:
    c = mod.get_config(preset)
    assert c.preset == preset
