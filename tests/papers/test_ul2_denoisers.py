"""UL2 mixture of denoisers: T5's counting rules by hand, statistics, reconstruction, lengths."""

import dataclasses
import math

import numpy as np
import pytest

from paperjax.papers.ul2 import denoisers as D

MODES = {"[NLU]": 3, "[NLG]": 4, "[S2S]": 5}
IDS = D.TokenIds(pad_id=0, eos_id=1, first_sentinel=1000, num_sentinels=100, mode_ids=MODES)
SPAN_DENOISERS = [d for d in D.UL2_DENOISERS if d.kind == "span"]
ALL_DENOISERS = D.UL2_DENOISERS + D.CAUSAL_LM


@dataclasses.dataclass
class FakeTokenizer:
  """Stand-in with the attributes of paperjax.data.tokenizers' tokenizers."""
  pad_id: int = 0
  eos_id: int = 1
  num_sentinels: int = 100
  vocab_size: int = 1200
  first: int = 1000

  def special_id(self, name):
    return MODES[name]

  def sentinel_id(self, i):
    return self.first + i

  def is_sentinel(self, ids):
    ids = np.asarray(ids)
    return (ids >= self.first) & (ids < self.first + self.num_sentinels)


class GappyTokenizer(FakeTokenizer):
  def sentinel_id(self, i):
    return self.first + 2 * i


def raw_tokens(rng, *shape):
  return rng.integers(10, 900, size=shape).astype(np.int32)  # no pad, eos, mode or sentinel ids


def runs(mask):
  """Number of noise spans per row: rising edges of the mask."""
  prev = np.zeros_like(mask)
  prev[..., 1:] = mask[..., :-1]
  return (mask & ~prev).sum(-1)


def span_lengths(mask_row, value=True):
  """Lengths of the runs of `value` in one mask row."""
  m = np.concatenate([[0], mask_row == value, [0]]).astype(np.int8)
  edges = np.flatnonzero(np.diff(m))
  return edges[1::2] - edges[::2]


# --- T5's counts, by hand ------------------------------------------------------------------------

COUNT_CASES = [  # (length, rate, mean span, noise tokens, spans), each computed by hand
    (512, 0.15, 3, 77, 26),    # 76.8 -> 77; 25.67 -> 26
    (512, 0.15, 8, 77, 10),    # 9.625 -> 10
    (512, 0.15, 64, 77, 1),    # 1.2 -> 1: one span of 77, not 64
    (512, 0.5, 3, 256, 85),    # 85.33 -> 85
    (512, 0.5, 8, 256, 32),
    (512, 0.5, 64, 256, 4),
    (568, 0.15, 3, 85, 28),    # T5's default 568 raw tokens -> 512 inputs (483 + 28 + EOS)
    (10, 0.25, 3, 2, 1),       # 2.5 -> 2: round half to even, as tf.round
    (14, 0.25, 2, 4, 2),       # 3.5 -> 4
    (20, 0.25, 2, 5, 2),       # 5 / 2 = 2.5 -> 2
    (190, 0.15, 3, 29, 10),    # float32: 190 * 0.15f = 28.500002 -> 29 (float64 would give 28)
    (110, 0.55, 3, 60, 20),    # float32: 60.5 exactly -> 60 (float64 60.500000000000007 -> 61)
    (4, 0.9, 3, 3, 1),         # 3.6 -> 4, clipped to length - 1
    (2, 0.15, 3, 1, 1),        # 0.3 -> 0, clipped up to 1
]


@pytest.mark.parametrize("length,rate,mu,noise,spans", COUNT_CASES)
def test_noise_counts_follow_t5_rounding(length, rate, mu, noise, spans):
  assert D.noise_counts(length, rate, mu) == (noise, spans)
  assert D.max_spans(length, D.Denoiser("span", mu, rate)) == spans


