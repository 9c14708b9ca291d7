"""Tokenizers: exact round trips, the shared id layout, and the SentencePiece cache."""

import os
import pickle

import numpy as np
import pytest
import sentencepiece as spm

from paperjax.data import sources, tokenizers

TEXTS = [
    "",
    "The quick brown fox.",
    "  def f(x):\n\treturn x ** 2  # trailing  \r\n\n",
    "naïve café — 世界, こんにちは, Привет 🎉🧪",
    "literal <extra_id_0> and [NLU] and <eos> stay text",
    "\x00\x7f\ufffd\U0010ffff",
]


def _corpus():
  docs = sources.text_documents("synthetic:text", "train")
  code = sources.text_documents("builtin:stdlib_code/json", "train")
  return [docs[i] for i in range(300)] + list(code)


@pytest.fixture(scope="module")
def sp_cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module", params=["byte", "sentencepiece"])
def tok(request, sp_cache):
  if request.param == "byte":
    return tokenizers.make_tokenizer("byte")
  return tokenizers.make_tokenizer("sentencepiece", vocab_size=512, corpus=_corpus(), cache_dir=sp_cache)


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact(tok, text):
  ids = tok.encode(text)
  assert ids.dtype == np.int32 and ids.ndim == 1
  assert tok.decode(ids) == text
  assert tok.decode(np.r_[0, ids, 0, 0]) == text  # pads are dropped


def test_layout(tok):
  assert tok.vocab_size % 128 == 0
  assert (tok.pad_id, tok.eos_id, tok.special_id("<unk>")) == (0, 1, 2)
  named = [tok.special_id(n) for n in ("[NLU]", "[NLG]", "[S2S]")]
  sentinels = [tok.sentinel_id(i) for i in range(tok.num_sentinels)]
  assert tok.num_sentinels == 100
  assert np.all(np.diff(sentinels) == 1) and sentinels[-1] < tok.vocab_size
  assert len(set(named + sentinels + [0, 1, 2])) == 3 + 3 + 100
  assert min(named + sentinels) > max(tok.encode("".join(TEXTS)))  # outside the text pieces


def test_encode_never_yields_specials_or_sentinels(tok):
  ids = tok.encode("".join(TEXTS) + " <extra_id_3> [S2S] " * 3)
  assert not tok.is_sentinel(ids).any()
  assert tok.special_id("[S2S]") not in ids and tok.eos_id not in ids  # and no eos appended


def test_is_sentinel_is_vectorised(tok):
  ids = np.array([[tok.sentinel_id(0), 5, tok.sentinel_id(99)], [tok.special_id("[NLU]"), 0, 1]])
  np.testing.assert_array_equal(tok.is_sentinel(ids), [[True, False, True], [False, False, False]])


def test_decode_renders_names(tok):
  ids = [tok.special_id("[NLG]"), *tok.encode("hi"), tok.sentinel_id(3), tok.eos_id, tok.pad_id]
  assert tok.decode(ids) == "[NLG]hi<extra_id_3><eos>"
  assert tok.decode(np.array(ids)[None]) == "[NLG]hi<extra_id_3><eos>"  # any shape flattens


def test_repr_identifies_the_tokenizer(tok):
  # pipeline.token_stream keys its cache on repr(tokenizer), so it must not hold an address.
  assert " at 0x" not in repr(tok) and "num_sentinels=100" in repr(tok)


def test_pickles_for_grain_workers(tok):
  clone = pickle.loads(pickle.dumps(tok))
  assert repr(clone) == repr(tok)
  np.testing.assert_array_equal(clone.encode(TEXTS[3]), tok.encode(TEXTS[3]))


def test_byte_ids_follow_byt5():
  tok = tokenizers.make_tokenizer("byte", specials=("[A]",), num_sentinels=2)
  np.testing.assert_array_equal(tok.encode("A\u00e9"), [ord("A") + 3, 0xC3 + 3, 0xA9 + 3])
  assert (tok.special_id("[A]"), tok.sentinel_id(0), tok.sentinel_id(1)) == (259, 260, 261)
  assert tok.vocab_size == 384
  assert tokenizers.make_tokenizer("byte", vocab_size=500).vocab_size == 512
  assert tok.decode([3 + 0xC3]) == "\ufffd"  # a cut multi-byte character is replaced, not raised


def test_sentencepiece_vocab_size_is_the_total(tok):
  if isinstance(tok, tokenizers.SentencePieceTokenizer):
    assert tok.vocab_size == 512
    assert len(tok.encode("The quick brown fox.")) < len("The quick brown fox.")  # real pieces


def test_sentencepiece_cache_hit_skips_training(sp_cache, monkeypatch):
  corpus = _corpus()
  first = tokenizers.make_tokenizer("sentencepiece", vocab_size=512, corpus=corpus, cache_dir=sp_cache)
  files = sorted(os.listdir(sp_cache))
  assert len(files) == 1 and files[0].endswith(".model")  # no temp file left behind

  def fail(**kwargs):
    raise AssertionError("retrained despite a cached model")

  monkeypatch.setattr(spm.SentencePieceTrainer, "train", fail)
  again = tokenizers.make_tokenizer("sentencepiece", vocab_size=512, corpus=corpus, cache_dir=sp_cache)
  assert repr(again) == repr(first)
  with pytest.raises(AssertionError, match="retrained"):  # other settings are another model
    tokenizers.make_tokenizer("sentencepiece", vocab_size=512, num_sentinels=50, corpus=corpus, cache_dir=sp_cache)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="wordpiece"), "'byte' or 'sentencepiece'"),
        (dict(kind="sentencepiece", vocab_size=512), "corpus="),
        (dict(kind="sentencepiece", vocab_size=256, corpus=["x"]), "vocab_size >= "),
        (dict(kind="sentencepiece", vocab_size=512, corpus=["", " \n"]), "empty"),
        (dict(kind="byte", vocab_size=300), "use >= 362"),
        (dict(kind="byte", specials=("[A]", "[A]")), "distinct"),
    ],
)
def test_make_tokenizer_errors(kwargs, match):
  kind = kwargs.pop("kind")
  with pytest.raises(ValueError, match=match):
    tokenizers.make_tokenizer(kind, **kwargs)


def test_lookup_errors():
  tok = tokenizers.make_tokenizer("byte")
  with pytest.raises(ValueError, match="Unknown special token '\\[XYZ\\]'.*\\[NLU\\]"):
    tok.special_id("[XYZ]")
  with pytest.raises(ValueError, match="out of range; this tokenizer has 100"):
    tok.sentinel_id(100)
  with pytest.raises(ValueError, match="outside"):
    tok.decode([tok.vocab_size])
