"""Multi-stage runs: `Method.from_previous` maps the previous stage's parameters (a new head on a
pretrained backbone), a finished stage is resumed rather than re-run, and a bad mapping is refused."""

import jax
import numpy as np
import pytest

from configs import imbalanced_semi_self as iss_config
from paperjax import train
from tests.conftest import shrink


def test_from_previous_carries_the_backbone_and_finished_stages_resume(tmp_path):
  c = shrink(iss_config.get_config("ssp"), steps=2)
  first = dict(c.stages[0])
  c1 = shrink(iss_config.get_config("ssp"), steps=2)
  c1.stages = (first,)
  rot = train.run(c1, str(tmp_path))["final_params"]            # the rotation stage alone
  # One step at learning rate 0: the train stage's parameters stay what from_previous made them.
  c.stages = (first, {**dict(c.stages[1]), "overrides": {**c.stages[1]["overrides"], "train.steps": 1,
                                                         "optimizer.lr": 0.0}})
  s = train.run(c, str(tmp_path))                                 # rotation resumes, train runs
  assert s["stages"]["rotation"]["step"] == 2
  jax.tree.map(np.testing.assert_array_equal, s["final_params"]["encoder"], rot["encoder"])
  assert s["final_params"]["head"]["dense"]["kernel"].shape[-1] == 10 != rot["head"]["dense"]["kernel"].shape[-1]


def test_mapping_to_the_wrong_structure_is_refused(tmp_path, monkeypatch):
  from paperjax.papers.imbalanced_semi_self import method
  make = method.make

  def bad_make(config, ctx):
    m = make(config, ctx)
    if config.iss.stage == "train":
      import dataclasses
      return dataclasses.replace(m, from_previous=lambda prev, params, extras: (prev, extras))
    return m
  monkeypatch.setattr(method, "make", bad_make)
  c = shrink(iss_config.get_config("ssp"), steps=1)
  with pytest.raises(ValueError, match="from_previous must return"):
    train.run(c, str(tmp_path))