@pytest.mark.parametrize("length,rate,mu,noise,spans", COUNT_CASES)
def test_every_mask_has_exactly_the_t5_counts(length, rate, mu, noise, spans):
  rng = np.random.default_rng(0)
  singles = np.stack([D.random_spans_noise_mask(length, rate, mu, rng) for _ in range(50)])
  batched = D.random_spans_noise_mask_batch((200, length), rate, mu, rng)
  for mask in (singles, batched):
    assert mask.shape[1] == length and mask.dtype == bool
    assert (mask.sum(1) == noise).all() and (runs(mask) == spans).all()
    assert not mask[:, 0].any() and mask[:, -1].all()  # begins with non-noise, ends with noise


def test_degenerate_lengths_match_t5():
  rng = np.random.default_rng(0)
  assert D.random_spans_noise_mask(1, 0.15, 3, rng).tolist() == [False]  # mask of length 2, cut to 1
  assert D.random_spans_noise_mask(0, 0.15, 3, rng).shape == (0,)
  assert D.random_spans_noise_mask(2, 0.5, 3, rng).tolist() == [False, True]
  mixed = D.random_spans_noise_mask_batch(np.array([5, 12, 5, 1]), 0.3, 2, rng)
  assert mixed.shape == (4, 12) and not mixed[[0, 2], 5:].any() and not mixed[3].any()
  assert mixed[1].sum() == D.noise_counts(12, 0.3, 2)[0] and mixed[0].sum() == D.noise_counts(5, 0.3, 2)[0]
  with pytest.raises(ValueError, match="non-noise"):  # 4 spans need 4 non-noise tokens; there is 1
    D.random_spans_noise_mask(5, 0.9, 1, rng)


# --- statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize("d", SPAN_DENOISERS, ids=lambda d: d.name)
def test_corruption_rate_and_mean_span_over_10k_masks(d):
  mask = D.random_spans_noise_mask_batch((10_000, 512), d.rate, d.mean_span, np.random.default_rng(1))
  rate = mask.mean()
  mean_span = mask.sum() / runs(mask).sum()
  assert abs(rate - d.rate) <= 0.01
  if 512 * d.rate / d.mean_span >= 4:
    assert abs(mean_span - d.mean_span) <= 0.05 * d.mean_span
  else:  # (64, 0.15): 77 noise tokens round to a single span, so the mean span is 77.
    assert (d.mean_span, d.rate, mean_span) == (64, 0.15, 77)


def composition_marginal(items, parts):
  """P(a given part = j) for a uniformly random composition of `items` into `parts` positive parts."""
  total = math.comb(items - 1, parts - 1)
  return np.array([math.comb(items - j - 1, parts - 2) / total for j in range(1, items - parts + 2)])


@pytest.mark.parametrize("length,rate,mu", [(512, 0.15, 3), (128, 0.5, 8)])
def test_both_paths_draw_span_lengths_from_the_uniform_composition_law(length, rate, mu):
  rng = np.random.default_rng(2)
  noise, spans = D.noise_counts(length, rate, mu)
  singles = np.stack([D.random_spans_noise_mask(length, rate, mu, rng) for _ in range(2_000)])
  batched = D.random_spans_noise_mask_batch((10_000, length), rate, mu, rng)
  for mask in (singles, batched):
    for value, items in ((True, noise), (False, length - noise)):
      exact = composition_marginal(items, spans)
      lengths = np.concatenate([span_lengths(row, value) for row in mask])
      firsts = np.array([span_lengths(row, value)[0] for row in mask])
      for sample in (lengths, firsts):  # all spans, and the first one alone
        empirical = np.bincount(sample, minlength=exact.size + 1)[1:] / sample.size
        # Kolmogorov-Smirnov distance; 2.5/sqrt(n) is p ~ 1e-5 for iid draws.
        assert np.abs(np.cumsum(empirical[:exact.size]) - np.cumsum(exact)).max() < 2.5 / np.sqrt(sample.size)
  # The two paths also agree on where the noise falls.
  assert np.abs(singles.mean(0) - batched.mean(0)).max() < 0.05


