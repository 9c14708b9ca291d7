"""Tokenizers: ByT5-style bytes, and SentencePiece trained locally on the corpus and cached.

Both share one id layout, so span corruption and mode tokens work the same with either:

    0 <pad> | 1 <eos> | 2 <unk> | 3 .. base-1: model pieces | specials ("[NLU]", ...) |
    sentinels <extra_id_0> .. <extra_id_{n-1}> (contiguous) | unused padding up to a multiple of 128

The pieces are the 256 bytes (ids 3..258, as in ByT5) or the SentencePiece vocabulary. Specials
and sentinels sit *outside* the model's vocabulary, so `encode` of any text, even text containing
"<extra_id_0>" or "[NLU]" literally, never produces one: only code that asks for
`special_id`/`sentinel_id` can. The vocabulary is padded to a multiple of 128 so the embedding and
logits matmuls tile evenly on accelerators.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
import sentencepiece as spm

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
_RESERVED = ("<pad>", "<eos>", "<unk>")
_VOCAB_MULTIPLE = 128
_DEFAULT_SPECIALS = ("[NLU]", "[NLG]", "[S2S]")
# Enough text for a unigram model of a few thousand pieces to train in seconds.
_SP_MAX_CHARS = 2_000_000
_SP_MAX_CHARS_PER_DOC = _SP_MAX_CHARS // 50  # so a few long documents cannot fill the sample
_SP_MAX_LINE_BYTES = 4192  # SentencePiece's default max_sentence_length; longer lines are dropped


class Tokenizer(Protocol):
  vocab_size: int  # all ids, padded to a multiple of 128
  pad_id: int
  eos_id: int
  num_sentinels: int

  def encode(self, text: str) -> np.ndarray: ...
  def decode(self, ids) -> str: ...
  def special_id(self, name: str) -> int: ...
  def sentinel_id(self, i: int) -> int: ...
  def is_sentinel(self, ids: np.ndarray) -> np.ndarray: ...


class _Layout:
  """The shared id layout; subclasses give `_base` (3 + number of pieces) and `_decode_pieces`."""

  pad_id, eos_id, unk_id = PAD_ID, EOS_ID, UNK_ID

  def __init__(
      self, base: int, specials: Sequence[str], num_sentinels: int, vocab_size: int | None
  ):
    specials = tuple(specials)
    if len(set(specials)) != len(specials) or set(specials) & set(_RESERVED):
      raise ValueError(f"Specials {specials} repeat or reuse {_RESERVED}; give distinct new names.")
    if num_sentinels < 0:
      raise ValueError(f"num_sentinels={num_sentinels} is negative; use 0 or more.")
    self._base, self.specials, self.num_sentinels = base, specials, num_sentinels
    self.first_sentinel = base + len(specials)
    used = self.first_sentinel + num_sentinels
    if vocab_size is not None and vocab_size < used:
      raise ValueError(
          f"vocab_size={vocab_size} is below the {used} ids this tokenizer needs; use >= {used}."
      )
    self.vocab_size = -(-max(used, vocab_size or 0) // _VOCAB_MULTIPLE) * _VOCAB_MULTIPLE
    self._names = {i: n for i, n in enumerate(_RESERVED)}
    self._names |= {base + k: n for k, n in enumerate(specials)}
    self._names |= {self.first_sentinel + i: f"<extra_id_{i}>" for i in range(num_sentinels)}
    self._ids = {n: i for i, n in self._names.items()}

  def special_id(self, name: str) -> int:
    """Id of a special ("[NLU]", a construction-time name) or of "<pad>"/"<eos>"/"<unk>"."""
    if name not in self._ids or name.startswith("<extra_id_"):
      raise ValueError(
          f"Unknown special token {name!r}; known: {[*_RESERVED, *self.specials]} "
          "(pass new names as make_tokenizer(..., specials=...); sentinels via sentinel_id)."
      )
    return self._ids[name]

  def sentinel_id(self, i: int) -> int:
    if not 0 <= i < self.num_sentinels:
      raise ValueError(f"Sentinel {i} is out of range; this tokenizer has {self.num_sentinels}.")
    return self.first_sentinel + i

  def is_sentinel(self, ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(ids)
    return (ids >= self.first_sentinel) & (ids < self.first_sentinel + self.num_sentinels)

  def decode(self, ids) -> str:
    """Text of `ids`: pads are dropped, other non-piece ids are written as their names."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    if ids.size and not 0 <= ids.min() <= ids.max() < self.vocab_size:
      raise ValueError(
          f"Ids {ids.min()}..{ids.max()} fall outside [0, {self.vocab_size}); "
          "decode only ids made by this tokenizer."
      )
    ids = ids[ids != PAD_ID]
    is_piece = (ids >= 3) & (ids < self._base)
    # Decode maximal runs of pieces together: a character may span several byte ids.
    cuts = np.flatnonzero(np.diff(is_piece.astype(np.int8))) + 1
    out = []
    for run, piece in zip(np.split(ids, cuts), is_piece[np.r_[0, cuts]] if len(ids) else []):
      if piece:
        out.append(self._decode_pieces(run))
      else:
        out.extend(self._names.get(int(i), f"<unused_{int(i)}>") for i in run)
    return "".join(out)

  def _decode_pieces(self, ids: np.ndarray) -> str:
    raise NotImplementedError


