"""CLIP: Learning Transferable Visual Models From Natural Language Supervision (Radford et al., ICML 2021).
https://arxiv.org/abs/2103.00020

Rule. An image tower f and a text tower g, each followed by a linear projection to a joint space and
L2-normalised: I = f(x)W_i/‖·‖, T = g(t)W_t/‖·‖. With a learnable log-temperature τ',
    logits = exp(τ') · I Tᵀ,   L = ½[CE(logits, arange) + CE(logitsᵀ, arange)]   (paper Fig. 3)
τ' is initialised to log(1/0.07) (openai/CLIP `model.py`: `logit_scale = log(1/0.07)`) and the scale
is clipped at 100 (paper §2.5: "clipped to prevent scaling the logits by more than 100"); here the
clip is `exp(min(τ', log 100))`, which stops τ' where the paper's clamp would hold it.
Zero-shot: class embedding = mean of its prompts' normalised text embeddings (prompt ensembling,
§3.1.4), prediction = argmax cosine (evals/retrieval.py).

Defaults (paper): AdamW, cosine schedule, weight decay on weights only (not gains/biases/τ'),
batch 32,768; EOT-token pooling of the text transformer. Toy defaults are in configs/clip.py.

Deviations. Word-level tokens of the toy's closed caption language, or bytes for real captions
(the paper: a 49K BPE), a bidirectional text encoder pooled at the
eos token (the paper: causal masking, EOT pooling), a GroupNorm CNN image tower (the paper:
ResNets with attention pooling or ViTs). `clip.sharded_loss=True` computes the loss with the
keys all-gathered across the data axes (losses_contrastive.sharded), the paper's large-batch
layout; under plain GSPMD (False) the single-device formula on the global batch is used, which is
the same number.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from paperjax import losses_contrastive as lc
from paperjax.data import augment, shapes, sources, tokenizers
from paperjax.evals import classification, retrieval
from paperjax.method import Method, PaperInfo
from paperjax.models import text as text_lib
from paperjax.models import vision
from paperjax.models.cnn import dense

PAPER = PaperInfo(slug="clip", title="Learning Transferable Visual Models From Natural Language Supervision",
                  authors="Radford et al.", year=2021, url="https://arxiv.org/abs/2103.00020",
                  family="self-supervised/contrastive")

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100.0)


class CLIPModel(nn.Module):
  image_cfg: dict
  text_cfg: dict
  vocab_size: int
  embed_dim: int = 64

  def setup(self):
    self.image_tower = vision.image_encoder(self.image_cfg)
    self.text_tower = text_lib.TextEncoder(vocab_size=self.vocab_size, **self.text_cfg)
    self.image_proj = dense(self.embed_dim, "image_proj", use_bias=False)
    self.text_proj = dense(self.embed_dim, "text_proj", use_bias=False)
    self.logit_scale = self.param("logit_scale", nn.with_logical_partitioning(
        nn.initializers.constant(INIT_LOGIT_SCALE), ()), ())

  def encode_image(self, images_BHWC):
    return self.image_proj(self.image_tower(images_BHWC))

  def encode_text(self, tokens_BL):
    return self.text_proj(self.text_tower(tokens_BL))

  def __call__(self, images_BHWC, tokens_BL):
    return self.encode_image(images_BHWC), self.encode_text(tokens_BL), self.logit_scale


def logit_scale(raw):
  """exp(τ') with the paper's clip at 100 (no gradient beyond it)."""
  return jnp.exp(jnp.minimum(raw, MAX_LOGIT_SCALE))


def tokenizer(kind: str):
  """"word": the closed word vocabulary of synthetic:shapes captions; "byte": any text (real data)."""
  if kind == "word":
    return tokenizers.WordTokenizer(shapes.vocabulary())
  if kind == "byte":
    return tokenizers.make_tokenizer("byte", specials=(), num_sentinels=0)
  raise ValueError(f"clip.tokenizer={kind!r} is unknown; use 'word' (synthetic:shapes) or 'byte'.")


def make_tokenize(tok, length: int):
  """list[str] → int32 [n, length]: bytes + eos, zero-padded; too long a caption is an error
  (or, with truncate=True for real captions, cut to length − 1 bytes + eos)."""
  def tokenize(texts, truncate: bool = False):
    out = np.zeros((len(texts), length), np.int32)
    for i, t in enumerate(texts):
      ids = np.append(tok.encode(t), tok.eos_id)
      if len(ids) > length:
        if not truncate:
          raise ValueError(f"Caption {t!r} has {len(ids)} tokens, more than clip.text_length={length}; raise it.")
        ids = np.append(ids[:length - 1], tok.eos_id)
      out[i, :len(ids)] = ids
    return out
  return tokenize


def _field(example, dotted: str):
  for part in dotted.split("/"):
    example = example[part]
  return example


def example_fn_for(tokenize, caption_field: str, image_size: int):
  """Per example: a caption (synthetic:shapes: from a random template; image-text datasets: one of
  the example's captions at random), tokenised, and the image as float [S, S, C]."""
  def fn(example, rng):
    if "shape" in example:
      return {"image": np.asarray(example["image"], np.float32),
              "text": tokenize([shapes.caption(example, rng)])[0]}
    caps = np.atleast_1d(_field(example, caption_field))
    cap = caps[int(rng.integers(len(caps)))]
    cap = cap.decode("utf-8", "replace") if isinstance(cap, bytes) else str(cap)
    return {"image": augment.center_crop_resize(example["image"], image_size), "text": tokenize([cap], truncate=True)[0]}
  return fn


def build(config):
  tok = tokenizer(config.clip.tokenizer)
  model = CLIPModel(image_cfg=dict(config.model), text_cfg=dict(config.text_model), vocab_size=tok.vocab_size,
                    embed_dim=int(config.clip.embed_dim))
  return model, make_tokenize(tok, int(config.clip.text_length))


def make(config, ctx) -> Method:
  if not config.data.source.startswith(("synthetic:shapes", "tfds:")):
    raise ValueError(f"CLIP needs image-caption data; data.source={config.data.source!r} has no captions. "
                     "Use synthetic:shapes, or a tfds image-text dataset with clip.caption_field set.")
  model, tokenize = build(config)
  mesh_loss = lc.sharded(lc.clip_loss, ctx.mesh) if config.clip.sharded_loss and ctx.mesh is not None else lc.clip_loss

  def loss(params, batch, rng):
    del rng
    img, txt, raw = model.apply({"params": params}, batch["image"], batch["text"])
    scale = logit_scale(raw)
    value = mesh_loss(img, txt, scale)
    return value, {"logit_scale": scale}

  image_fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=CLIPModel.encode_image))
  text_fn = jax.jit(lambda p, t: model.apply({"params": p}, t, method=CLIPModel.encode_text))
  evaluators = []
  if config.data.source.startswith("synthetic:shapes"):
    evaluators = shapes_evaluators(config, image_fn, text_fn, tokenize)
  return Method(
      init=lambda rng, ex: model.init(rng, jnp.asarray(ex["image"]), jnp.asarray(ex["text"]))["params"],
      loss=loss,
      example_fn=example_fn_for(tokenize, config.clip.caption_field, int(config.clip.image_size)), evaluators=evaluators, model=model,
      summary_keys=("zeroshot_shape", "zeroshot_colour", "zeroshot_pair", "retrieval/i2t_R@1"))


