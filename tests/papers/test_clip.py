"""CLIP: the logit scale's init and clip, the loss at init, zero-shot ensembling, the claim's judge."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs import clip as clip_config
from paperjax.data import shapes
from paperjax.evals import retrieval
from paperjax.papers.clip import claim, method
from tests.conftest import shrink


@functools.lru_cache(maxsize=None)
def _model_and_params():
  c = clip_config.get_config()
  model, tokenize = method.build(c)
  src = shapes.Shapes("train")
  recs = [src[i] for i in range(8)]
  images = jnp.asarray(np.stack([r["image"] for r in recs]))
  tokens = jnp.asarray(tokenize([shapes.caption(r, template=0) for r in recs]))
  params = nn.meta.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), images, tokens))["params"]
  return model, params, images, tokens, tokenize


def test_logit_scale_initialised_at_1_over_0_07_and_clipped_at_100():
  model, params, images, tokens, _ = _model_and_params()
  np.testing.assert_allclose(float(method.logit_scale(params["logit_scale"])), 1 / 0.07, rtol=1e-5)
  np.testing.assert_allclose(float(method.logit_scale(jnp.asarray(10.0))), 100.0, rtol=1e-6)
  assert float(jax.grad(method.logit_scale)(jnp.asarray(10.0))) == 0.0      # held at the clip
  assert float(jax.grad(method.logit_scale)(jnp.asarray(2.0))) > 0.0


def test_loss_at_init_is_near_log_batch_and_symmetric():
  model, params, images, tokens, _ = _model_and_params()
  c = shrink(clip_config.get_config())
  m = method.make(c, type("Ctx", (), {"mesh": None})())
  loss, aux = m.loss(params, {"image": images, "text": tokens}, None)
  # Random towers: the logits carry little signal, so the loss is log(B) up to O(1).
  assert abs(float(loss) - np.log(8)) < 1.0
  img, txt, raw = model.apply({"params": params}, images, tokens)
  from paperjax import losses_contrastive as lc
  np.testing.assert_allclose(lc.clip_loss(img, txt, 14.0), lc.clip_loss(txt, img, 14.0), rtol=1e-6)


def test_zero_shot_class_embedding_is_the_renormalised_prompt_average():
  emb = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "c": np.array([3.0, 4.0])}
  words = sorted(emb)
  tokenize = lambda texts: np.array([[words.index(t)] for t in texts])
  text_fn = lambda p, tok: np.stack([emb[words[int(i)]] for i in np.asarray(tok)[:, 0]])
  cls = retrieval.class_embeddings(None, [["a", "b"], ["c"]], text_fn, tokenize, batch_size=4)
  want0 = np.array([0.5, 0.5]) / np.linalg.norm([0.5, 0.5])    # mean of (1,0) and (0,1), renormalised
  np.testing.assert_allclose(cls[0], want0, atol=1e-12)
  np.testing.assert_allclose(cls[1], [0.6, 0.8], atol=1e-12)


def test_retrieval_recall_by_hand():
  # 3 images, 2 distinct captions; image i's caption id = ids[i].
  img = {0: [1.0, 0.0], 1: [0.0, 1.0], 2: [1.0, 0.1]}
  txt = {0: [1.0, 0.0], 1: [0.0, 1.0]}
  image_fn = lambda p, x: np.stack([img[int(i)] for i in np.asarray(x)])
  text_fn = lambda p, x: np.stack([txt[int(i)] for i in np.asarray(x)])
  r = retrieval.Retrieval("r", np.arange(3), np.arange(2), image_fn, text_fn, caption_ids=np.array([0, 1, 1]),
                          ks=(1,), batch_size=4)(None, None)
  assert r["r/i2t_R@1"] == 2 / 3                 # image 2 (caption 1) is closer to caption 0
  assert r["r/t2i_R@1"] == 1.0                   # caption 0 → image 0, caption 1 → image 1


def test_word_captions_fit_the_text_length_and_round_trip():
  _, tokenize = method.build(clip_config.get_config())
  tok = method.tokenizer("word")
  for cap in shapes.all_captions():
    ids = tokenize([cap])[0]
    assert (ids > 0).sum() <= 12 and 2 not in ids       # no <unk>
    assert tok.decode(ids[ids > 1]).replace(" .", ".") == cap


def test_judge():
  row = dict(zeroshot_shape=0.8, zeroshot_shape_unmasked=1.0, zeroshot_colour=0.9, zeroshot_colour_unmasked=1.0,
             zeroshot_pair=0.5, zeroshot_pair_unmasked=0.9, **{"retrieval/i2t_R@1": 0.5, "retrieval/t2i_R@1": 0.6},
             logit_scale=30.0, num_captions=128.0)
  assert claim.judge([row] * 3)["passed"]
  bad = dict(row, zeroshot_shape=0.05)
  out = claim.judge([bad] * 3)
  assert not out["passed"] and "compositional" in out["analysis"]
  assert not claim.judge([dict(row, logit_scale=14.0)] * 3)["passed"]
