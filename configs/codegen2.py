"""CodeGen2 (Nijkamp et al., 2023): one causal decoder trained on a per-sequence mixture of causal LM and
span corruption with the spans moved to the end (`<mask_k>` … `<eos> <sep> <mask_k> span <eom>`), so it
infills without losing much left-to-right ability; natural language mixed into code.

Toy: byte tokens (+ `<sep>`, `<eom>`, 8 mask tokens), 96-byte chunks of the stdlib's code
(`builtin:stdlib_code`, PL) and of Python's English docs (`builtin:pydoc`, NL), each capped at 2M
characters; a 2-layer d=96 decoder, 128-token sequences, batch 16, 400 steps. Evaluation: held-out
left-to-right loss on code (`loss/code`) and text (`loss/text`); single-line infilling on held-out
stdlib lines (3–24 characters, up to 64 characters of context on each side): exact match with the
infill prompt (`infill_em`) and from the left context only (`left_em`).

Presets (`--config=configs/codegen2.py:<preset>[,seed=0]`):

  tiny     (default) the CodeGen2 recipe: p_sc = 0.5 span corruption (T5 rate 0.15, mean span 3), causal
           decoder, NL:PL = 1:1:
             python -m paperjax.main --config=configs/codegen2.py
           Expect (~2 min on 2 CPU cores): loss/code ≈ 1.98 nats/byte (clm ≈ 1.91), loss/text ≈ 1.87
           (pl_only ≈ 2.33); no exact line infills yet at this size (infill_em = left_em = 0) and the
           infill prompt does not yet beat the left context on the line's loss (2.19 vs 1.80) — see
           paperjax/papers/codegen2/result.json (3 seeds, not reproduced).
  clm      causal LM only (p_sc = 0), NL:PL = 1:1 — the left-to-right baseline
  pl_only  the recipe on code only (NL:PL = 0:1) — the data-mix baseline
  prefix   the recipe with a prefix-LM (bidirectional over the context before <sep>, scored after it)
  large    a 1B-class decoder (24 layers, d=2048, 16 heads, 2,048-token sequences, bf16, FSDP) on
           `tfds:` code and text corpora you have prepared (set codegen2.pl_source / nl_source, e.g. a
           The Stack Python dump and `tfds:c4/en`), one v4-64 slice or 32 H100s:
             python -m paperjax.main --config=configs/codegen2.py:large --workdir=gs://…/codegen2
           (The paper's 1B–16B HumanEval results are unverified in this codebase.)
"""

from paperjax import config_lib
from paperjax.models import task

PRESETS = ("tiny", "clm", "pl_only", "prefix", "large")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.base("codegen2")
  c.preset = preset
  c.data.update(kind="text", source="builtin:stdlib_code", tokenizer="byte", specials=("<sep>", "<eom>"),
                num_sentinels=8, raw_length=96, batch_size=16, max_chars=2_000_000)
  c.model = task.decoder_config(d_model=96, num_heads=4, head_dim=24, d_ff=192, num_layers=2)
  c.codegen2 = dict(p_sc=0.0 if preset == "clm" else 0.5, rate=0.15, mean_span=3.0, length=128,
                    nl_fraction=0.0 if preset == "pl_only" else 0.5, pl_source="builtin:stdlib_code",
                    nl_source="builtin:pydoc", context_chars=64, infill_examples=100,
                    eval_batch_size=32)
  if preset == "prefix":
    c.model.kind = "prefix_lm"
  c.optimizer.update(lr=3e-3, warmup_steps=40)
  c.train.update(steps=400, log_every=50, eval_every=0, eval_batches=4, ckpt_every=0)

  if preset == "large":
    c.data.update(tokenizer="sentencepiece", vocab_size=51_200, raw_length=1800, batch_size=512,
                  source="tfds:the_stack_python")
    c.data.max_chars = 0
    c.codegen2.update(length=2048, pl_source="tfds:the_stack_python", nl_source="tfds:c4/en",
                      context_chars=1024, eval_batch_size=64)
    c.model = task.decoder_config(d_model=2048, num_heads=16, head_dim=128, d_ff=8192, num_layers=24,
                                  dtype="bfloat16", scan_layers=True, remat="full")
    c.mesh.shape = (1, -1, 1)
    c.optimizer.update(lr=3e-4, warmup_steps=2000, weight_decay=0.1)
    c.train.update(steps=250_000, log_every=100, eval_every=5000, ckpt_every=2000)

  return config_lib.apply_common_args(c, kv, f"configs/codegen2.py:{arg}", "")
