"""Two-tower evaluators: zero-shot classification from text prompts, image↔text retrieval recall@k.

  ZeroShot   class embedding = normalise(mean over the class's prompts of normalise(text(prompt)))
             (CLIP's prompt ensembling, averaged in embedding space); prediction = argmax cosine
  Retrieval  recall@k of image→text and text→image (repeated captions given once, see Retrieval)

`image_fn(params, images) -> [B, D]` and `text_fn(params, tokens) -> [B, D]` are jitted embedders;
`tokenize(list[str]) -> int32 [n, L]` turns prompts into the text tower's input.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

from paperjax.evals.classification import batched_apply


def _normalize(x):
  x = np.asarray(x, np.float64)
  return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-12)


def class_embeddings(params, class_prompts: Sequence[Sequence[str]], text_fn, tokenize, batch_size: int, ctx=None):
  """[K, D]: per class, the renormalised mean of its prompts' normalised text embeddings."""
  flat = [p for ps in class_prompts for p in ps]
  emb = _normalize(batched_apply(text_fn, params, tokenize(flat), batch_size, ctx))
  out, i = [], 0
  for ps in class_prompts:
    out.append(emb[i:i + len(ps)].mean(0))
    i += len(ps)
  return _normalize(np.stack(out))


def zero_shot_predict(params, images, class_prompts, image_fn, text_fn, tokenize, batch_size: int = 256, ctx=None):
  """(predicted class per image, similarity matrix [N, K])."""
  cls = class_embeddings(params, class_prompts, text_fn, tokenize, batch_size, ctx)
  img = _normalize(batched_apply(image_fn, params, images, batch_size, ctx))
  sim = img @ cls.T
  return sim.argmax(-1), sim


@dataclasses.dataclass
class ZeroShot:
  """Accuracy of zero-shot classification of `data[label_field]`; `mask_field` restricts it
  (e.g. to held-out combinations): `<name>` on the masked examples, `<name>_unmasked` on the others,
  `<name>_all` on every example."""
  name: str
  data: dict
  class_prompts: Sequence[Sequence[str]]
  image_fn: Callable
  text_fn: Callable
  tokenize: Callable
  label_field: str = "label"
  mask_field: str | None = None
  batch_size: int = 256

  def __call__(self, params, ctx) -> dict[str, float]:
    pred, _ = zero_shot_predict(params, self.data["image"], self.class_prompts, self.image_fn, self.text_fn,
                                self.tokenize, self.batch_size, ctx)
    correct = pred == self.data[self.label_field]
    if self.mask_field is None:
      return {self.name: float(correct.mean())}
    m = self.data[self.mask_field].astype(bool)
    nan = float("nan")
    return {self.name: float(correct[m].mean()) if m.any() else nan,
            f"{self.name}_unmasked": float(correct[~m].mean()) if (~m).any() else nan,
            f"{self.name}_all": float(correct.mean())}


@dataclasses.dataclass
class Retrieval:
  """Image→text and text→image recall@k. `tokens[m]` are M candidate captions and image i's caption
  is `caption_ids[i]` (default: M = N, caption i belongs to image i). Repeated captions are given
  once, so identical texts never tie with their own copy: i→t R@k asks whether image i's caption is
  among its k most similar of the M; t→i R@k whether one of caption m's k most similar images has
  caption m (averaged over the captions that occur)."""
  name: str
  images: np.ndarray
  tokens: np.ndarray
  image_fn: Callable
  text_fn: Callable
  caption_ids: np.ndarray | None = None
  ks: Sequence[int] = (1, 5)
  batch_size: int = 256

  def __call__(self, params, ctx) -> dict[str, float]:
    img = _normalize(batched_apply(self.image_fn, params, self.images, self.batch_size, ctx))
    txt = _normalize(batched_apply(self.text_fn, params, self.tokens, self.batch_size, ctx))
    ids = np.arange(len(img)) if self.caption_ids is None else np.asarray(self.caption_ids)
    sim = img @ txt.T                                          # N × M
    true = sim[np.arange(len(img)), ids][:, None]
    i2t_rank = (sim > true).sum(1)
    out = {f"{self.name}/i2t_R@{k}": float(np.mean(i2t_rank < k)) for k in self.ks}
    out[f"{self.name}/num_captions"] = float(len(txt))   # i→t chance of R@1 is 1/num_captions
    present = np.unique(ids)
    order = np.argsort(-sim[:, present], axis=0)                # images by similarity, per caption
    for k in self.ks:
      hits = (ids[order[:k]] == present[None, :]).any(0)
      out[f"{self.name}/t2i_R@{k}"] = float(hits.mean())
    return out
