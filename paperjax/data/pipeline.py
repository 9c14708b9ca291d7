"""grain pipelines: token streams cut into fixed-length chunks, per-example transforms, batches.

Determinism contract (what exact resume and the multi-process tests rely on):
  * the example at global position i of the (shuffled, repeated) stream and the randomness of its
    per-example transform depend only on (seed, i) — the transform is applied *before* the stream is
    split between processes, so 1 process and N processes see the same examples with the same noise;
  * process p of N reads positions p, p+N, p+2N, … and batches `global_batch // N` of them, so the
    global batch b is the same set of examples on any number of processes;
  * a vectorised per-*batch* transform (`batch_fn`, e.g. UL2's denoisers: 18 µs a row batched
    against 96 µs a row one example at a time) keeps the contract by seeing the whole *global*
    batch b with randomness from (seed, b) on every process, each process then keeping its rows
    p, p+N, …: the same global batch on any number of processes, at the price of every process
    transforming every row (cheap next to a step for transforms like UL2's; a transform too costly
    to repeat on each host belongs in `example_fn`);
  * the iterator's `get_state()` is a position, checkpointed with the train state (`checkpoint.py`).
  * packing (`Packing`, T5X's several examples per row) keeps it too: the global example stream is
    packed first-fit into the rows of global batches — the same on every process, each keeping its
    rows — and the packer's state (the stream position of the batch being packed) is part of
    `get_state()`.
Several named sources with (scheduled or online) weights are `mixture.MixtureStream`, built on the
chunks and fixed batches here under the same contract.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Callable, Mapping, Sequence

import grain
from grain._src.python.dataset.transformations import packing_packed_batch  # the packer class grain's first-fit uses
import numpy as np


class TokenChunks:
  """Random-access source of `length`-token chunks of the concatenated, eos-separated corpus."""

  def __init__(self, stream: np.ndarray, length: int):
    if len(stream) < length:
      raise ValueError(f"The corpus has only {len(stream)} tokens, fewer than one chunk of {length}; "
                       "use a larger data source or a shorter data.raw_length.")
    self.stream, self.length = stream, length

  def __len__(self) -> int:
    return len(self.stream) // self.length

  def __getitem__(self, i: int) -> np.ndarray:
    i = int(i)
    return self.stream[i * self.length:(i + 1) * self.length]


def token_stream(documents: Sequence[str], tokenizer, max_chars: int | None = None,
                 cache_dir: str | None = None, cache_key: str = "") -> np.ndarray:
  """Tokenise documents once into one int32 stream, documents separated by eos.

  With a `cache_dir` the stream is stored as .npy (keyed by corpus, tokenizer and cap), so a
  second run or a resumed run does not re-tokenise.
  """
  path = None
  if cache_dir:
    key = hashlib.sha1(f"{cache_key}|{tokenizer!r}|{tokenizer.vocab_size}|{max_chars}".encode()).hexdigest()[:16]
    path = os.path.join(cache_dir, f"tokens-{key}.npy")
    if os.path.exists(path):
      return np.load(path, mmap_mode="r")
  pieces, total = [], 0
  eos = np.asarray([tokenizer.eos_id], np.int32)
  for doc in documents:
    if max_chars is not None and total >= max_chars:
      break
    if max_chars is not None:
      doc = doc[: max_chars - total]
    total += len(doc)
    pieces += [np.asarray(tokenizer.encode(doc), np.int32), eos]
  stream = np.concatenate(pieces) if pieces else np.zeros((0,), np.int32)
  if path:
    os.makedirs(cache_dir, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
      np.save(f, stream)
    os.replace(tmp, path)
  return stream


def global_dataset(source, *, seed: int, shuffle: bool = True, num_epochs: int | None = None,
                   example_fn: Callable | None = None) -> grain.MapDataset:
  """The global example stream: shuffled per epoch, repeated, transformed per example."""
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=seed)
  ds = ds.repeat(num_epochs)
  if example_fn is not None:
    ds = ds.random_map(lambda x, rng: example_fn(x, rng), seed=seed + 1)
  return ds


@dataclasses.dataclass(frozen=True)
class Packing:
  """Sequence packing: several variable-length examples per row (T5X/seqio's `pack`).

  `split(batch)` cuts a global batch (after `batch_fn`) into its examples, each a dict of 1-D arrays
  cut to their true lengths. Examples are packed first-fit, in stream order, into the rows of each
  global batch (grain's `FirstFitPackIterDataset`: a row takes the example if every feature fits,
  and the batch is emitted when an example fits no row, that example opening the next batch; nothing
  is dropped or truncated, so a mixture's rates are kept). `lengths` gives each sequence feature's row
  length; `along` packs per-position side features with a sequence feature (e.g. targets_mask with
  targets). Rows come out padded with 0, with `<feature>_segment_ids` (1, 2, … in row order, 0 =
  padding) and `<feature>_positions` (0, 1, … restarting in each example) for each sequence feature.
  At most `max_segments` examples share a row: pass the model's `max_segments` (cuDNN's packed layout
  has that many slots a row, and pays for each: `models.transformer.MAX_SEGMENTS`).
  `multi_rows` > 0 (the model's `packed_rows`): at most that many rows of a global batch hold more than
  one example (a row that would be the next takes no second one), and those rows come last in the
  batch (a stable sort: the rest keep their order), so that the model needs cuDNN's packed layout for
  no row, and its padded one twice only for these (`models.transformer.MixedLayout`). Each
  process's strided share of the batch (`make_iterator`) then has its own such rows last too."""
  lengths: Mapping[str, int]
  split: Callable[[dict], list]
  max_segments: int
  along: Mapping[str, str] = dataclasses.field(default_factory=dict)
  multi_rows: int = 0

  def __post_init__(self):
    bad = {k: v for k, v in self.along.items() if v not in self.lengths}
    if bad:
      raise ValueError(f"Packing.along maps {bad} to features that are not packed sequences; "
                       f"use one of {sorted(self.lengths)}.")
    if self.multi_rows < 0:
      raise ValueError(f"Packing.multi_rows={self.multi_rows} is negative; use 0 (any row may hold several "
                       "examples) or the number of rows that may.")


class _CappedFirstFit(packing_packed_batch.FirstFitPackedBatch):
  """grain's first-fit packer, with at most `multi_rows` rows holding more than one example: once that
  many do, every row holding one takes no second (its cap drops to 1; grain compares the per-row example
  counts with `_max_sequences_per_bin`, which broadcasts). tests/test_packing.py checks it against a
  first-fit written out by hand, so a grain that packs differently fails there, not silently."""
  multi_rows: int = 0

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self._max_segments = self._max_sequences_per_bin

  def try_add_to_batch(self, element):
    n = self._num_examples_per_row
    if (n > 1).sum() >= self.multi_rows:
      self._max_sequences_per_bin = np.where(n > 1, self._max_segments, 1)
    return super().try_add_to_batch(element)


def multi_rows_last(batch: dict, feature: str) -> dict:
  """`batch`'s rows reordered so that those holding more than one example (segment id > 1 somewhere in
  `<feature>_segment_ids`) come last, the rest first, each group in its own order."""
  order = np.argsort(np.asarray(batch[f"{feature}_segment_ids"]).max(1) > 1, kind="stable")
  return {k: np.asarray(v)[order] for k, v in batch.items()}


def multi_rows_per_shard(batch: dict, shards: int) -> dict:
  """A batch whose multi-example rows come last, dealt round-robin to `shards` contiguous blocks (rows
  j, j + shards, … form block j): each block then holds about 1/shards of those rows, last in it."""
  order = np.concatenate([np.arange(j, len(next(iter(batch.values()))), shards) for j in range(shards)])
  return {k: np.asarray(v)[order] for k, v in batch.items()}


class _Split(grain.experimental.FlatMapTransform):

  def __init__(self, split: Callable, max_fan_out: int):
    self.split, self.max_fan_out = split, max_fan_out

  def flat_map(self, element):
    return self.split(element)


def _drop_side_layout(batch: dict, side: Sequence[str]) -> dict:
  drop = {f"{k}_{suffix}" for k in side for suffix in ("segment_ids", "positions")}
  return {k: v for k, v in batch.items() if k not in drop}


def packed_iter_dataset(ds: grain.IterDataset, pack: Packing, *, rows: int, split_fan_out: int,
                        seed: int) -> grain.IterDataset:
  """`ds` (a stream of unpacked global batches) → a stream of packed global batches of `rows` rows."""
  ds = grain.experimental.FlatMapIterDataset(ds, _Split(pack.split, split_fan_out))
  lengths = dict(pack.lengths)
  lengths.update({k: pack.lengths[v] for k, v in pack.along.items()})
  ds = grain.experimental.FirstFitPackIterDataset(
      ds, length_struct=lengths, num_packing_bins=rows, seed=seed, shuffle_bins=False,
      max_sequences_per_bin=pack.max_segments)
  if 0 < pack.multi_rows < rows:  # (as many as the batch's rows: no cap)
    ds._packer_cls = type("CappedFirstFit", (_CappedFirstFit,), {"multi_rows": pack.multi_rows})
  ds = ds.batch(rows, drop_remainder=True)
  if pack.along:
    ds = ds.map(functools.partial(_drop_side_layout, side=tuple(pack.along)))
  if pack.multi_rows:
    ds = ds.map(functools.partial(multi_rows_last, feature=next(iter(pack.lengths))))
  return ds


def pack_now(batches: Sequence[dict], pack: Packing, rows: int) -> list[dict]:
  """`batches` (unpacked, as `batch_fn` returns them) packed into batches of `rows` rows, here and now:
  the packed layout a step compiled ahead of the data sees (`launch.preflight`)."""
  ds = grain.MapDataset.source(list(batches)).to_iter_dataset()
  fan_out = max(len(next(iter(b.values()))) for b in batches)
  return list(packed_iter_dataset(ds, pack, rows=rows, split_fan_out=fan_out, seed=0))


def make_iterator(source, *, global_batch_size: int, seed: int, process_index: int = 0, process_count: int = 1,
                  example_fn: Callable | None = None, batch_fn: Callable | None = None, shuffle: bool = True,
                  num_epochs: int | None = None, num_threads: int = 2, prefetch: int = 4,
                  pack: Packing | None = None, batch_shards: int = 0):
  """A checkpointable iterator over this process's share of global batches (numpy dicts).

  `example_fn(example, rng)` transforms each example, `batch_fn(batch, rng)` each global batch
  (stacked examples, after `example_fn`); `pack` packs the transformed examples several to a row
  (`Packing`, in a background thread); see the determinism contract above.
  `batch_shards`: the devices the global batch is split over (the mesh's batch axes; 0: one per
  process). With `pack.multi_rows`, each process's rows are dealt round-robin to its shards so that
  every shard's contiguous block holds its share of the multi-example rows, last (`multi_rows_per_shard`;
  the model's `MixedLayout` takes the same blocks): no one device computes every tail row."""
  if global_batch_size % process_count:
    raise ValueError(f"data.batch_size={global_batch_size} does not divide among {process_count} processes; "
                     f"use a multiple of {process_count}.")
  local = global_batch_size // process_count
  ds = global_dataset(source, seed=seed, shuffle=shuffle, num_epochs=num_epochs, example_fn=example_fn)
  keep_mine = functools.partial(_rows, start=process_index, step=process_count)  # this process's rows
  if batch_fn is not None or pack is not None:  # whole global batches, transformed (and packed) alike everywhere
    ds = ds.batch(global_batch_size, drop_remainder=True)
    if batch_fn is not None:
      ds = ds.random_map(lambda b, rng: batch_fn(b, rng), seed=seed + 2)
  if pack is not None:
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
    it = packed_iter_dataset(it, pack, rows=global_batch_size, split_fan_out=global_batch_size, seed=seed + 3)
    if process_count > 1:
      it = it.map(keep_mine)
    if pack.multi_rows and batch_shards > process_count:
      if batch_shards % process_count or global_batch_size % batch_shards:
        raise ValueError(f"{batch_shards} batch shards do not split data.batch_size={global_batch_size} evenly "
                         f"over {process_count} processes; use a batch that is a multiple of the mesh's batch axes.")
      it = it.map(functools.partial(multi_rows_per_shard, shards=batch_shards // process_count))
    # Packing is Python per example (~0.1 ms each here): a thread keeps it off the training loop's.
    return iter(grain.experimental.ThreadPrefetchIterDataset(it, prefetch_buffer_size=2))
  if batch_fn is not None:
    if process_count > 1:
      ds = ds.map(keep_mine)
  else:
    if process_count > 1:
      ds = ds[process_index::process_count]
    ds = ds.batch(local, drop_remainder=True)
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch))
  return iter(it)


def _rows(tree, start: int, step: int):
  """Rows start, start+step, … of every array in a (nested dict/list/tuple) batch."""
  if isinstance(tree, dict):
    return {k: _rows(v, start, step) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return type(tree)(_rows(v, start, step) for v in tree)
  return np.asarray(tree)[start::step]


def fixed_batches(source, *, batch_size: int, num_batches: int, seed: int, example_fn: Callable | None = None,
                  process_index: int = 0, process_count: int = 1) -> list[dict]:
  """A deterministic list of evaluation batches (this process's share), identical every run."""
  ds = global_dataset(source, seed=seed, shuffle=True, num_epochs=None, example_fn=example_fn)
  if process_count > 1:
    ds = ds[process_index::process_count]
  local = batch_size // process_count
  ds = ds.batch(local, drop_remainder=True)
  return [ds[i] for i in range(num_batches)]