def shapes_evaluators(config, image_fn, text_fn, tokenize):
  """Zero-shot shape / colour / shape×colour on the held-out pairs, and retrieval over captions."""
  val = sources.records(config.data.source, config.data.get("eval_split", "validation"))
  data = classification.load_arrays(val, ("image", "shape", "colour", "held_out"), int(config.eval.max_examples))
  data["pair"] = data["shape"] * len(shapes.COLOURS) + data["colour"]
  bs = int(config.eval.batch_size)
  kw = dict(image_fn=image_fn, text_fn=text_fn, tokenize=tokenize, mask_field="held_out", batch_size=bs)
  evs = [retrieval.ZeroShot("zeroshot_shape", data, shapes.prompts("shape"), label_field="shape", **kw),
         retrieval.ZeroShot("zeroshot_colour", data, shapes.prompts("colour"), label_field="colour", **kw),
         retrieval.ZeroShot("zeroshot_pair", data, shapes.prompts("pair"), label_field="pair", **kw)]
  # Retrieval: each image against every distinct full caption (template 0 names all four attributes).
  recs = [val[i] for i in range(len(data["image"]))]
  caps = [shapes.caption(r, template=0) for r in recs]
  uniq = sorted(set(caps))
  ids = np.array([uniq.index(c) for c in caps])
  evs.append(retrieval.Retrieval("retrieval", data["image"], tokenize(uniq), image_fn, text_fn, caption_ids=ids,
                                 batch_size=bs))
  return evs