class ByteTokenizer(_Layout):
  """UTF-8 bytes as ids 3..258 (the ByT5 layout): no training, no unknown text, exact round trip."""

  def __init__(self, specials: Sequence[str] = _DEFAULT_SPECIALS, num_sentinels: int = 100,
               vocab_size: int | None = None):
    super().__init__(3 + 256, specials, num_sentinels, vocab_size)

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + 3

  def _decode_pieces(self, ids: np.ndarray) -> str:
    return (ids - 3).astype(np.uint8).tobytes().decode("utf-8", errors="replace")

  def __repr__(self):  # Identifies the tokenizer in cache keys (pipeline.token_stream).
    return (f"ByteTokenizer(specials={self.specials}, num_sentinels={self.num_sentinels}, "
            f"vocab_size={self.vocab_size})")


class SentencePieceTokenizer(_Layout):
  """A SentencePiece model (pad 0, eos 1, unk 2, no bos, byte fallback) plus the shared layout.

  Text is not normalised (identity rule, whitespace kept, no dummy prefix) and unseen characters
  fall back to byte pieces, so `decode(encode(text)) == text` for any text, code included.
  """

  def __init__(self, model_proto: bytes, specials: Sequence[str] = _DEFAULT_SPECIALS,
               num_sentinels: int = 100, vocab_size: int | None = None):
    self._proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    if (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id()) != (PAD_ID, EOS_ID, UNK_ID):
      raise ValueError(
          "The SentencePiece model must use pad=0, eos=1, unk=2; retrain it with make_tokenizer."
      )
    super().__init__(self._sp.get_piece_size(), specials, num_sentinels, vocab_size)

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._sp.encode(text), np.int32)

  def _decode_pieces(self, ids: np.ndarray) -> str:
    return self._sp.decode(ids.tolist())

  def __reduce__(self):  # The C++ processor does not pickle; grain workers rebuild it from bytes.
    return SentencePieceTokenizer, (self._proto, self.specials, self.num_sentinels, self.vocab_size)

  def __repr__(self):
    model = hashlib.sha256(self._proto).hexdigest()[:12]
    return (f"SentencePieceTokenizer(model={model}, specials={self.specials}, "
            f"num_sentinels={self.num_sentinels}, vocab_size={self.vocab_size})")


class WordTokenizer(_Layout):
  """Whole words (and punctuation marks) of a closed vocabulary, ids from 3 in the given order;
  anything else is <unk>. For procedural caption languages (`synthetic:shapes`), where a learned
  subword model has too little text to learn from and bytes make sequences 4-5x longer."""

  def __init__(self, vocabulary: Sequence[str], specials: Sequence[str] = (), num_sentinels: int = 0,
               vocab_size: int | None = None):
    words = list(dict.fromkeys(vocabulary))
    super().__init__(3 + len(words), specials, num_sentinels, vocab_size)
    self._words = words
    self._word_ids = {w: 3 + i for i, w in enumerate(words)}

  @staticmethod
  def split(text: str) -> list[str]:
    import re  # pylint: disable=g-import-not-at-top
    return re.findall(r"[\w']+|[^\w\s]", text)

  def encode(self, text: str) -> np.ndarray:
    return np.asarray([self._word_ids.get(w, UNK_ID) for w in self.split(text)], np.int32)

  def _decode_pieces(self, ids: np.ndarray) -> str:
    return " ".join(self._words[i - 3] if 3 <= i < 3 + len(self._words) else "<unk>" for i in ids)

  def __repr__(self):
    digest = hashlib.sha256("\n".join(self._words).encode()).hexdigest()[:12]
    return f"WordTokenizer(words={digest}, specials={self.specials}, vocab_size={self.vocab_size})"


