"""Shared config defaults and preset parsing for `configs/<slug>.py`.

A paper config is `get_config(arg)`: `arg` picks a preset (`tiny` by default) and may carry
`key=value` overrides, big_vision style: `--config=configs/ul2.py:tiny,steps=200`. Configs are locked
by the flag parser, so a typo in `--config.optimizer.lrr=...` fails instead of being ignored.
"""

from __future__ import annotations

import ml_collections


def base(method: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = method
  c.seed = 0
  c.preset = "tiny"

  c.data = ml_collections.ConfigDict(dict(
      kind="text", source="builtin:pydoc+stdlib_code", train_split="train", eval_split="validation",
      tokenizer="byte", vocab_size=0, num_sentinels=100, specials=("[NLU]", "[NLG]", "[S2S]"),
      raw_length=128, max_chars=0, batch_size=32, num_threads=2))

  c.optimizer = ml_collections.ConfigDict(dict(
      name="adamw", lr=3e-3, warmup_steps=50, schedule="cosine", end_lr_frac=0.1,
      b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.01, clip_norm=1.0, momentum=0.0, nesterov=False, param_copy="",
      group_leaves=False))

  c.train = ml_collections.ConfigDict(dict(
      steps=300, stop_at=0, log_every=25, eval_every=0, eval_batches=4, ckpt_every=100, ckpt_every_s=0.0,
      ckpt_keep=3, between_every=0, profile_steps=(), peak_flops=0.0, progress=True))

  # Mesh: named axes and sizes; one -1 fills the remaining devices.
  c.mesh = ml_collections.ConfigDict(dict(axes=("data", "fsdp", "tensor"), shape=(-1, 1, 1)))
  # Logical → mesh axis rules (None: replicated). See paperjax/sharding.py for the names.
  c.axis_rules = (
      ("batch", ("data", "fsdp")), ("length", None), ("act_embed", None), ("act_mlp", "tensor"),
      ("act_heads", "tensor"), ("act_vocab", "tensor"), ("embed", "fsdp"), ("mlp", "tensor"),
      ("heads", "tensor"), ("kv", None), ("vocab", "tensor"), ("layers", None))
  c.stages = ()
  return c


def vision(method: str) -> ml_collections.ConfigDict:
  """`base` for image papers: records data (digits by default), a small CNN, Adam, and the
  evaluation knobs the vision evaluators read (`eval.batch_size`, `eval.max_examples`, 0 = all)."""
  c = base(method)
  c.data = ml_collections.ConfigDict(dict(
      kind="records", source="builtin:digits", train_split="train", eval_split="validation",
      batch_size=64, num_threads=2))
  c.model = ml_collections.ConfigDict(dict(
      kind="cnn", channels=(32, 64), convs_per_stage=1, width=1.0, dense_dim=128, norm="group", dtype="float32"))
  c.optimizer.update(name="adamw", lr=1e-3, warmup_steps=20, schedule="cosine", end_lr_frac=0.0,
                     b2=0.999, weight_decay=1e-4, clip_norm=0.0)
  c.train.update(steps=500, log_every=50, eval_every=0, ckpt_every=0)
  c.eval = ml_collections.ConfigDict(dict(batch_size=256, max_examples=0))
  return c


def parse_arg(arg: str | None, presets: tuple[str, ...], default: str = "tiny") -> tuple[str, dict]:
  """'base,steps=100' → ('base', {'steps': '100'}). Unknown presets fail with the list of known ones."""
  parts = [p for p in (arg or "").split(",") if p]
  preset = default
  kv = {}
  for p in parts:
    if "=" in p:
      k, v = p.split("=", 1)
      kv[k.strip()] = v.strip()
    else:
      preset = p.strip()
  if preset not in presets:
    raise ValueError(f"Unknown preset {preset!r}; this config has {', '.join(presets)} "
                     f"(choose one with --config=configs/<slug>.py:<preset>).")
  return preset, kv


def apply_common_args(c: ml_collections.ConfigDict, kv: dict, where: str, others: str = "") -> ml_collections.ConfigDict:
  """The `steps=` and `seed=` preset args; any other leftover key is an error naming what is allowed
  (`others`, e.g. "mode=, labels=, ") and where (`where`, e.g. "configs/uda.py:tiny,foo=1")."""
  for k, v in kv.items():
    if k == "steps":
      c.train.steps = int(v)
    elif k == "seed":
      c.seed = int(v)
    else:
      raise ValueError(f"Unknown config arg {k!r} in '{where}'; use {others}steps= or seed= "
                       "(everything else via --config.<key>=<value>).")
  return c

