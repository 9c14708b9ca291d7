"""Every config's default preset runs end to end for a few steps (at test size), and every preset parses."""

import importlib
import pathlib

import pytest

from paperjax import registry, train
from tests.conftest import shrink

CONFIGS = sorted(p.stem for p in (pathlib.Path(__file__).parent.parent / "configs").glob("*.py")
                 if not p.stem.startswith("_") and p.stem not in ("common",))
# Configs whose own paper test already runs the tiny (default) preset end to end through train.run,
# with more assertions than this smoke test: running it twice would only cost compile time. (step_law's
# adds a second seed to the sweep; domain_upsampling's upsamples the last half instead of 15%; ul2's is
# the ul2-encdec row, the defaults.)
RUN_BY_PAPER_TESTS = {
    "codegen2": "test_tiny_config_trains_and_evaluates",
    "d2nwg": "test_stages_run_end_to_end",
    "ddm": "test_two_stages_run_and_write_sample_grids",
    "density_pruning": "test_tiny_config_trains_on_the_pruned_pool",
    "domain_upsampling": "test_tiny_config_smoke",
    "fira": "test_tiny_config_smoke",
    "ict": "test_tiny_config_runs_and_writes_sample_grids",
    "kmq_diversify": "test_iterative_rounds_grow_the_selection_by_the_round_budgets",
    "skill_it": "test_smoke_updates_weights_and_resumes_the_history",
    "step_law": "test_tiny_config_smoke",
    "ul2": "test_objectives_train_and_evaluate",
}


def test_configs_left_to_paper_tests_are_run_there():
  root = pathlib.Path(__file__).parent
  for name, test in RUN_BY_PAPER_TESTS.items():
    text = (root / "papers" / f"test_{name}.py").read_text()
    body = text.split(f"def {test}(", 1)
    assert len(body) == 2, f"tests/papers/test_{name}.py has no {test}"
    fn = body[1].split("\ndef ", 1)[0]
    assert "train.run(" in fn and "get_config(" in fn and "@pytest.mark.slow" not in body[0][-80:], (name, test)
    assert importlib.import_module(f"configs.{name}").PRESETS[0] == "tiny"


@pytest.mark.parametrize("name", [n for n in CONFIGS if n not in RUN_BY_PAPER_TESTS])
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


# Presets whose tfds data cannot be mocked here, and the one sentence each must answer with instead:
# a dataset of your own (not in tfds's catalog) and one whose tfds code imports TensorFlow.
NOT_MOCKABLE = {"tfds:the_stack_python": "Unknown tfds dataset 'the_stack_python', and none is prepared",
                "tfds:coco_captions": "its tfds code needs 'tensorflow'"}


def _tfds_specs(tree, prefix=""):
  """(dotted key, spec) of every string naming a tfds: source in a config (sources, mixtures, stages)."""
  items = tree.items() if hasattr(tree, "items") else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, str) and v.startswith("tfds:"):
      yield key, v
    elif hasattr(v, "items") or isinstance(v, (list, tuple)):
      yield from _tfds_specs(v, key + ".")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_presets_tfds_sources_open_under_mock_data(name):
  """The real-data presets cannot run here (no network), but their data specs can: each tfds source
  a preset names opens under tfds.testing.mock_data with the fields and kind the preset reads."""
  import tensorflow_datasets as tfds
  from paperjax.data import sources
  mod = importlib.import_module(f"configs.{name}")
  for preset in mod.PRESETS:
    c = mod.get_config(preset)
    for key, spec in _tfds_specs(c):
      # data.source per data.kind; mixtures and *_source keys are text corpora; the rest (dp4tl's
      # source/target specs) are record datasets.
      records = (c.data.get("kind", "text") == "records" if key == "data.source"
                 else not (key.startswith("mixture.") or key.endswith("_source")))
      with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        if spec.split("?")[0] in NOT_MOCKABLE:
          with pytest.raises((ValueError, FileNotFoundError), match=NOT_MOCKABLE[spec.split("?")[0]]):
            sources.records(spec, "train")
          continue
        if records:
          assert len(sources.records(spec, "train")) == 3, (preset, key, spec)
        else:
          docs = sources.text_documents(spec, "train")
          assert len(docs) == 3 and all(isinstance(d, str) for d in docs), (preset, key, spec)
