"""UL2's Mixture-of-Denoisers as host-side numpy: T5 span corruption, prefix LM, causal LM.

Paper: Tay et al., "UL2: Unifying Language Learning Paradigms", ICLR 2023,
https://arxiv.org/abs/2205.05131.

Rule. Every example draws a denoiser d ~ Categorical(rates) and is rewritten as
(inputs, targets) = d(tokens), with d's mode token prepended to the inputs:

  R [NLU]  span corruption  (mu=3, r=0.15), (mu=8, r=0.15)
  X [NLG]  span corruption  (mu=3, r=0.5), (mu=8, r=0.5), (mu=64, r=0.15), (mu=64, r=0.5)
  S [S2S]  prefix LM: split point p ~ U{1, ..., n-1}; inputs = prefix, targets = suffix
  rates    R 40% and X 40%, each split evenly over its settings; S 20%.

What was checked, and where:
* Span corruption is T5's, read in google-research/text-to-text-transfer-transformer
  `t5/data/preprocessors.py`: `random_spans_noise_mask` (float32 products rounded by `tf.round`,
  i.e. half to even; num_noise clipped to [1, n-1]; num_spans = max(1, round(num_noise / mu));
  `length = max(length, 2)` and the mask cut back to the original length; spans alternate and
  begin with non-noise; `_random_segmentation` shuffles num_segments-1 cut markers over
  num_items-1 slots), `noise_span_to_unique_sentinel` / `nonnoise_span_to_unique_sentinel`,
  `random_prefix_noise_mask` (prefix length uniform on [1, n-1]) and `random_spans_helper`.
* The mixture follows the paper's appendix `ul2_objective`, as reproduced in public UL2
  pretraining configs (Finnish-NLP, Turkish and Japanese UL2 task files, which cite "chapter 3.1.2
  table 1"): the six (mu, r) pairs and the [NLU]/[NLG]/[S2S] tokens above; one raw length per
  span denoiser from `random_spans_helper(inputs_length, ...)` and a ValueError when the targets
  do not fit; S = T5 `prefix_lm` on chunks of inputs_length-1 tokens (inputs = prefix + EOS,
  targets = suffix + EOS); the mode token is prepended after corruption; `sample_from_datasets`.
* The 40/40/20 rates come from those configs (`[0.4/2]*2 + [0.4/4]*4 + [0.2]`). I could not read
  the paper's own text on its rates from here; note the appendix code's default, `rates=None`, is
  uniform (1/7 each). Pass `rates=` to change.

Deviations, with reasons:
* Sentinels. T5 counts `<extra_id_i>` down from the end of the vocabulary; here span i (in
  order) gets `first_sentinel + i`, the tokenizer's contiguous block. Same meaning, other ids.
* Lengths. The input keeps one slot for the mode token. T5's pipeline prepends it *after* sizing
  the inputs, so a full-length input loses its last token (the EOS) to the final trim.
* No truncation, ever. Each denoiser corrupts the longest prefix of the raw chunk (at most
  `raw_length` tokens) whose inputs and targets both fit, as `random_spans_helper` does, instead
  of cutting targets (which would leave corrupted tokens unpredicted and skew r and mu). The
  unused tail of the chunk is dropped; `length_report` shows what each denoiser uses. For prefix
  LM every split point must fit too, so n <= min(inputs_length - mode, targets_length).
  `architecture="decoder"` has one sequence of inputs_length + targets_length tokens, and that
  total is the only budget.
* Causal LM (a baseline, not in UL2) is a prefix LM with an empty prefix: inputs = [mode] + EOS,
  targets = tokens + EOS. The EOS keeps the encoder input non-empty, and in the decoder-only
  layout it plays BOS, so that the first real token is predicted too.

Two paths compute the same thing: `MixtureOfDenoisers.__call__` does one example with T5's
per-example algorithm (a grain random map), and `MixtureOfDenoisers.batch` does a whole batch at
once, grouped by denoiser. Each denoiser's counts depend only on its raw length, so all rows of a
group have the same shapes and the group is a handful of numpy ops over the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any, Literal

import numpy as np

Architecture = Literal["encdec", "decoder"]
NO_MODE = ""  # `mode_override=NO_MODE` drops the mode token (the no-mode-token ablation).
_MODE_LETTER = {"[NLU]": "R", "[NLG]": "X", "[S2S]": "S"}


@dataclasses.dataclass(frozen=True)
class TokenIds:
  """The token ids the denoisers write. Sentinel i is `first_sentinel + i`, i < num_sentinels."""
  pad_id: int
  eos_id: int
  first_sentinel: int
  num_sentinels: int
  mode_ids: Mapping[str, int] | tuple[tuple[str, int], ...] = ()

  def __post_init__(self):
    # A tuple of pairs keeps the dataclass hashable and picklable (grain ships it to workers).
    object.__setattr__(self, "mode_ids", tuple(sorted(dict(self.mode_ids).items())))
    if self.num_sentinels < 0:
      raise ValueError(f"num_sentinels={self.num_sentinels} is negative.")
    clash = [i for i in (self.pad_id, self.eos_id, *dict(self.mode_ids).values()) if self.is_sentinel(i)]
    if clash:
      raise ValueError(f"Ids {clash} fall inside the sentinel block [{self.first_sentinel}, "
                       f"{self.first_sentinel + self.num_sentinels}); give pad/eos/mode tokens other ids.")

  @classmethod
  def from_tokenizer(cls, tok, modes: Sequence[str] = ("[NLU]", "[NLG]", "[S2S]")) -> TokenIds:
    """Reads pad/eos/sentinel/mode ids from a `paperjax.data.tokenizers` tokenizer."""
    num = int(tok.num_sentinels)
    first = int(tok.sentinel_id(0)) if num else 0
    if num and int(tok.sentinel_id(num - 1)) != first + num - 1:
      raise ValueError("The tokenizer's sentinel ids are not one contiguous block; the denoisers need "
                       "sentinel_id(i) == sentinel_id(0) + i.")
    return cls(pad_id=int(tok.pad_id), eos_id=int(tok.eos_id), first_sentinel=first, num_sentinels=num,
               mode_ids={m: int(tok.special_id(m)) for m in modes})

  def mode_id(self, mode: str) -> int:
    ids = dict(self.mode_ids)
    if mode not in ids:
      raise ValueError(f"Mode token {mode!r} has no id; known: {sorted(ids)}. Add it to the tokenizer's "
                       "specials (and to TokenIds.from_tokenizer(modes=...)).")
    return ids[mode]

  def is_sentinel(self, ids) -> np.ndarray:
    ids = np.asarray(ids)
    return (ids >= self.first_sentinel) & (ids < self.first_sentinel + self.num_sentinels)


@dataclasses.dataclass(frozen=True)
class Denoiser:
  """One denoising task. `mean_span` and `rate` are used by kind="span" only."""
  kind: Literal["span", "prefix", "causal"]
  mean_span: float = 3.0
  rate: float = 0.15
  mode: str | None = None
  name: str = ""

  def __post_init__(self):
    if self.kind not in ("span", "prefix", "causal"):
      raise ValueError(f"Denoiser kind {self.kind!r} is unknown; use 'span', 'prefix' or 'causal'.")
    if self.kind == "span" and not (0.0 < self.rate < 1.0 and self.mean_span >= 1.0):
      raise ValueError(f"Span denoiser needs 0 < rate < 1 and mean_span >= 1, got rate={self.rate}, "
                       f"mean_span={self.mean_span}.")
    if not self.name:
      if self.kind == "span":
        name = f"{_MODE_LETTER.get(self.mode, 'span')}({self.mean_span:g},{self.rate:g})"
      else:
        name = "S" if self.kind == "prefix" else "causal"
      object.__setattr__(self, "name", name)


UL2_DENOISERS = (
    Denoiser("span", 3, 0.15, "[NLU]"), Denoiser("span", 8, 0.15, "[NLU]"),
    Denoiser("span", 3, 0.5, "[NLG]"), Denoiser("span", 8, 0.5, "[NLG]"),
    Denoiser("span", 64, 0.15, "[NLG]"), Denoiser("span", 64, 0.5, "[NLG]"),
    Denoiser("prefix", mode="[S2S]"),
)
UL2_RATES = (0.2, 0.2, 0.1, 0.1, 0.1, 0.1, 0.2)
# The toy's specialist baselines: T5's objective and a plain language model, without mode tokens.
T5_SPAN_CORRUPTION = (Denoiser("span", 3, 0.15, None, "T5(3,0.15)"),)
CAUSAL_LM = (Denoiser("causal"),)


# ---------------------------------------------------------------------------------------------
# T5 span corruption.


def noise_counts(length, noise_density: float, mean_noise_span_length: float):
  """(num_noise_tokens, num_noise_spans) by T5's rules, for an int or an int array of lengths.

  As `random_spans_noise_mask`: float32 products rounded half to even (`tf.round`), lengths below 2
  raised to 2, num_noise clipped to [1, length-1], num_spans at least 1. At length 512,
  (mu=64, r=0.15) gives round(76.8) = 77 noise tokens in max(1, round(77/64)) = 1 span.
  """
  length = np.maximum(np.asarray(length, np.int64), 2)
  num_noise = np.rint(length.astype(np.float32) * np.float32(noise_density)).astype(np.int64)
  num_noise = np.clip(num_noise, 1, length - 1)
  num_spans = np.rint(num_noise.astype(np.float32) / np.float32(mean_noise_span_length)).astype(np.int64)
  num_spans = np.maximum(num_spans, 1)
  if num_noise.ndim == 0:
    return int(num_noise), int(num_spans)
  return num_noise, num_spans


def _checked_counts(length, noise_density, mean_noise_span_length):
  num_noise, num_spans = noise_counts(length, noise_density, mean_noise_span_length)
  if num_spans > max(length, 2) - num_noise:
    # T5 would fail inside tf.stack here: the non-noise tokens cannot fill num_spans gaps.
    raise ValueError(f"rate={noise_density}, mean_span={mean_noise_span_length} at length {length} needs "
                     f"{num_spans} non-noise spans but has only {max(length, 2) - num_noise} non-noise tokens.")
  return num_noise, num_spans


def _random_segmentation(num_items: int, num_segments: int, rng: np.random.Generator) -> np.ndarray:
  """T5's segmentation: shuffle num_segments-1 cut markers over the num_items-1 gaps.

  Every composition of num_items into num_segments positive parts is equally likely.
  """
  first_in_segment = np.zeros(num_items, bool)
  first_in_segment[1:] = rng.permutation(np.arange(num_items - 1) < num_segments - 1)
  return np.bincount(np.cumsum(first_in_segment), minlength=num_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """T5's noise mask: bool[length], alternating non-noise/noise spans, beginning with non-noise.

  num_noise and num_spans are fixed by `noise_counts`; subject to them all masks are equally
  likely. For length >= 2 the first token is never noise and the last always is.
  """
  orig_length, length = length, max(length, 2)  # T5 pads to 2 to avoid degeneracy, then cuts back.
  num_noise, num_spans = _checked_counts(length, noise_density, mean_noise_span_length)
  noise_lengths = _random_segmentation(num_noise, num_spans, rng)
  nonnoise_lengths = _random_segmentation(length - num_noise, num_spans, rng)
  interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)
  return np.repeat(np.tile([False, True], num_spans), interleaved)[:orig_length]


def _random_segmentation_batch(num_items: int, num_segments: int, batch: int,
                               rng: np.random.Generator) -> np.ndarray:
  """[batch, num_segments] segment lengths with `_random_segmentation`'s distribution.

  The num_segments-1 cuts are a uniformly random subset of the num_items-1 gaps: the indices of
  the smallest num_segments-1 of iid uniform keys (argpartition is O(n) per row, no sort).
  """
  if num_segments == 1:
    return np.full((batch, 1), num_items, np.int64)
  keys = rng.random((batch, num_items - 1))
  cuts = np.argpartition(keys, num_segments - 2, axis=1)[:, :num_segments - 1]
  cuts.sort(axis=1)
  bounds = np.concatenate([np.zeros((batch, 1), np.int64), cuts + 1, np.full((batch, 1), num_items)], axis=1)
  return np.diff(bounds, axis=1)


def _noise_mask_rows(batch: int, length: int, noise_density: float, mean_noise_span_length: float,
                     rng: np.random.Generator) -> np.ndarray:
  eff = max(length, 2)
  num_noise, num_spans = _checked_counts(eff, noise_density, mean_noise_span_length)
  noise = _random_segmentation_batch(num_noise, num_spans, batch, rng)
  nonnoise = _random_segmentation_batch(eff - num_noise, num_spans, batch, rng)
  interleaved = np.stack([nonnoise, noise], axis=-1).reshape(-1)
  mask = np.repeat(np.tile([False, True], batch * num_spans), interleaved).reshape(batch, eff)
  return mask[:, :length]


def random_spans_noise_mask_batch(lengths, noise_density: float, mean_noise_span_length: float,
                                  rng: np.random.Generator) -> np.ndarray:
  """`random_spans_noise_mask` for a batch: `lengths` is (batch, length) or an int array of lengths.

  With an array, rows are grouped by length and the result is [batch, max(lengths)], False past
  each row's length. Same distribution as the per-example function, other random stream.
  """
  if isinstance(lengths, tuple):
    batch, length = lengths
    return _noise_mask_rows(batch, length, noise_density, mean_noise_span_length, rng)
  lengths = np.asarray(lengths, np.int64)
  mask = np.zeros((lengths.size, int(lengths.max(initial=0))), bool)
  for length in np.unique(lengths):
    rows = np.flatnonzero(lengths == length)
    mask[rows, :length] = _noise_mask_rows(rows.size, int(length), noise_density, mean_noise_span_length, rng)
  return mask


def noise_span_to_unique_sentinel(tokens: np.ndarray, noise_mask: np.ndarray, first_sentinel: int) -> np.ndarray:
  """T5's rule: each run of noise tokens becomes one sentinel, the i-th run `first_sentinel + i`.

  Works on [..., L] when every row keeps the same number of tokens (true for T5 masks of one length).
  """
  tokens, noise_mask = np.asarray(tokens), np.asarray(noise_mask, bool)
  prev = np.zeros_like(noise_mask)
  prev[..., 1:] = noise_mask[..., :-1]
  first = noise_mask & ~prev
  out = np.where(first, first_sentinel - 1 + np.cumsum(first, axis=-1), tokens).astype(tokens.dtype)
  keep = ~(noise_mask & prev)
  if out.ndim == 1:
    return out[keep]
  counts = keep.sum(axis=-1)
  if counts.size and (counts != counts.flat[0]).any():
    raise ValueError("Rows keep different numbers of tokens; call this once per row.")
  return out[keep].reshape(*out.shape[:-1], int(counts.flat[0]) if counts.size else 0)


def nonnoise_span_to_unique_sentinel(tokens, noise_mask, first_sentinel: int) -> np.ndarray:
  """T5's targets: the complement, so the target reads S0 span0 S1 span1 ... (each mask starts non-noise)."""
  return noise_span_to_unique_sentinel(tokens, ~np.asarray(noise_mask, bool), first_sentinel)


