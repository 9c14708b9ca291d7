"""Density-Based Pruning (Abbas et al., 2024): SemDeDup, then per-cluster quotas from the complexity
d_inter·d_intra of spherical k-means clusters (softmax, the paper's QP), keeping the least prototypical
examples; CLIP is trained on what is kept.

Toy pool (7,000 `synthetic:shapes` images with captions, built offline): 4,000 varied records (every
seen shape × colour × size × position), 2,000 of 8 over-represented concepts, 1,000 planted near-copies
of varied records. Pixel PCA-32 embeddings, k = 40, keep 30% (2,100); the CLIP of `configs/clip.py`
(CNN image tower, 2-layer word-level text tower), 200 steps of 64 for every variant; zero-shot on the
shapes validation split.

Presets (`--config=configs/density_pruning.py:<preset>[,fraction=0.3,tau=0.5,keep=hard|easy|random,seed=0]`):

  tiny    (default) DBP: SemDeDup (ε = 0.001) → k-means → C = d_inter·d_intra → p = softmax(C/0.5) →
          QP quotas (cluster balance 0.5) → keep the hardest of each cluster:
            python -m paperjax.main --config=configs/density_pruning.py
          Expect (~1–2 min on 2 CPU cores): SemDeDup drops one image of each planted near-copy pair
          (~1,000), ~350 over-represented images kept (random keeps ~590); zero-shot shape × colour on
          seen pairs ≈ 0.70 (random ≈ 0.74, full ≈ 0.76: not reproduced, see
          paperjax/papers/density_pruning/result.json, 3 seeds).
  ssp     the same with equal quotas per cluster (SSP-style prototypes pruning, keep hard)
  random  a random 30% of the pool
  full    all 7,000 images, the same 200 steps
  large   the procedure at the paper's DataComp-medium scale of k = 100 clusters on a 20× toy pool
          (140,000 images, 32x32), a ViT image tower, batch 1,024, 5,000 steps; one GPU (A100/H100),
          ~30 min:
            python -m paperjax.main --config=configs/density_pruning.py:large --workdir=runs/dbp_large
          (The paper's LAION/DataComp runs need those datasets and a DINOv2 encoder; unverified here.)
"""

from paperjax import config_lib, selection
from configs import clip as clip_config

PRESETS = ("tiny", "ssp", "random", "full", "large")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = clip_config.get_config("tiny")
  c.method = "density_pruning"
  c.preset = preset
  kind = {"tiny": "dbp", "large": "dbp"}.get(preset, preset)
  c.selection = selection.config_block(kind=kind, fraction=float(kv.pop("fraction", 0.3)), round_steps=0, seed=0)
  c.density_pruning = dict(n_varied=4000, n_simple=2000, n_dups=1000, pool_seed=0, embed_dim=32, clusters=40,
                           temperature=float(kv.pop("tau", 0.5)), balance=0.5, num_neighbors=20, eps=0.001, which=kv.pop("keep", "hard"))
  c.data.batch_size = 64
  c.optimizer.update(warmup_steps=20)
  c.train.update(steps=200, log_every=50, eval_every=0, ckpt_every=0)
  c.eval.update(max_examples=1024)

  if preset == "large":
    c.density_pruning.update(n_varied=80_000, n_simple=40_000, n_dups=20_000, clusters=100)
    c.data.update(source="synthetic:shapes/32", batch_size=1024)
    c.clip.image_size = 32
    c.model.update(kind="vit", patch=4, d_model=256, num_layers=6, num_heads=8, d_ff=1024, dtype="bfloat16")
    c.optimizer.update(lr=1e-3, warmup_steps=500)
    c.train.update(steps=5000, log_every=100, ckpt_every=1000)

  return selection.apply_args(c, kv, f"configs/density_pruning.py:{arg}", "fraction=, tau=, keep=, ")
