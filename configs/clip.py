"""CLIP (Radford et al., 2021): contrastive image-text pre-training, zero-shot by prompts.

Reports (evals/retrieval.py): zeroshot_shape / zeroshot_colour / zeroshot_pair on the held-out pairs
(`_unmasked`: seen pairs, `_all`: both), retrieval/{i2t,t2i}_R@{1,5} over the distinct full captions.

Presets (`--config=configs/clip.py:<preset>`):

  tiny   (default) 16x16 `synthetic:shapes` (shape × colour × size × position, four shape × colour
         pairs never shown in training), CNN image tower (32-64-128, GroupNorm) + 2-layer word-level
         text transformer (d=64), joint space 64, batch 128, AdamW 2e-3, offline on 2 CPU cores:
           python -m paperjax.main --config=configs/clip.py
         Expect (~4 min for 500 steps on 2 busy shared cores): logit scale 14.3 → ~17; caption
         retrieval R@1 ≈ 0.8 of 128; zero-shot colour ≈ 0.99 on the held-out shape × colour pairs but
         zero-shot *shape* on them ≈ 0.06 (≈ 1.0 on seen pairs): shape binds to the colours seen with
         it. Recorded 3-seed numbers: paperjax/papers/clip/result.json.
  base   ViT-B/16 image tower + 12-layer d=512 text transformer, joint space 512, batch 32,768 with
         the loss all-gathered over the data axes, on an image-text tfds dataset with an `image` and
         a `caption` feature (e.g. a prepared `tfds:coco_captions`-style builder; nothing is
         downloaded here), one v4-256 pod slice / 64 H100s:
           python -m paperjax.main --config=configs/clip.py:base --workdir=gs://…/clip-base
         Expect: the paper's ViT-B/16 regime needs its 400M-pair dataset (unverified here).
"""

from paperjax import config_lib

PRESETS = ("tiny", "base")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("clip")
  c.preset = preset
  c.data.update(source="synthetic:shapes", batch_size=128)
  c.model.update(kind="cnn", channels=(32, 64, 128), dense_dim=0)
  c.text_model = dict(d_model=64, num_layers=2, num_heads=4, d_ff=128, pool="eos")
  # caption_field / image_size are used for real image-text data only ("captions/text": tfds coco_captions).
  c.clip = dict(embed_dim=64, text_length=12, tokenizer="word", sharded_loss=False, caption_field="captions/text",
                image_size=16)
  c.optimizer.update(lr=2e-3, warmup_steps=50, weight_decay=0.1, b2=0.98)
  c.train.update(steps=500, log_every=50)
  c.eval.update(max_examples=1024)

  if preset == "base":
    c.data.update(source="tfds:coco_captions", batch_size=32768)
    c.model.update(kind="vit", patch=16, d_model=768, num_layers=12, num_heads=12, d_ff=3072, dtype="bfloat16")
    c.text_model.update(d_model=512, num_layers=12, num_heads=8, d_ff=2048)
    c.clip.update(embed_dim=512, text_length=96, tokenizer="byte", sharded_loss=True, image_size=224)
    c.optimizer.update(lr=5e-4, warmup_steps=2000, weight_decay=0.2, b2=0.98, eps=1e-6)
    c.train.update(steps=100_000, log_every=100, eval_every=5000, ckpt_every=2000, ckpt_every_s=1800.0)
    c.eval.update(max_examples=10_000)

  return config_lib.apply_common_args(c, kv, f"configs/clip.py:{arg}", "")