def test_denoiser_frequencies_match_rates():
  rng = np.random.default_rng(3)
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 64, 64, 60)
  batched = mix.batch(raw_tokens(rng, 50_000, 60), rng)["denoiser"]
  row = raw_tokens(rng, 60)
  singles = np.array([int(mix(row, rng)["denoiser"]) for _ in range(20_000)])
  for draws in (batched, singles):
    freq = np.bincount(draws, minlength=7) / draws.size
    assert np.abs(freq - np.array(D.UL2_RATES)).max() <= 0.01
    assert abs(freq[:2].sum() - 0.4) <= 0.01 and abs(freq[2:6].sum() - 0.4) <= 0.01


# --- examples ------------------------------------------------------------------------------------


def examples(mix, denoiser, rng, n=64):
  """(path, inputs, targets, raw) for n rows through each path, unpadded by merge's convention."""
  tokens = raw_tokens(rng, n, mix.raw_length)
  out = [("batch", mix.batch(tokens, rng, denoiser=denoiser), tokens)]
  singles = [mix(row, rng, denoiser=denoiser) for row in tokens[:16]]
  out.append(("single", {k: np.stack([s[k] for s in singles]) for k in singles[0]}, tokens[:16]))
  for path, ex, toks in out:
    for i in range(len(toks)):
      if mix.architecture == "encdec":
        yield path, ex["inputs"][i], ex["targets"][i], toks[i], ex, i
      else:
        cut = ex["prefix_len"][i]
        yield path, ex["tokens"][i][:cut], ex["tokens"][i][cut:], toks[i], ex, i


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
@pytest.mark.parametrize("d", range(len(ALL_DENOISERS)), ids=lambda i: ALL_DENOISERS[i].name)
def test_merge_reconstructs_the_raw_tokens(arch, d):
  mix = D.MixtureOfDenoisers(ALL_DENOISERS, None, IDS, 96, 64, 80, arch)
  used = mix.plans[d].raw_used
  for _, inputs, targets, raw, ex, i in examples(mix, d, np.random.default_rng(4)):
    np.testing.assert_array_equal(D.merge_inputs_and_targets(inputs, targets, IDS), raw[:used])
    assert ex["denoiser"][i] == d


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
@pytest.mark.parametrize("d", range(6), ids=lambda i: SPAN_DENOISERS[i].name)
def test_sentinels_count_the_spans(arch, d):
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 512, 512, 568, arch)
  plan = mix.plans[d]
  want = IDS.first_sentinel + np.arange(plan.num_spans)
  for _, inputs, targets, _, _, _ in examples(mix, d, np.random.default_rng(5), n=32):
    assert inputs[0] == MODES[SPAN_DENOISERS[d].mode]
    in_sent, tgt_sent = inputs[IDS.is_sentinel(inputs)], targets[IDS.is_sentinel(targets)]
    np.testing.assert_array_equal(in_sent, want)   # sentinel_0, sentinel_1, ... in order
    np.testing.assert_array_equal(tgt_sent, want)  # one sentinel-led group per span
    assert IDS.is_sentinel(targets[0])
    body = targets[(targets != IDS.pad_id) & ~IDS.is_sentinel(targets)]
    assert body.size - 1 == plan.num_noise and body[-1] == IDS.eos_id  # exactly num_noise tokens + EOS


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_prefix_lm_split_masks_and_prefix_len(arch):
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 40, 40, 16, arch)
  n = mix.plans[6].raw_used
  assert n == 16
  for _, inputs, targets, raw, ex, i in examples(mix, "S", np.random.default_rng(6)):
    assert inputs[0] == MODES["[S2S]"]
    prefix = inputs[1:list(inputs).index(IDS.eos_id)]
    suffix = targets[:list(targets).index(IDS.eos_id)]
    assert len(prefix) >= 1 and len(suffix) >= 1
    np.testing.assert_array_equal(np.concatenate([prefix, suffix]), raw)
    if arch == "encdec":
      np.testing.assert_array_equal(ex["targets_mask"][i], np.arange(40) < len(suffix) + 1)
    else:
      assert ex["prefix_len"][i] == 1 + len(prefix) + 1
      np.testing.assert_array_equal(np.flatnonzero(ex["loss_mask"][i]),
                                    ex["prefix_len"][i] + np.arange(len(suffix) + 1))
  # The split point is uniform on [1, n-1] (T5's random_prefix_noise_mask).
  rng = np.random.default_rng(7)
  out = mix.batch(raw_tokens(rng, 15_000, 16), rng, denoiser="S")
  split = (out["prefix_len"] - 2) if arch == "decoder" else (out["inputs"] != IDS.pad_id).sum(1) - 2
  counts = np.bincount(split, minlength=n)
  assert counts[0] == 0 and counts[1:].min() > 0.85 * 1000 and counts[1:].max() < 1.15 * 1000


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_causal_lm_predicts_every_token(arch):
  mix = D.MixtureOfDenoisers(D.CAUSAL_LM, None, IDS, 8, 24, 30, arch)
  rng = np.random.default_rng(8)
  tokens = raw_tokens(rng, 4, 30)
  out = mix.batch(tokens, rng)
  if arch == "encdec":
    assert mix.plans[0].raw_used == 23  # targets_length - EOS
    assert (out["inputs"][:, 0] == IDS.eos_id).all() and (out["inputs"][:, 1:] == IDS.pad_id).all()
    np.testing.assert_array_equal(out["targets"][:, :23], tokens[:, :23])
    assert out["targets_mask"].sum() == 4 * 24
  else:
    assert mix.plans[0].raw_used == 30  # 8 + 24 - EOS - EOS leaves room for all 30
    assert (out["tokens"][:, 0] == IDS.eos_id).all() and (out["prefix_len"] == 1).all()
    np.testing.assert_array_equal(out["tokens"][:, 1:31], tokens)
    np.testing.assert_array_equal(out["loss_mask"][0], (np.arange(32) >= 1) & (np.arange(32) <= 31))


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_shapes_dtypes_and_determinism(arch):
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 512, 128, 568, arch)
  tokens = raw_tokens(np.random.default_rng(9), 32, 568)
  a = mix.batch(tokens, np.random.default_rng(10))
  b = mix.batch(tokens, np.random.default_rng(10))
  c = mix.batch(tokens, np.random.default_rng(11))
  single = mix(tokens[0], np.random.default_rng(10))
  again = mix(tokens[0], np.random.default_rng(10))
  for key, (shape, dtype) in mix.output_spec().items():
    assert a[key].shape == (32, *shape) and a[key].dtype == dtype
    assert single[key].shape == shape and single[key].dtype == dtype
    np.testing.assert_array_equal(a[key], b[key])
    np.testing.assert_array_equal(single[key], again[key])
  assert any(not np.array_equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("arch", ["encdec", "decoder"])
def test_mode_override_changes_only_the_mode_token(arch):
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 64, 64, 60, arch)
  tokens = raw_tokens(np.random.default_rng(12), 8, 60)
  key = "inputs" if arch == "encdec" else "tokens"
  for call in (lambda **kw: mix.batch(tokens, np.random.default_rng(13), denoiser="S", **kw),
               lambda **kw: mix(tokens[0], np.random.default_rng(13), denoiser="S", **kw)):
    own, swapped, dropped = call(), call(mode_override="[NLU]"), call(mode_override=D.NO_MODE)
    assert (own[key][..., 0] == MODES["[S2S]"]).all() and (swapped[key][..., 0] == MODES["[NLU]"]).all()
    np.testing.assert_array_equal(own[key][..., 1:], swapped[key][..., 1:])
    np.testing.assert_array_equal(own[key][..., 1:], dropped[key][..., :-1])
    for k in own:
      if k not in (key, "prefix_len", "loss_mask"):
        np.testing.assert_array_equal(own[k], swapped[k])
  with pytest.raises(ValueError, match="no id"):
    mix(tokens[0], np.random.default_rng(0), mode_override="[XYZ]")


