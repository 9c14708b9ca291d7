"""The loop end to end on the UL2 tiny config: exact resume, NaN guard, stages, summary."""

import dataclasses
import json
import math
import os

import pytest

from configs import ul2 as ul2_config
from paperjax import train
from tests.conftest import shrink


def losses(summary):
  return [row["loss"] for row in summary["history"] if "loss" in row]


# Packed: slow (the packer's state alone is resumed exactly in tests/test_packing.py, and the
# trainer checkpoints any iterator's state the same way).
@pytest.mark.parametrize("pack", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_resume_is_bitwise_identical(tmp_path, pack):
  """N steps, stop, resume to 2N == 2N straight, to the last bit (loss curve and parameters); also
  with packed rows (the packer's position is part of the checkpointed data state)."""
  def config():
    c = shrink(ul2_config.get_config(), steps=8)
    if pack:  # lengths at which examples share rows (see tests/papers/test_ul2.py)
      c.data.pack, c.ul2.inputs_length = True, 64
    return c
  s_straight = train.run(config(), str(tmp_path / "straight"))

  cfg = config()
  cfg.train.stop_at = 4
  s_first = train.run(cfg, str(tmp_path / "resumed"))
  assert s_first["step"] == 4
  cfg.train.stop_at = 0
  s_second = train.run(cfg, str(tmp_path / "resumed"))
  assert s_second["step"] == 8

  curve_straight = losses(s_straight)
  curve_resumed = losses(s_first) + losses(s_second)
  assert curve_straight == curve_resumed  # exact equality, not a tolerance
  rows = [json.loads(l) for l in open(tmp_path / "resumed" / "metrics.jsonl")]
  assert [r["step"] for r in rows if "loss" in r] == [2, 4, 6, 8]


def test_rerun_of_finished_run_does_nothing_more(tmp_path):
  cfg = shrink(ul2_config.get_config(), steps=2)
  train.run(cfg, str(tmp_path))
  again = train.run(cfg, str(tmp_path))
  assert again["step"] == 2


def test_workdir_with_other_config_is_refused(tmp_path):
  cfg = shrink(ul2_config.get_config(), steps=2)
  train.run(cfg, str(tmp_path))
  other = shrink(ul2_config.get_config(), steps=2)
  other.optimizer.lr = 1e-4
  with pytest.raises(ValueError, match=r"optimizer\.lr.*new --workdir"):
    train.run(other, str(tmp_path))
  assert os.listdir(tmp_path / "checkpoints")  # nothing was deleted


def test_config_diff_ignores_a_field_added_since_at_its_off_default():
  """A run saved before a config field existed resumes if the field is still off; turned on, or
  changed from a saved value, it is a difference."""
  from paperjax.checkpoint import config_diff  # pylint: disable=g-import-not-at-top
  saved = {"optimizer": {"lr": 1.0}}
  assert config_diff(saved, {"optimizer": {"lr": 1.0, "param_copy": ""}}) == []
  assert config_diff(saved, {"optimizer": {"lr": 1.0, "param_copy": "bfloat16"}}) == [
      "optimizer.param_copy: '<absent>' → 'bfloat16'"]
  assert config_diff({"optimizer": {"lr": 1.0, "param_copy": "bfloat16"}},
                     {"optimizer": {"lr": 1.0, "param_copy": ""}}) == ["optimizer.param_copy: 'bfloat16' → ''"]


def test_config_diff_ignores_a_retired_field_only_at_the_value_the_code_keeps():
  """model.packed_guard is gone (the selects always run): a run saved with it True resumes, one saved
  with it False ran without the selects and refuses — against the UL2 config as it is now."""
  import copy  # pylint: disable=g-import-not-at-top
  from paperjax.checkpoint import RETIRED_KEYS, config_dict, config_diff  # pylint: disable=g-import-not-at-top
  from paperjax.models.transformer import TransformerConfig  # pylint: disable=g-import-not-at-top
  now = config_dict(ul2_config.get_config("base"))
  for key in RETIRED_KEYS:  # retired means gone: from the config and from the model's fields
    section, name = key.split(".")
    assert name not in now[section] and name not in {f.name for f in dataclasses.fields(TransformerConfig)}
  saved = copy.deepcopy(now)
  saved["model"]["packed_guard"] = True
  assert config_diff(saved, now) == []
  saved["model"]["packed_guard"] = False
  assert config_diff(saved, now) == ["model.packed_guard: False → '<absent>'"]


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  cfg = shrink(ul2_config.get_config(), steps=6)
  cfg.train.ckpt_every = 2
  cfg.optimizer.lr = 1e30       # diverges within a few steps
  cfg.optimizer.clip_norm = 0.0
  cfg.optimizer.warmup_steps = 0
  with pytest.raises(train.NonFiniteLossError, match=r"at step \d+"):
    train.run(cfg, str(tmp_path))
  ckpts = sorted(int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit())
  rows = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  for step in ckpts:  # every kept checkpoint was taken at a step whose loss was finite
    assert all(math.isfinite(r["loss"]) for r in rows if r["step"] <= step and "loss" in r)


def test_summary_reports_denoisers_and_paths(tmp_path, capsys):
  cfg = shrink(ul2_config.get_config(), steps=4)
  cfg.train.progress = True
  s = train.run(cfg, str(tmp_path))
  out = capsys.readouterr().out
  assert "summary: ul2" in out and "eval/infill" in out and "checkpoints:" in out
  assert set(s["eval"]) >= {"infill", "suffix", "suffix_as_NLU", "loss/S", "loss_mismatch/S"}
  per_denoiser = [k for k in s["train"] if k.startswith("loss/")]
  assert per_denoiser, "per-denoiser train loss missing"
  assert os.path.exists(tmp_path / "metrics.jsonl") and os.path.isdir(tmp_path / "tb")
  assert s["tokens_seen"] == 4 * 8 * 64
  # Host time per step beside the step time: the batch's production, the step's dispatch and the wait
  # for the device are all parts of the loop's step, so together they cannot exceed it.
  tr = s["train"]
  assert tr["input_time_s"] > 0 and tr["device_wait_s"] >= 0 and tr["dispatch_time_s"] > 0
  windows = [r for r in s["history"] if "dispatch_time_s" in r]
  assert windows
  for r in windows:  # every window's own host time (each window starts its counts from zero)
    assert r["input_time_s"] + r["dispatch_time_s"] + r["device_wait_s"] <= r["step_time_s"] * 1.05 + 1e-3
  assert 0 < s["first_step_s"] <= s["wall_s"]
  # Optimizer-state bytes, from the state's shapes, for every run: AdamW holds μ and ν (2 × params, fp32)
  # plus its int32 step counts.
  n_float = 2 * s["params"] * 4
  assert n_float <= s["opt_state_bytes"] <= n_float + 64 and "optimizer state" in out


def test_stages_hand_parameters_over(tmp_path):
  cfg = shrink(ul2_config.get_config(), steps=2)
  cfg.stages = (
      {"name": "span", "overrides": {"ul2.objective": "span"}},
      {"name": "ul2", "overrides": {"ul2.objective": "ul2", "train.steps": 3}},
  )
  s = train.run(cfg, str(tmp_path))
  assert set(s["stages"]) == {"span", "ul2"}
  assert s["stages"]["span"]["step"] == 2 and s["step"] == 3
  assert os.path.isdir(tmp_path / "span" / "checkpoints") and os.path.isdir(tmp_path / "ul2" / "checkpoints")


def _copy_config(copy: bool, group: bool = False):
  c = shrink(ul2_config.get_config(), steps=4)
  c.model.dtype = "bfloat16"
  c.optimizer.param_copy = "bfloat16" if copy else ""
  c.optimizer.group_leaves = group
  return c


@pytest.mark.slow  # three short runs each; the options' numbers are checked in the fast suite (tests/test_optim.py)
@pytest.mark.parametrize("group", [False, True])
def test_param_copy_resumes_and_trains_as_without_it(tmp_path, group):
  """`optimizer.param_copy` (the optimizer keeps the bf16 kernels the step reads): a run with it,
  stopped and resumed from its checkpoint (the copy is part of the optimizer state), has the loss
  curve of a straight run without it, to the last bit; with `group_leaves` too (its stacked state
  checkpointed), to float rounding (vmapped reductions may sum in another order)."""
  straight = train.run(_copy_config(False), str(tmp_path / "plain"))
  cfg = _copy_config(True, group)
  cfg.train.stop_at = 2
  first = train.run(cfg, str(tmp_path / "copy"))
  cfg.train.stop_at = 0
  second = train.run(cfg, str(tmp_path / "copy"))
  want, got = losses(straight), losses(first) + losses(second)
  assert (got == want if not group else got == pytest.approx(want, rel=1e-5)) and second["step"] == 4


def test_param_copy_bad_combinations_are_one_sentence(tmp_path):
  wrong = _copy_config(True)
  wrong.model.dtype = "float32"
  with pytest.raises(ValueError, match=r"param_copy='bfloat16' differs from model\.dtype='float32'"):
    train.run(wrong, str(tmp_path / "wrong"))
  from configs import look  # pylint: disable=g-import-not-at-top
  own = shrink(look.get_config())
  own.optimizer.param_copy = own.model.dtype = "bfloat16"
  with pytest.raises(ValueError, match="default step only"):
    train.run(own, str(tmp_path / "own"))
  assert not (tmp_path / "wrong").exists()  # refused before the workdir is touched
  assert not (tmp_path / "own" / "checkpoints").exists()
