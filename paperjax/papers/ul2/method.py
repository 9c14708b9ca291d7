"""UL2: Unifying Language Learning Paradigms (Tay et al., ICLR 2023). https://arxiv.org/abs/2205.05131

Rule. Mixture-of-Denoisers: each training example draws a denoiser d ~ Categorical(rates) and is
rewritten as (inputs, targets) = d(tokens) with d's mode token prepended; the model minimises
teacher-forced cross-entropy on the targets:
  R [NLU]  T5 span corruption (μ=3, r=0.15), (8, 0.15)
  X [NLG]  (3, 0.5), (8, 0.5), (64, 0.15), (64, 0.5)
  S [S2S]  prefix LM: random split point, predict the suffix
  rates    R 40%, X 40%, S 20%, split evenly inside each group.
At evaluation the mode token is chosen per task ("mode switching"); we report every denoiser's
held-out loss with its own mode token and with a mismatched one.

The denoisers themselves (T5's `random_spans_noise_mask` semantics, lengths, what was verified) are
in `denoisers.py`; this file only wires them to the shared model, loss and evaluators. Works for the
encoder-decoder (`model.kind="encdec"`) and the decoder-only prefix-LM (`model.kind="prefix_lm"`).

Baselines of the paper's comparison are the same method with `ul2.objective`:
  span    T5 span corruption (μ=3, r=0.15) only, no mode tokens
  causal  causal language modelling only (for encdec: empty encoder input, the decoder reads it all)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from paperjax import losses
from paperjax.data import pipeline
from paperjax.evals.lm import LossEvaluator
from paperjax.method import Method, PaperInfo
from paperjax.models import lm
from paperjax.papers.ul2 import denoisers as dn

PAPER = PaperInfo(slug="ul2", title="UL2: Unifying Language Learning Paradigms", authors="Tay et al.",
                  year=2023, url="https://arxiv.org/abs/2205.05131", family="lm-objective")

OBJECTIVES = {
    "ul2": (dn.UL2_DENOISERS, dn.UL2_RATES),
    "span": (dn.T5_SPAN_CORRUPTION, (1.0,)),
    "causal": (dn.CAUSAL_LM, (1.0,)),
}
# A mismatched mode token for each mode (for the mode-switching ablation).
MISMATCH = {"[NLU]": "[S2S]", "[NLG]": "[NLU]", "[S2S]": "[NLU]"}


def architecture(model_kind: str) -> str:
  if model_kind == "encdec":
    return "encdec"
  if model_kind == "prefix_lm":
    return "decoder"
  raise ValueError(f"UL2 needs model.kind 'encdec' or 'prefix_lm' (bidirectional inputs), not {model_kind!r}.")


def objective(config):
  name = config.ul2.objective
  if name not in OBJECTIVES:
    raise ValueError(f"ul2.objective={name!r} is unknown; use one of {sorted(OBJECTIVES)}.")
  return OBJECTIVES[name]


def mixture(config, tok, denoisers, rates) -> dn.MixtureOfDenoisers:
  return dn.MixtureOfDenoisers(
      denoisers, rates, token_ids=tok, inputs_length=int(config.ul2.inputs_length),
      targets_length=int(config.ul2.targets_length), raw_length=int(config.data.raw_length),
      architecture=architecture(config.model.kind))


def prefix_in_context(example: dict, arch: str, eos_id: int) -> dict:
  """An S-task example rewritten for a causal LM: the prefix moves from the inputs to the decoder
  context (scored on the suffix only). This is how a causal-LM specialist is evaluated on "suffix
  given prefix" fairly: in the format it was trained on, on the very same tokens and split."""
  ex = {k: np.array(v) for k, v in example.items()}
  if arch == "encdec":
    inp = ex["inputs"][ex["inputs"] != 0]
    prefix = inp[:-1]
    prefix = prefix[~np.isin(prefix, list(MODE_IDS_CACHE))] if MODE_IDS_CACHE else prefix
    tgt = ex["targets"][ex["targets_mask"] > 0]
    seq = np.concatenate([prefix, tgt])
    L = ex["targets"].shape[0]
    if len(seq) > L:
      raise ValueError(f"ul2.targets_length={L} cannot hold prefix+suffix ({len(seq)}) for the causal-LM eval; "
                       "raise targets_length or lower data.raw_length.")
    targets = np.zeros(L, np.int32)
    targets[:len(seq)] = seq
    mask = np.zeros(L, np.int32)
    mask[len(prefix):len(seq)] = 1
    inputs = np.zeros_like(ex["inputs"])
    inputs[0] = eos_id
    return {"inputs": inputs, "targets": targets, "targets_mask": mask, "denoiser": ex["denoiser"]}
  # decoder: tokens = [mode] prefix EOS suffix EOS → [EOS] prefix suffix EOS, causal from the start.
  n = int(ex["prefix_len"])
  toks = ex["tokens"]
  prefix = toks[:n - 1]
  prefix = prefix[~np.isin(prefix, list(MODE_IDS_CACHE))] if MODE_IDS_CACHE else prefix
  rest = toks[n:][ex["loss_mask"][n:] > 0]
  seq = np.concatenate([[eos_id], prefix, rest]).astype(np.int32)
  tokens = np.zeros_like(toks)
  tokens[:len(seq)] = seq
  mask = np.zeros_like(toks)
  mask[1 + len(prefix):len(seq)] = 1
  return {"tokens": tokens, "loss_mask": mask, "prefix_len": np.int32(1), "denoiser": ex["denoiser"]}