def make_tokenizer(
    kind: str,
    *,
    specials: Sequence[str] = _DEFAULT_SPECIALS,
    num_sentinels: int = 100,
    vocab_size: int | None = None,
    corpus: Iterable[str] | None = None,
    cache_dir: str | None = None,
) -> Tokenizer:
  """Builds a "byte" or "sentencepiece" tokenizer.

  `vocab_size` is the total number of ids wanted (specials and sentinels included), rounded up to
  a multiple of 128. For "sentencepiece" it is required, along with `corpus` (documents, ideally a
  random-access sequence so the training sample is spread over it); the model is cached in
  `cache_dir` under a hash of its settings and of the training sample, so the next run loads it.
  """
  if kind == "byte":
    return ByteTokenizer(specials, num_sentinels, vocab_size)
  if kind != "sentencepiece":
    raise ValueError(f"Unknown tokenizer kind {kind!r}; use 'byte' or 'sentencepiece'.")
  if corpus is None or vocab_size is None:
    raise ValueError(
        "A sentencepiece tokenizer is trained on the corpus; pass corpus=... and vocab_size=...."
    )
  num_pieces = vocab_size - len(specials) - num_sentinels
  if num_pieces < 3 + 256 + 64:
    raise ValueError(
        f"vocab_size={vocab_size} leaves {num_pieces} SentencePiece pieces after "
        f"{len(specials)} specials and {num_sentinels} sentinels, too few for 256 byte pieces "
        f"plus text; use vocab_size >= {len(specials) + num_sentinels + 3 + 256 + 64}."
    )
  sample = _sample_lines(corpus)
  key = hashlib.sha256(repr((_SP_OPTIONS, num_pieces, tuple(specials), num_sentinels)).encode())
  for line in sample:
    key.update(line.encode("utf-8", errors="replace") + b"\n")
  path = cache_dir and os.path.join(cache_dir, f"spm-{num_pieces}-{key.hexdigest()[:16]}.model")
  if path and os.path.exists(path):
    with open(path, "rb") as f:
      return SentencePieceTokenizer(f.read(), specials, num_sentinels, vocab_size)
  proto = _train_sentencepiece(sample, num_pieces)
  if path:
    _atomic_write(path, proto)
  return SentencePieceTokenizer(proto, specials, num_sentinels, vocab_size)


_SP_OPTIONS = dict(
    model_type="unigram",  # T5 / UL2's choice
    pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
    byte_fallback=True,  # any character encodes, so decode(encode(x)) == x
    normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
    allow_whitespace_only_pieces=True,  # code indentation becomes one piece
    split_digits=True,
    character_coverage=0.9995,
    hard_vocab_limit=False,  # a tiny corpus may support fewer pieces than asked; take what it has
    max_sentence_length=_SP_MAX_LINE_BYTES,
)


def _sample_lines(corpus: Iterable[str]) -> list[str]:
  """Up to ~2M characters of non-empty lines, in a fixed order spread over a sized corpus."""
  if hasattr(corpus, "__len__") and hasattr(corpus, "__getitem__"):
    order = np.random.default_rng(0).permutation(len(corpus))
    docs = (corpus[int(i)] for i in order)
  else:
    docs = iter(corpus)
  lines, total = [], 0
  for doc in docs:
    for line in doc[:_SP_MAX_CHARS_PER_DOC].splitlines():
      if line.strip() and len(line.encode("utf-8", errors="replace")) <= _SP_MAX_LINE_BYTES:
        lines.append(line)
        total += len(line)
    if total >= _SP_MAX_CHARS:
      break
  if not lines:
    raise ValueError(
        "The corpus for the sentencepiece tokenizer is empty; pass documents with text."
    )
  return lines


def _train_sentencepiece(lines: list[str], num_pieces: int) -> bytes:
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=model, vocab_size=num_pieces,
      num_threads=min(16, os.cpu_count() or 1), minloglevel=2, **_SP_OPTIONS,
  )
  return model.getvalue()


def _atomic_write(path: str, data: bytes):
  """Writes via a temp file and rename, so a concurrent reader never sees half a model."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-", suffix=".model")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