# --- lengths -------------------------------------------------------------------------------------


def test_per_denoiser_raw_lengths_by_hand():
  plans = {p.denoiser.name: p for p in D.plan_lengths(D.UL2_DENOISERS, raw_length=568, inputs_length=512,
                                                       targets_length=128)}
  # R(3,0.15): 568 tokens -> mode + 483 + 28 sentinels + EOS = 513 > 512; 567 -> 512.
  assert (plans["R(3,0.15)"].raw_used, plans["R(3,0.15)"].inputs_len) == (567, 512)
  assert plans["R(3,0.15)"].limited_by == "inputs_length"
  # X(3,0.5): 190 -> 95 noise + 32 sentinels + EOS = 128; 191 -> round(95.5) = 96 noise -> 129.
  assert (plans["X(3,0.5)"].raw_used, plans["X(3,0.5)"].targets_len) == (190, 128)
  assert plans["X(64,0.15)"].raw_used == 568 and plans["X(64,0.15)"].limited_by == "raw_length"
  assert plans["S"].raw_used == 128  # every split must fit: suffix + EOS <= 128
  with pytest.raises(ValueError, match="sentinels"):  # X(3,0.5) at 568 tokens writes 95 sentinels
    D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, dataclasses.replace(IDS, num_sentinels=10), 512, 512, 568)
  with pytest.raises(ValueError, match="fits"):
    D.plan_lengths(SPAN_DENOISERS[:1], raw_length=568, inputs_length=2, targets_length=128)
  assert "never truncated" in D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, IDS, 512, 128, 568).length_report()