MODE_IDS_CACHE: set[int] = set()


def eval_tasks(config, tok) -> dict[str, tuple[dn.MixtureOfDenoisers, callable | None]]:
  """Held-out tasks: every training denoiser with its own and a mismatched mode token, plus the
  paper-comparison tasks `infill` (R-task) and `suffix` (S-task) in each objective's own format."""
  denoisers, _ = objective(config)
  obj = config.ul2.objective
  arch = architecture(config.model.kind)
  tasks = {}
  for d in denoisers:
    tasks[f"loss/{d.name}"] = (mixture(config, tok, [d], [1.0]), None)
    if d.mode is not None:
      bad = dn.Denoiser(d.kind, d.mean_span, d.rate, MISMATCH[d.mode], name=d.name)
      tasks[f"loss_mismatch/{d.name}"] = (mixture(config, tok, [bad], [1.0]), None)
  r_mode = "[NLU]" if obj == "ul2" else None
  s_mode = "[S2S]" if obj == "ul2" else None
  tasks["infill"] = (mixture(config, tok, [dn.Denoiser("span", 3, 0.15, r_mode, name="infill")], [1.0]), None)
  s_task = mixture(config, tok, [dn.Denoiser("prefix", mode=s_mode, name="suffix")], [1.0])
  if obj == "causal":
    tasks["suffix"] = (s_task, lambda ex: prefix_in_context(ex, arch, tok.eos_id))
  else:
    tasks["suffix"] = (s_task, None)
  if obj == "ul2":
    tasks["suffix_as_NLU"] = (mixture(config, tok, [dn.Denoiser("prefix", mode="[NLU]", name="suffix")], [1.0]), None)
  return tasks