def max_spans(length: int, denoiser: Denoiser) -> int:
  """Sentinels `denoiser` writes into an example of `length` raw tokens (0 unless kind="span")."""
  if denoiser.kind != "span":
    return 0
  return noise_counts(length, denoiser.rate, denoiser.mean_span)[1]


# ---------------------------------------------------------------------------------------------
# Lengths.


@dataclasses.dataclass(frozen=True)
class DenoiserPlan:
  """How one denoiser uses a raw chunk: `raw_used` tokens, and its longest inputs and targets."""
  denoiser: Denoiser
  raw_used: int
  num_noise: int
  num_spans: int
  inputs_len: int   # max over examples, with the mode slot and EOS
  targets_len: int  # max over examples, with EOS
  limited_by: str   # which budget stopped raw_used short of raw_length ("raw_length" if none)


def plan_lengths(denoisers: Sequence[Denoiser], *, raw_length: int, inputs_length: int, targets_length: int,
                 architecture: Architecture = "encdec", mode_slots: int = 1) -> list[DenoiserPlan]:
  """The longest raw prefix each denoiser can rewrite with nothing truncated (see module docstring).

  Lengths are exact functions of n, the raw tokens used (T5's counts are deterministic), so every
  n in [2, raw_length] is tried at once and the largest that fits is kept, as T5's
  `random_spans_helper` does. With m = mode_slots and k spans:
    span    inputs m + (n - noise) + k + 1, targets noise + k + 1
    prefix  longest inputs m + n (split n-1), longest targets n (split 1), any split m + n + 2 in all
    causal  inputs m + 1, targets n + 1
  """
  plans = []
  for d in denoisers:
    n = np.arange(1 if d.kind == "causal" else 2, raw_length + 1)
    num_noise = num_spans = np.zeros_like(n)
    if d.kind == "span":
      num_noise, num_spans = noise_counts(n, d.rate, d.mean_span)
      in_len, tgt_len = mode_slots + n - num_noise + num_spans + 1, num_noise + num_spans + 1
    elif d.kind == "prefix":
      in_len, tgt_len = mode_slots + n, n
    else:
      in_len, tgt_len = np.full_like(n, mode_slots + 1), n + 1
    if architecture == "decoder":  # one sequence: only the sum counts
      fits = mode_slots + n + 2 * num_spans + 2 <= inputs_length + targets_length
    else:
      fits = (in_len <= inputs_length) & (tgt_len <= targets_length)
    ok = np.flatnonzero(fits & (num_spans <= n - num_noise))  # T5 needs a non-noise token per span
    if not ok.size:
      raise ValueError(f"Denoiser {d.name}: no raw length in [{n[0] if n.size else 2}, {raw_length}] fits "
                       f"inputs_length={inputs_length}, targets_length={targets_length} ({architecture}); "
                       "raise the lengths.")
    i, nxt = ok[-1], min(ok[-1] + 1, n.size - 1)
    if i == n.size - 1:
      limited_by = "raw_length"
    elif architecture == "decoder":
      limited_by = "inputs_length+targets_length"
    else:
      limited_by = "inputs_length" if in_len[nxt] > inputs_length else "targets_length"
    plans.append(DenoiserPlan(d, int(n[i]), int(num_noise[i]), int(num_spans[i]), int(in_len[i]),
                              int(tgt_len[i]), limited_by))
  return plans