def test_token_ids_from_tokenizer_and_validation():
  ids = D.TokenIds.from_tokenizer(FakeTokenizer())
  assert ids == IDS and hash(ids) == hash(IDS)
  with pytest.raises(ValueError, match="contiguous"):
    D.TokenIds.from_tokenizer(GappyTokenizer())
  with pytest.raises(ValueError, match="sentinel block"):
    D.TokenIds(pad_id=0, eos_id=1000, first_sentinel=1000, num_sentinels=100)
  mix = D.MixtureOfDenoisers(D.UL2_DENOISERS, D.UL2_RATES, FakeTokenizer(), 64, 64, 60)
  assert mix.token_ids == IDS
  with pytest.raises(ValueError, match="raw_length=60"):
    mix(np.arange(59), np.random.default_rng(0))


def test_ul2_defaults_are_the_papers_mixture():
  got = [(d.kind, d.mean_span, d.rate, d.mode, d.name) for d in D.UL2_DENOISERS if d.kind == "span"]
  assert got == [("span", 3, 0.15, "[NLU]", "R(3,0.15)"), ("span", 8, 0.15, "[NLU]", "R(8,0.15)"),
                 ("span", 3, 0.5, "[NLG]", "X(3,0.5)"), ("span", 8, 0.5, "[NLG]", "X(8,0.5)"),
                 ("span", 64, 0.15, "[NLG]", "X(64,0.15)"), ("span", 64, 0.5, "[NLG]", "X(64,0.5)")]
  assert (D.UL2_DENOISERS[6].kind, D.UL2_DENOISERS[6].mode) == ("prefix", "[S2S]")
  assert D.UL2_RATES == (0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2)


# --- packing: tests/test_packing.py (MixtureOfDenoisers.split / .packing through data.pipeline) --------


def test_host_benchmark_times_every_path_including_the_trainer_pipeline():
  import subprocess
  import sys
  out = subprocess.run([sys.executable, "-m", "paperjax.papers.ul2.bench_denoisers", "--seconds=0.05", "--batch=8",
                        "--raw_length=60", "--inputs_length=48", "--targets_length=32", "--architectures=encdec",
                        "--pipeline"], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  for path in ("per-example:", "batched:", "grain per-example:", "grain batched:"):
    line = next(l for l in out.stdout.splitlines() if l.strip().startswith(path))
    assert float(line.split(":")[1].split("M raw")[0]) > 0, line
  packed = next(l for l in out.stdout.splitlines() if l.startswith("grain batched packed:"))
  assert float(packed.split(":")[1].split("M tokens")[0]) > 0, packed
