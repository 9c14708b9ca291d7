"""UL2 method: its examples, its evaluation formats, and a few steps of each objective/architecture."""

import numpy as np
import pytest

from configs import ul2 as ul2_config
from paperjax import train
from paperjax.data import tokenizers
from paperjax.papers.ul2 import denoisers as dn
from paperjax.papers.ul2 import method
from tests.conftest import shrink

TOK = tokenizers.make_tokenizer("byte")


def _raw(n, seed=0):
  return np.random.default_rng(seed).integers(3, 259, n).astype(np.int32)


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_prefix_in_context_keeps_tokens_and_split(arch):
  """The causal-LM view of an S-task example scores exactly the suffix(+eos) given exactly the prefix."""
  mix = dn.MixtureOfDenoisers([dn.Denoiser("prefix", mode="[S2S]")], [1.0], token_ids=TOK,
                              inputs_length=40, targets_length=40, raw_length=38, architecture=arch)
  method.MODE_IDS_CACHE.update(TOK.special_id(m) for m in ("[NLU]", "[NLG]", "[S2S]"))
  raw = _raw(38)
  ex = mix(raw, np.random.default_rng(3))
  ctx = method.prefix_in_context(ex, arch, TOK.eos_id)
  if arch == "encdec":
    n_prefix = int((ex["inputs"] != 0).sum()) - 2          # minus mode and eos
    seq = ctx["targets"][ctx["targets"] != 0]
    assert ctx["inputs"][0] == TOK.eos_id and (ctx["inputs"][1:] == 0).all()
    scored = ctx["targets"][ctx["targets_mask"] > 0]
    np.testing.assert_array_equal(scored, ex["targets"][ex["targets_mask"] > 0])
  else:
    n_prefix = int(ex["prefix_len"]) - 2
    seq = ctx["tokens"][1:][ctx["tokens"][1:] != 0]
    assert int(ctx["prefix_len"]) == 1 and ctx["tokens"][0] == TOK.eos_id
    np.testing.assert_array_equal(ctx["tokens"][ctx["loss_mask"] > 0], ex["tokens"][ex["loss_mask"] > 0])
  np.testing.assert_array_equal(seq[:-1], raw[: len(seq) - 1])   # prefix ++ suffix == the raw chunk
  assert seq[-1] == TOK.eos_id
  assert len(seq) - 1 - n_prefix == int((ctx.get("targets_mask", ctx.get("loss_mask")) > 0).sum()) - 1


def test_eval_tasks_per_objective():
  c = ul2_config.get_config()
  names = set(method.eval_tasks(c, TOK))
  assert {"infill", "suffix", "suffix_as_NLU", "loss/S", "loss_mismatch/S", "loss/X(64,0.5)"} <= names
  c = ul2_config.get_config("tiny,objective=span")
  assert "suffix_as_NLU" not in set(method.eval_tasks(c, TOK))
  assert not any(k.startswith("loss_mismatch") for k in method.eval_tasks(c, TOK))


def test_mismatched_mode_changes_only_the_mode_token():
  c = ul2_config.get_config()
  tasks = method.eval_tasks(c, TOK)
  good, _ = tasks["suffix"]
  bad, _ = tasks["suffix_as_NLU"]
  raw = _raw(94)
  a, b = good(raw, np.random.default_rng(7)), bad(raw, np.random.default_rng(7))
  assert a["inputs"][0] == TOK.special_id("[S2S]") and b["inputs"][0] == TOK.special_id("[NLU]")
  np.testing.assert_array_equal(a["inputs"][1:], b["inputs"][1:])
  np.testing.assert_array_equal(a["targets"], b["targets"])


@pytest.mark.parametrize("objective,kind", [("ul2", "encdec"), ("span", "encdec"), ("causal", "encdec"),
                                            ("ul2", "prefix_lm"), ("causal", "prefix_lm")])
def test_objectives_train_and_evaluate(tmp_path, objective, kind):
  c = shrink(ul2_config.get_config(f"tiny,objective={objective}"), steps=3)
  c.model.kind = kind
  s = train.run(c, None)
  assert np.isfinite(s["train"]["loss"])
  assert np.isfinite(s["eval"]["infill"]) and np.isfinite(s["eval"]["suffix"])
  assert s["train"]["loss"] < np.log(TOK.vocab_size) + 1.0


def test_decoder_only_kind_is_rejected():
  c = shrink(ul2_config.get_config(), steps=1)
  c.model.kind = "decoder"
  with pytest.raises(ValueError, match="prefix_lm"):
    train.run(c, None)


def test_packed_rows_train_with_each_denoisers_loss(tmp_path):
  # raw chunks of 30 into 64-token input rows: two R examples (~28 inputs, ~7 targets) share a row
  c = shrink(ul2_config.get_config("tiny"), steps=3)
  c.data.pack, c.ul2.inputs_length = True, 64
  s = train.run(c, None)
  assert np.isfinite(s["train"]["loss"]) and np.isfinite(s["eval"]["infill"])
  assert s["train"]["examples_per_row"] > 1.0, s["train"]
  per_denoiser = [k for k in s["train"] if k.startswith("loss/")]
  assert len(per_denoiser) >= 3, s["train"]  # the breakdown survives packing (targets_denoiser)


def test_packing_a_prefix_lm_is_refused_in_one_sentence():
  c = shrink(ul2_config.get_config("tiny"), steps=1)
  c.model.kind, c.data.pack = "prefix_lm", True
  with pytest.raises(ValueError, match="data.pack=False"):
    train.run(c, None)
