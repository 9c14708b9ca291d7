"""Skill-it (Chen et al., 2023): online multiplicative-weights sampling over skills on LEGO.

Presets (`--config=configs/skill_it.py:<preset>[,sampling=skill_it|random|stratified]`):

  tiny   (default) a 2-layer byte-level decoder (d=64, 80-token rows) trained from scratch on LEGO
         chains with k=5 variables (skill i = resolving the variable at depth i), 600 steps of 16 rows;
         Skill-it re-weights the five skills every 60 steps from their held-out losses (η=0.5, window
         3) on the skills graph (default: LEGO's chain 0→1→2→3→4; the claim learns it first); 2 CPU cores:
           python -m paperjax.main --config=configs/skill_it.py
         Expect: ~1–2 min; train metrics mix/skill<i> (realised proportions) and between/weight/skill<i>;
         eval/em/skill<i> the accuracy of the queried value per skill (0.5 = chance), eval/em/mean their mean.
         sampling=random uses the natural proportions 1:1:1:3:5, sampling=stratified uniform.
  base   the paper's LEGO setting: GPT-Neo-125M-shaped decoder (12 layers, d=768, 12 heads) on byte
         tokens, 128-token rows, 6,000 steps of 32, update every 1,000 steps; one GPU (an A100/H100):
           python -m paperjax.main --config=configs/skill_it.py:base --workdir=/tmp/skill_it_base
         (The paper continues pretraining GPT-Neo; this trains from scratch. For its RedPajama setting,
         point mixture.sources at tfds corpora, one per skill, e.g. tfds:c4/en and tfds:wiki40b/en.)
"""

from paperjax import mixture_lm

PRESETS = ("tiny", "base")
K = 5


def get_config(arg: str | None = None):
  from paperjax import config_lib
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = mixture_lm.config("skill_it", sources={f"skill{i}": f"synthetic:lego/{i}" for i in range(K)},
                        weights={f"skill{i}": 1.0 for i in range(K)}, length=80)
  c.preset = preset
  c.skill_it = dict(sampling="skill_it", k=K, eta=0.5, window=3, graph=(), probe_batch=64)
  c.train.update(steps=600, log_every=60, between_every=60)
  c.eval.update(em_examples=100, batch_size=50)
  if preset == "base":
    c.model.update(d_model=768, num_heads=12, head_dim=64, d_ff=3072, num_layers=12, dtype="bfloat16")
    c.mixture.length = 128
    c.data.batch_size = 32
    c.train.update(steps=6000, log_every=100, between_every=1000, eval_every=1000, ckpt_every=1000)
    c.optimizer.update(lr=5e-4, warmup_steps=200)
    c.eval.em_examples = 500
  if "sampling" in kv:
    c.skill_it.sampling = kv.pop("sampling")
  return mixture_lm.apply_args(c, kv, f"configs/skill_it.py:{arg}", "sampling=, ")