def make(config, ctx) -> Method:
  tok = ctx.tokenizer
  MODE_IDS_CACHE.update(tok.special_id(m) for m in ("[NLU]", "[NLG]", "[S2S]"))
  denoisers, rates = objective(config)
  mix = mixture(config, tok, denoisers, rates)
  model, mcfg = lm.build(config, tok.vocab_size)
  chunk, z_loss = int(config.model.get("loss_chunk", 0)), float(config.model.get("z_loss", 0.0))
  loss_impl = config.model.get("loss_impl", "fused")
  names = [d.name for d in denoisers]

  def loss(params, batch, rng):
    packing = lm.packing_metrics(batch)  # data.pack: examples per row
    if chunk:  # memory-lean path for large vocabularies: no per-denoiser breakdown
      s, w = lm.loss_sums(model, params, batch, rng=rng, chunk=chunk, z_loss=z_loss, impl=loss_impl)
      return s / jnp.maximum(w, 1.0), {"target_tokens": w, **packing}
    per_tok, mask = _per_token(model, params, batch, rng, z_loss)
    s, w = per_tok.sum(), mask.sum()
    metrics = {"target_tokens": w, **packing}
    if len(names) > 1:  # train loss per denoiser: token-weighted, aggregated exactly over the log window
      # Packed rows hold several examples: their denoiser comes per target position.
      which = batch["targets_denoiser"] if "targets_denoiser" in batch else batch["denoiser"][:, None]
      onehot = jax.nn.one_hot(which, len(names), dtype=jnp.float32)       # B L n (or B 1 n)
      for i, name in enumerate(names):
        metrics[f"sum/loss/{name}"] = (per_tok * onehot[..., i]).sum()
        metrics[f"count/loss/{name}"] = (mask * onehot[..., i]).sum()
    return s / jnp.maximum(w, 1.0), metrics

  # Held-out evaluation batches, built once and identical in every run.
  source = None if ctx.abstract else pipeline_source(config, ctx)
  sums_fn = jax.jit(lambda params, batch: lm.loss_sums(model, params, batch))
  evaluators = []
  if source is not None:
    for name, (task, post) in eval_tasks(config, tok).items():
      fn = task if post is None else (lambda ex, rng, task=task, post=post: post(task(ex, rng)))
      batches = pipeline.fixed_batches(
          source, batch_size=int(config.ul2.eval_batch_size), num_batches=int(config.train.eval_batches),
          seed=int(config.get("eval_seed", 1234)), example_fn=fn,
          process_index=ctx.process_index, process_count=ctx.process_count)
      evaluators.append(LossEvaluator(name, batches, sums_fn))

  arch = architecture(config.model.kind)
  li, lt = int(config.ul2.inputs_length), int(config.ul2.targets_length)
  lengths = {"inputs": li, "targets": lt} if arch == "encdec" else {"tokens": li + lt}
  flops = lm.flops_per_example(mcfg, lengths)
  return Method(
      init=lambda rng, example: lm.init(model, rng, example),
      loss=loss,
      # The vectorised Mixture-of-Denoisers (the same T5 algorithm as `mix(example, rng)`, tested
      # equal in distribution): 18 µs a row against 96 µs a row one example at a time, which on a
      # busy accelerator host is what keeps the pipeline off the step's critical path (notes/perf.md).
      batch_fn=mix.batch,
      # data.pack: several examples per row, as T5X's UL2 pretraining packs (data/pipeline.py Packing).
      pack=mix.packing(mcfg.max_segments, mcfg.packed_rows) if config.data.get("pack", False) else None,
      evaluators=evaluators,
      flops_per_example=flops["full"],
      tokens_per_example=li + lt,
      model=model,
      summary_keys=("infill", "suffix", "suffix_as_NLU"),
  )


def _per_token(model, params, batch, rng, z_loss):
  """(loss at each target position, 0 elsewhere; the target mask), both [B, L] fp32."""
  deterministic = model.cfg.dropout == 0.0
  logits = model.apply({"params": params}, batch, deterministic=deterministic,
                       rngs=None if deterministic else {"dropout": rng})
  targets, mask = lm.targets_and_mask(batch, model.cfg.kind)
  _, _, per_tok = losses.token_cross_entropy(logits, targets, mask, z_loss)
  return per_tok, mask.astype(jnp.float32)


def pipeline_source(config, ctx):
  from paperjax import data as data_lib
  split = config.data.get("eval_split", "validation")
  return data_lib.build_source(config.data, split, ctx.tokenizer, data_lib.cache_dir_for(ctx.workdir))
