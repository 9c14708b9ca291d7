"""CodeGen2: Lessons for Training LLMs on Programming and Natural Languages (Nijkamp, Hayashi, Xiong,
Savarese, Zhou, ICLR 2023). https://arxiv.org/abs/2305.02309

Rule (the paper's training recipe, lesson 2). One decoder, next-token loss, and a per-sequence mixture:
with probability 1 − p_sc the sequence is plain causal LM; otherwise within-file span corruption with
the corrupted spans *moved to the end*, so a left-to-right model learns to infill:
    prefix <mask_1> middle <mask_2> suffix <eos> <sep> <mask_1> span_1 <eom> <mask_2> span_2 <eom>
Infill sampling (HF model card): prompt `prefix <mask_1> suffix <eos> <sep> <mask_1>`, generate until
<eom>. Lesson 1: a prefix-LM (bidirectional attention over the context before <sep>) is optional
(`model.kind="prefix_lm"`; then only the part after <sep> is scored). Lesson 4: natural language mixed
with code (`codegen2.nl_fraction`).

Defaults and their source. p_sc = 0.5 (paper: "with probability 0.5"); the span corruption is T5's
(`random_spans_noise_mask`, rate 0.15, mean span 3), reused from the UL2 paper's `denoisers.py`
(hedge: CodeGen2 samples the corruption rate and span lengths per sequence; its exact distributions
were not verified here). Loss on every position of the sequence (causal), as a plain next-token LM.

Deviations. Byte tokens with `<sep>`, `<eom>` as specials and the tokenizer's sentinel block as
`<mask_1..K>` (the paper: a BPE vocabulary with those strings as added tokens); a leading <eos> acts as
BOS so the first byte is scored; toy scale (2-layer d=128 decoder, 96-byte chunks of the stdlib code
and the pydoc text, `builtin:`), where the paper trains 1B–16B models on The Stack / BigPython. The
NL+PL mixture is a fixed interleaving of the two chunk sources (`nl_fraction` of the items).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import losses
from paperjax.data import pipeline, sources
from paperjax.evals.lm import LossEvaluator
from paperjax.method import Method, PaperInfo
from paperjax.models import decode, lm
from paperjax.papers.ul2 import denoisers as dn

PAPER = PaperInfo(slug="codegen2", title="CodeGen2: Lessons for Training LLMs on Programming and Natural Languages",
                  authors="Nijkamp, Hayashi, Xiong, Savarese, Zhou", year=2023, url="https://arxiv.org/abs/2305.02309",
                  family="lm-objective")
SPECIALS = ("<sep>", "<eom>")


@dataclasses.dataclass(frozen=True)
class Ids:
  eos: int
  sep: int
  eom: int
  first_mask: int
  num_masks: int

  @classmethod
  def from_tokenizer(cls, tok) -> "Ids":
    return cls(int(tok.eos_id), int(tok.special_id("<sep>")), int(tok.special_id("<eom>")), int(tok.sentinel_id(0)),
               int(tok.num_sentinels))


# --------------------------------------------------------------------------- the transform


def spans_of(mask: np.ndarray) -> list[tuple[int, int]]:
  """[(start, end)) of every run of True in `mask`."""
  m = np.concatenate([[False], np.asarray(mask, bool), [False]])
  d = np.flatnonzero(np.diff(m.astype(np.int8)))
  return list(zip(d[::2].tolist(), d[1::2].tolist()))


def infill_sequence(tokens: np.ndarray, mask: np.ndarray, ids: Ids) -> tuple[np.ndarray, int]:
  """(sequence, position of <sep>): context with span k replaced by <mask_k>, <eos> <sep>, then
  <mask_k> span_k <eom> for every span in order."""
  tokens = np.asarray(tokens, np.int32)
  spans = spans_of(mask)
  if len(spans) > ids.num_masks:
    raise ValueError(f"{len(spans)} corrupted spans need more than the {ids.num_masks} mask tokens; raise "
                     "data.num_sentinels.")
  ctx, tail, last = [], [], 0
  for k, (s, e) in enumerate(spans):
    ctx += [tokens[last:s], [ids.first_mask + k]]
    tail += [[ids.first_mask + k], tokens[s:e], [ids.eom]]
    last = e
  ctx.append(tokens[last:])
  context = np.concatenate([np.asarray(c, np.int32) for c in ctx])
  seq = np.concatenate([context, [ids.eos, ids.sep]] + [np.asarray(t, np.int32) for t in tail]).astype(np.int32)
  return seq, len(context) + 1


def restore(sequence: np.ndarray, ids: Ids) -> np.ndarray:
  """The original tokens from an `infill_sequence` (its inverse): each <mask_k> in the context is
  replaced by the tokens between <mask_k> and <eom> after <sep>."""
  seq = np.asarray(sequence)
  sep = int(np.flatnonzero(seq == ids.sep)[0])
  context, tail = seq[:sep - 1], seq[sep + 1:]
  fills, k = {}, 0
  while k < len(tail):
    j = k + 1 + int(np.flatnonzero(tail[k + 1:] == ids.eom)[0])
    fills[int(tail[k])] = tail[k + 1:j]
    k = j + 1
  out = [fills[int(t)] if ids.first_mask <= t < ids.first_mask + ids.num_masks else [t] for t in context]
  return np.concatenate([np.asarray(o, seq.dtype) for o in out]) if out else seq[:0]


@dataclasses.dataclass(frozen=True)
class CodeGen2Transform:
  """Per-sequence objective: causal LM with probability 1 − p_sc, else span corruption moved to the end.
  Output {tokens [L], loss_mask [L], prefix_len, objective (0 causal, 1 infill)}; a leading <eos> is BOS."""
  ids: Ids
  length: int
  p_sc: float = 0.5
  rate: float = 0.15
  mean_span: float = 3.0
  prefix_lm: bool = False

  def __call__(self, chunk: np.ndarray, rng: np.random.Generator) -> dict:
    chunk = np.asarray(chunk, np.int32)
    sc = rng.random() < self.p_sc
    if sc:
      mask = dn.random_spans_noise_mask(len(chunk), self.rate, self.mean_span, rng)
      body, sep = infill_sequence(chunk, mask, self.ids)
      seq = np.concatenate([[self.ids.eos], body]).astype(np.int32)
      sep += 1
    else:
      seq = np.concatenate([[self.ids.eos], chunk, [self.ids.eos]]).astype(np.int32)
      sep = 0
    if len(seq) > self.length:
      raise ValueError(f"A CodeGen2 sequence needs {len(seq)} tokens but codegen2.length is {self.length}; raise it "
                       "or lower data.raw_length.")
    tokens = np.zeros(self.length, np.int32)
    tokens[:len(seq)] = seq
    loss_mask = np.zeros(self.length, np.int32)
    # Causal: every token after BOS is predicted. Prefix-LM: the bidirectional context is not scored.
    start = sep + 1 if (self.prefix_lm and sc) else 1
    loss_mask[start:len(seq)] = 1
    return {"tokens": tokens, "loss_mask": loss_mask, "prefix_len": np.int32(sep + 1 if (self.prefix_lm and sc) else 1),
            "objective": np.int32(sc)}


# --------------------------------------------------------------------------- data


class Interleave:
  """Items of two chunk sources, a fraction `f` from `a` (NL) and the rest from `b` (PL), interleaved
  deterministically: item i is from `a` when ⌊(i+1)f⌋ > ⌊if⌋."""

  def __init__(self, a, b, f: float):
    self.a, self.b, self.f = a, b, float(f)
    self.n = len(b) if f == 0 else int(min(len(a) / f, len(b) / (1 - f))) if f < 1 else len(a)

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    i = int(i)
    na = int(np.floor(i * self.f))
    if int(np.floor((i + 1) * self.f)) > na:
      return self.a[na % len(self.a)]
    return self.b[(i - na) % len(self.b)]


def chunks(config, tok, spec: str, split: str):
  docs = sources.text_documents(spec, split)
  stream = pipeline.token_stream(docs, tok, max_chars=int(config.data.get("max_chars", 0)) or None)
  return pipeline.TokenChunks(stream, int(config.data.raw_length))


def infill_examples(config, tok, n: int, seed: int = 0) -> list[dict]:
  """Single-line infilling on held-out stdlib code: a line of 3–24 non-blank characters with up to
  `codegen2.context_chars` characters of whole lines before it and after it."""
  docs = sources.text_documents(config.codegen2.pl_source, "validation")
  rng = np.random.default_rng([int(seed), 3939])
  c = int(config.codegen2.context_chars)
  out, tries = [], 0
  while len(out) < n and tries < 50 * n:
    tries += 1
    lines = docs[int(rng.integers(len(docs)))].split("\n")
    if len(lines) < 5:
      continue
    j = int(rng.integers(2, len(lines) - 2))
    line = lines[j]
    if not 3 <= len(line.strip()) <= 24 or not line.isascii():
      continue
    prefix = "\n".join(lines[:j]) + "\n"
    suffix = "\n" + "\n".join(lines[j + 1:])
    prefix = prefix[-c:]
    prefix = prefix[prefix.find("\n") + 1:] if len(prefix) == c and "\n" in prefix else prefix
    suffix = suffix[:c]
    suffix = suffix[:suffix.rfind("\n")] if len(suffix) == c and "\n" in suffix[1:] else suffix
    if not prefix.isascii() or not suffix.isascii():
      continue
    out.append({"prefix": prefix, "suffix": suffix, "line": line})
  return out


@dataclasses.dataclass
class InfillExactMatch:
  """Exact match of the held-out line: `infill_em` with the infill prompt
  `<eos> prefix <mask_1> suffix <eos> <sep> <mask_1>` (generate until <eom>), and `left_em` from the
  left context only (`<eos> prefix`, generate until a newline) — what a causal-only model can do.
  Also the teacher-forced loss of the line (nats per token, its terminator included) in both formats,
  `infill_line_loss` (line + <eom> after the infill prompt) and `left_line_loss` (line + newline after
  the prefix): a graded measure of how much the suffix helps when exact matches are rare."""
  examples: list
  model: object
  tok: object
  ids: Ids
  length: int
  max_new: int = 30

  def _line_loss(self, params, prompts, answers) -> float:
    from paperjax.models import lm as lm_lib  # pylint: disable=g-import-not-at-top
    L = self.length
    tokens, mask = np.zeros((len(prompts), L), np.int32), np.zeros((len(prompts), L), np.int32)
    for i, (p, a) in enumerate(zip(prompts, answers)):
      p = p[-(L - len(a)):]
      tokens[i, :len(p) + len(a)] = np.concatenate([p, a])
      mask[i, len(p):len(p) + len(a)] = 1
    s, w = lm_lib.loss_sums(self.model, params, {"tokens": tokens, "loss_mask": mask,
                                                 "prefix_len": np.ones(len(prompts), np.int32)})
    return float(s) / max(float(w), 1.0)

  def _decode(self, params, prompts, stop: int) -> list[np.ndarray]:
    B, L = len(prompts), self.length
    buf = np.zeros((B, L), np.int32)
    plen = np.zeros(B, np.int32)
    for i, p in enumerate(prompts):
      p = p[-(L - self.max_new):]
      buf[i, :len(p)], plen[i] = p, len(p)
    gen = np.asarray(decode.greedy_decoder(self.model, params, buf, plen, length=self.max_new, eos_id=stop))
    outs = []
    for i in range(B):
      ids = gen[i, plen[i]:plen[i] + self.max_new]
      cut = np.flatnonzero(ids == stop)
      outs.append(ids[:cut[0]] if len(cut) else ids)
    return outs

  def __call__(self, params, ctx) -> dict[str, float]:
    del ctx
    enc = lambda s: np.asarray(self.tok.encode(s), np.int32)
    m1, nl = self.ids.first_mask, int(enc("\n")[0])
    infill = [np.concatenate([[self.ids.eos], enc(e["prefix"]), [m1], enc(e["suffix"]), [self.ids.eos, self.ids.sep, m1]])
              for e in self.examples]
    left = [np.concatenate([[self.ids.eos], enc(e["prefix"])]) for e in self.examples]
    gold = [e["line"] for e in self.examples]
    a = [self.tok.decode(g) for g in self._decode(params, infill, self.ids.eom)]
    b = [self.tok.decode(g) for g in self._decode(params, left, nl)]
    return {"infill_em": float(np.mean([x == y for x, y in zip(a, gold)])),
            "left_em": float(np.mean([x == y for x, y in zip(b, gold)])),
            "infill_line_loss": self._line_loss(params, infill, [np.append(enc(g), self.ids.eom) for g in gold]),
            "left_line_loss": self._line_loss(params, left, [np.append(enc(g), nl) for g in gold])}


# --------------------------------------------------------------------------- the method


def make(config, ctx) -> Method:
  tok = ctx.tokenizer
  g = config.codegen2
  ids = Ids.from_tokenizer(tok)
  L = int(g.length)
  prefix_lm = config.model.kind == "prefix_lm"
  transform = CodeGen2Transform(ids, L, float(g.p_sc), float(g.rate), float(g.mean_span), prefix_lm)
  model, mcfg = lm.build(config, tok.vocab_size)

  def loss(params, batch, rng):
    logits = model.apply({"params": params}, batch, deterministic=True)
    targets, mask = lm.targets_and_mask(batch, model.cfg.kind)
    _, _, per_tok = losses.token_cross_entropy(logits, targets, mask)
    per_ex, w_ex = per_tok.sum(-1), mask.astype(jnp.float32).sum(-1)
    sc = batch["objective"].astype(jnp.float32)
    metrics = {"sum/loss/causal": (per_ex * (1 - sc)).sum(), "count/loss/causal": (w_ex * (1 - sc)).sum(),
               "sum/loss/infill": (per_ex * sc).sum(), "count/loss/infill": (w_ex * sc).sum()}
    return per_ex.sum() / jnp.maximum(w_ex.sum(), 1.0), metrics

  evaluators = []
  if not ctx.abstract:
    sums_fn = jax.jit(lambda params, batch: lm.loss_sums(model, params, batch))
    clm = CodeGen2Transform(ids, L, p_sc=0.0, prefix_lm=prefix_lm)
    for name, spec in (("loss/code", g.pl_source), ("loss/text", g.nl_source)):
      batches = pipeline.fixed_batches(chunks(config, tok, spec, "validation"), batch_size=int(g.eval_batch_size),
                                       num_batches=int(config.train.eval_batches), seed=1234, example_fn=clm)
      evaluators.append(LossEvaluator(name, batches, sums_fn))
    evaluators.append(InfillExactMatch(infill_examples(config, tok, int(g.infill_examples)), model, tok, ids, L))

  def make_iterator(ctx_):
    pl = chunks(config, tok, g.pl_source, "train")
    nl = chunks(config, tok, g.nl_source, "train") if float(g.nl_fraction) > 0 else pl
    return pipeline.make_iterator(Interleave(nl, pl, float(g.nl_fraction)), global_batch_size=int(config.data.batch_size),
                                  seed=int(config.seed), process_index=ctx_.process_index, process_count=ctx_.process_count,
                                  example_fn=transform, num_threads=int(config.data.get("num_threads", 2)))

  return Method(init=lambda rng, ex: lm.init(model, rng, ex), loss=loss, evaluators=evaluators,
                make_iterator=make_iterator, model=model, tokens_per_example=L,
                flops_per_example=lm.flops_per_example(mcfg, {"tokens": L})["full"],
                summary_keys=("infill_em", "left_em", "loss/code", "loss/text"))