def format_length_report(plans: Sequence[DenoiserPlan], raw_length: int) -> str:
  """A table of `plan_lengths`: raw tokens each denoiser uses, its longest inputs/targets, its limit."""
  rows = [f"{'denoiser':<12}{'raw used':>9}{'dropped':>9}{'noise':>7}{'spans':>7}{'inputs':>8}{'targets':>9}"
          "  limited by"]
  for p in plans:
    rows.append(f"{p.denoiser.name:<12}{p.raw_used:>9}{raw_length - p.raw_used:>9}{p.num_noise:>7}"
                f"{p.num_spans:>7}{p.inputs_len:>8}{p.targets_len:>9}  {p.limited_by}")
  rows.append("targets are never truncated; raw tokens past 'raw used' are not used.")
  return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# The mixture.


class MixtureOfDenoisers:
  """UL2's mixture as a grain transform: `__call__` per example, `batch` per batch (vectorised).

  Outputs, int32, fixed shapes (per example; `batch` adds a leading B):
    encdec:  inputs [Li] (mode, corrupted tokens, EOS, pad), targets [Lt] (EOS, pad),
             targets_mask [Lt] (1 on every target token, EOS included), denoiser [].
    decoder: tokens [Li+Lt] = inputs ++ targets, then pad; loss_mask [Li+Lt], where
             loss_mask[t] = 1 means token t is a target, predicted from tokens[<t] (so the model
             reads tokens[:-1] and is scored on tokens[1:] with loss_mask[1:]; loss_mask[0] = 0);
             prefix_len [] (= len(inputs): attention is bidirectional over tokens[:prefix_len]);
             denoiser [].
  `denoiser` is the index into `denoisers`. Raw tokens must not contain pad, sentinel or mode ids.
  """

  def __init__(self, denoisers: Sequence[Denoiser], rates: Sequence[float] | None, token_ids: TokenIds | Any,
               inputs_length: int, targets_length: int, raw_length: int, architecture: Architecture = "encdec"):
    """`rates` are normalised (None: uniform); `token_ids` is a TokenIds or a tokenizer."""
    self.token_ids = token_ids if isinstance(token_ids, TokenIds) else TokenIds.from_tokenizer(token_ids)
    self.denoisers = tuple(denoisers)
    if not self.denoisers:
      raise ValueError("MixtureOfDenoisers needs at least one denoiser.")
    rates = np.full(len(self.denoisers), 1.0) if rates is None else np.asarray(rates, np.float64)
    if rates.shape != (len(self.denoisers),) or not np.all(np.isfinite(rates)) or (rates < 0).any() \
        or rates.sum() <= 0:
      raise ValueError(f"rates must be {len(self.denoisers)} non-negative numbers, not all 0; got {rates.tolist()}.")
    self.rates = rates / rates.sum()
    if architecture not in ("encdec", "decoder"):
      raise ValueError(f"architecture={architecture!r}; use 'encdec' or 'decoder'.")
    self.architecture = architecture
    self.inputs_length, self.targets_length, self.raw_length = inputs_length, targets_length, raw_length
    self._mode_ids = [None if d.mode is None else self.token_ids.mode_id(d.mode) for d in self.denoisers]
    # One input slot is kept for a mode token whenever the mixture uses any, so that a mode
    # override changes that token and nothing else in the example.
    self.mode_slots = int(any(m is not None for m in self._mode_ids))
    self.plans = plan_lengths(self.denoisers, raw_length=raw_length, inputs_length=inputs_length,
                              targets_length=targets_length, architecture=architecture, mode_slots=self.mode_slots)
    for p in self.plans:
      if p.num_spans > self.token_ids.num_sentinels:
        raise ValueError(f"Denoiser {p.denoiser.name} writes {p.num_spans} sentinels at raw length {p.raw_used} "
                         f"but the tokenizer has {self.token_ids.num_sentinels}; add sentinels or shorten "
                         "inputs_length/targets_length/raw_length.")

  def length_report(self) -> str:
    return format_length_report(self.plans, self.raw_length)

  def output_spec(self) -> dict[str, tuple[tuple[int, ...], type]]:
    """Per-example output shapes and dtypes."""
    li, lt = self.inputs_length, self.targets_length
    if self.architecture == "encdec":
      spec = {"inputs": (li,), "targets": (lt,), "targets_mask": (lt,), "denoiser": ()}
    else:
      spec = {"tokens": (li + lt,), "loss_mask": (li + lt,), "prefix_len": (), "denoiser": ()}
    return {k: (v, np.int32) for k, v in spec.items()}

  def __call__(self, tokens: np.ndarray, rng: np.random.Generator, *, denoiser: int | str | None = None,
               mode_override: str | None = None) -> dict[str, np.ndarray]:
    """One example by T5's per-example algorithm. `denoiser` forces one (index or name);
    `mode_override` swaps its mode token (or drops it, with NO_MODE) and changes nothing else."""
    tokens = self._check_tokens(tokens, ndim=1)
    d = self._resolve(denoiser) if denoiser is not None else int(rng.choice(len(self.denoisers), p=self.rates))
    mode = self._mode(d, mode_override)
    plan, den, t = self.plans[d], self.denoisers[d], self.token_ids
    x = tokens[:plan.raw_used]
    if den.kind == "span":
      mask = random_spans_noise_mask(plan.raw_used, den.rate, den.mean_span, rng)
      body_in = noise_span_to_unique_sentinel(x, mask, t.first_sentinel)
      body_tgt = nonnoise_span_to_unique_sentinel(x, mask, t.first_sentinel)
    elif den.kind == "prefix":
      split = int(rng.integers(1, plan.raw_used))  # T5 random_prefix_noise_mask: U{1, ..., n-1}.
      body_in, body_tgt = x[:split], x[split:]
    else:
      body_in, body_tgt = x[:0], x
    head = [] if mode is None else [mode]
    inputs = np.concatenate([np.asarray(head, np.int32), body_in, [t.eos_id]]).astype(np.int32)[None]
    targets = np.concatenate([body_tgt, [t.eos_id]]).astype(np.int32)[None]
    out = self._empty(1)
    self._write(out, np.zeros(1, np.int64), inputs, np.array([inputs.shape[1]]), targets,
                np.array([targets.shape[1]]))
    out["denoiser"][0] = d
    return {k: v[0] for k, v in out.items()}

  def batch(self, tokens: np.ndarray, rng: np.random.Generator, *, denoiser: int | str | None = None,
            mode_override: str | None = None) -> dict[str, np.ndarray]:
    """`tokens` [B, raw_length] → the same outputs with a leading B, vectorised per denoiser group."""
    tokens = self._check_tokens(tokens, ndim=2)
    size = tokens.shape[0]
    if denoiser is not None:
      choice = np.full(size, self._resolve(denoiser), np.int32)
    else:
      choice = rng.choice(len(self.denoisers), size=size, p=self.rates).astype(np.int32)
    out = self._empty(size)
    for d in range(len(self.denoisers)):
      rows = np.flatnonzero(choice == d)
      if rows.size:
        self._write(out, rows, *self._group(d, tokens[rows], rng, self._mode(d, mode_override)))
    out["denoiser"][:] = choice
    return out

  def split(self, batch: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """An encdec batch → its examples cut to their true lengths, for packing (`packing`): inputs,
    targets, targets_mask and targets_denoiser, which repeats the example's denoiser at each target
    position, so that a packed row still says which denoiser each target token came from."""
    self._check_packable()
    n_in = (np.asarray(batch["inputs"]) != self.token_ids.pad_id).sum(1)
    n_tgt = np.asarray(batch["targets_mask"]).sum(1)
    return [{"inputs": batch["inputs"][i, :a], "targets": batch["targets"][i, :b],
             "targets_mask": batch["targets_mask"][i, :b],
             "targets_denoiser": np.full(b, batch["denoiser"][i], np.int32)}
            for i, (a, b) in enumerate(zip(n_in.tolist(), n_tgt.tolist()))]

  def packing(self, max_segments: int, multi_rows: int = 0):
    """How `data.pipeline.make_iterator` packs this mixture's examples several to a row, as T5X's UL2
    pretraining does: rows stay inputs_length / targets_length, an example's inputs and targets
    share a segment id. encdec only (see `split`). `multi_rows`: the model's `packed_rows`."""
    from paperjax.data.pipeline import Packing  # pylint: disable=g-import-not-at-top
    self._check_packable()
    return Packing({"inputs": self.inputs_length, "targets": self.targets_length}, self.split, max_segments,
                   along={"targets_mask": "targets", "targets_denoiser": "targets"}, multi_rows=multi_rows)

  def _check_packable(self):
    if self.architecture != "encdec":
      raise ValueError("Packing UL2 needs architecture='encdec' (model.kind='encdec'): a decoder-layout row "
                       "has one prefix_len, so its examples cannot share a row; set data.pack=False.")

  def _group(self, d, tokens, rng, mode):
    """[b, raw] rows of one denoiser → (inputs [b, wi], in_len [b], targets [b, wt], tgt_len [b])."""
    plan, den, t = self.plans[d], self.denoisers[d], self.token_ids
    b, n = tokens.shape[0], plan.raw_used
    x = tokens[:, :n]
    head = np.full((b, 0 if mode is None else 1), mode if mode is not None else 0, np.int32)
    eos = np.full((b, 1), t.eos_id, np.int32)
    if den.kind == "span":  # Every row has the same counts, hence the same shapes.
      mask = _noise_mask_rows(b, n, den.rate, den.mean_span, rng)
      inputs = np.concatenate([head, noise_span_to_unique_sentinel(x, mask, t.first_sentinel), eos], axis=1)
      targets = np.concatenate([nonnoise_span_to_unique_sentinel(x, mask, t.first_sentinel), eos], axis=1)
      return inputs, np.full(b, inputs.shape[1]), targets, np.full(b, targets.shape[1])
    if den.kind == "prefix":
      split = rng.integers(1, n, size=b)[:, None]
      pos = np.arange(n)
      prefix = np.where(pos < split, x, np.where(pos == split, t.eos_id, t.pad_id))
      suffix = np.take_along_axis(x, np.minimum(split + pos, n - 1), axis=1)
      suffix = np.where(pos < n - split, suffix, np.where(pos == n - split, t.eos_id, t.pad_id))
      return (np.concatenate([head, prefix], axis=1).astype(np.int32), head.shape[1] + split[:, 0] + 1,
              suffix.astype(np.int32), n - split[:, 0] + 1)
    inputs = np.concatenate([head, eos], axis=1)
    targets = np.concatenate([x, eos], axis=1)
    return inputs, np.full(b, inputs.shape[1]), targets, np.full(b, n + 1)

  def _empty(self, size):
    pad, li, lt = self.token_ids.pad_id, self.inputs_length, self.targets_length
    if self.architecture == "encdec":
      return {"inputs": np.full((size, li), pad, np.int32), "targets": np.full((size, lt), pad, np.int32),
              "targets_mask": np.zeros((size, lt), np.int32), "denoiser": np.zeros(size, np.int32)}
    return {"tokens": np.full((size, li + lt), pad, np.int32), "loss_mask": np.zeros((size, li + lt), np.int32),
            "prefix_len": np.zeros(size, np.int32), "denoiser": np.zeros(size, np.int32)}

  def _write(self, out, rows, inputs, in_len, targets, tgt_len):
    """Writes rows built by `_group` (padded with pad_id past in_len / tgt_len) into `out`."""
    wi, wt = inputs.shape[1], targets.shape[1]
    if self.architecture == "encdec":
      out["inputs"][rows, :wi] = inputs
      out["targets"][rows, :wt] = targets
      out["targets_mask"][rows] = np.arange(self.targets_length) < tgt_len[:, None]
      return
    pos = np.arange(self.inputs_length + self.targets_length)
    in_len, tgt_len = in_len[:, None], tgt_len[:, None]
    tpos = pos - in_len
    is_target = (tpos >= 0) & (tpos < tgt_len)
    from_targets = np.take_along_axis(targets, np.clip(tpos, 0, wt - 1), axis=1)
    out["tokens"][rows] = np.where(pos < in_len, inputs[:, np.minimum(pos, wi - 1)],
                                   np.where(is_target, from_targets, self.token_ids.pad_id))
    out["loss_mask"][rows] = is_target
    out["prefix_len"][rows] = in_len[:, 0]

  def _check_tokens(self, tokens, ndim):
    tokens = np.asarray(tokens)
    if tokens.ndim != ndim or tokens.shape[-1] != self.raw_length or not np.issubdtype(tokens.dtype, np.integer):
      want = "[raw_length]" if ndim == 1 else "[batch, raw_length]"
      raise ValueError(f"Expected integer tokens of shape {want} with raw_length={self.raw_length}, got "
                       f"{tokens.dtype}{list(tokens.shape)}; chunk the token stream to raw_length upstream.")
    return tokens.astype(np.int32, copy=False)

  def _resolve(self, denoiser):
    names = [d.name for d in self.denoisers]
    if isinstance(denoiser, str):
      if denoiser not in names:
        raise ValueError(f"No denoiser named {denoiser!r}; this mixture has {names}.")
      return names.index(denoiser)
    if not 0 <= int(denoiser) < len(names):
      raise ValueError(f"Denoiser index {denoiser} is out of range for {len(names)} denoisers.")
    return int(denoiser)

  def _mode(self, d, mode_override):
    if mode_override is None:
      return self._mode_ids[d]
    if mode_override == NO_MODE:
      return None
    if not self.mode_slots:
      raise ValueError("This mixture has no mode tokens, so its inputs keep no slot for one; give one of "
                       "its denoisers a mode to allow mode_override.")
    return self.token_ids.mode_id(mode_override)


# ---------------------------------------------------------------------------------------------
# Inverse (for tests and debugging).


def _strip(seq, token_ids: TokenIds) -> np.ndarray:
  seq = np.asarray(seq)
  kept = np.flatnonzero(seq != token_ids.pad_id)
  seq = seq[:kept[-1] + 1] if kept.size else seq[:0]
  if not seq.size or seq[-1] != token_ids.eos_id:
    raise ValueError("Expected a sequence ending in EOS (then only padding).")
  return seq[:-1]


def merge_inputs_and_targets(inputs, targets, token_ids: TokenIds) -> np.ndarray:
  """The raw tokens an example was built from: each sentinel in `inputs` replaced by its target
  span (span corruption), or prefix ++ suffix (prefix/causal LM). Mode token and EOS are removed."""
  inputs, targets = _strip(inputs, token_ids), _strip(targets, token_ids)
  if inputs.size and inputs[0] in dict(token_ids.mode_ids).values():
    inputs = inputs[1:]
  in_sentinels = np.flatnonzero(token_ids.is_sentinel(inputs))
  tgt_sentinels = np.flatnonzero(token_ids.is_sentinel(targets))
  if not in_sentinels.size:
    if tgt_sentinels.size:
      raise ValueError("Targets hold sentinels that the inputs do not.")
    return np.concatenate([inputs, targets])
  if not tgt_sentinels.size or tgt_sentinels[0] != 0:
    raise ValueError("Span-corruption targets must begin with a sentinel.")
  spans = {int(g[0]): g[1:] for g in np.split(targets, tgt_sentinels[1:])}
  if sorted(spans) != sorted(inputs[in_sentinels].tolist()) or len(spans) != in_sentinels.size:
    raise ValueError("Inputs and targets name different sentinels.")
  pieces, start = [], 0
  for pos in in_sentinels:
    pieces += [inputs[start:pos], spans[int(inputs[pos])]]
    start = pos + 1
  return np.concatenate(pieces + [inputs[start:]])
