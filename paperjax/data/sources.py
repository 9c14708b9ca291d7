"""Data sources named by strings: `builtin:<name>`, `synthetic:<name>`, `tfds:<name>[/<config>]`.

A source spec resolves to a random-access sequence (`__len__` + integer `__getitem__`), which is
what `grain.MapDataset.source` consumes; the grain pipeline owns shuffling, sharding and batching.

* `builtin:` real data that ships with Python or scikit-learn, so a fresh machine trains offline:
  `pydoc` (the English topic help of `pydoc_data.topics`), `stdlib_code` (the standard library's
  `.py` files; `stdlib_code/<package>`, e.g. `stdlib_code/email`, is one package — a code domain),
  and the sklearn sets `digits`, `iris`, `wine`, `breast_cancer`.
  `docstrings[/<package>]` is the stdlib's docstrings (a third text domain, overlapping both).
* `synthetic:text` procedural English-like text, seeded, for fast tests.
* `synthetic:arithmetic[/<digits>]`, `synthetic:lego[/<skill>]` procedural tasks as text (prompt +
  answer); `paperjax/data/tasks.py` gives them as (prompt, answer) pairs for exact-match evaluation.
* `synthetic:shapes[/<size>]` procedural images with captions (shape × colour × size × position,
  some shape × colour pairs held out of train), see `paperjax/data/shapes.py`.
* `synthetic:ring[/<k>]`, `synthetic:moons` 2-D point clouds (a k-Gaussian ring, two moons) for
  generative toys, see `paperjax/data/points2d.py`.
* `tfds:<name>[/<config>][?field=<f>&data_dir=<d>]` a prepared TFDS dataset through
  `tfds.data_source` (array_record, no TensorFlow). `field` picks the text feature for
  `text_documents` (`field=a,b,c` joins several, one per line: instruction, input, output);
  `data_dir` overrides `TFDS_DATA_DIR`. Nothing is ever downloaded here. A dataset whose tfds code
  is not imported without TensorFlow (c4, wiki40b, gsm8k) is registered on first use; one whose
  code needs TensorFlow to run, or one tfds does not know (your own), is read from its prepared
  files alone.

`a+b` concatenates sources; a part without a scheme inherits the previous one, so
`builtin:pydoc+stdlib_code` is the UL2 default corpus (English docs + code).

Splits. Builtin and synthetic sources have two partitions, "train" and a held-out one named
"validation" (alias "test"). Builtin text holds out documents by a stable hash of their identity
(see `_held_out`); sklearn sets use a fixed stratified 80/20 split. For tfds, "validation" falls
back to "test" when the dataset has no validation split; any other tfds split string is passed on.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import hashlib
import os
import sysconfig
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging

_VALIDATION_FRACTION = 0.05
_MAX_STDLIB_FILE_BYTES = 200_000
# Directories that are tests, test fixtures, generated tables or third-party code, not the
# stdlib's own hand-written source. Non-identifier directories (site-packages, lib-dynload,
# config-3.x-*) are skipped as well since they cannot be packages.
_STDLIB_SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "encodings", "__phello__", "__pycache__"}
)
_SCHEMES = ("builtin", "synthetic", "tfds")


# --------------------------------------------------------------------------- public API


def text_documents(spec: str, split: str) -> Sequence[str]:
  """Returns the documents (str) of `split` of the text source `spec`, random-access."""
  return _concat([_text_part(part, split) for part in _parse(spec)])


def records(spec: str, split: str) -> Any:
  """Returns a random-access sequence of dict records (numpy leaves) for a non-text source.

  Builtin records are `{"image": float32[8,8,1] in [0,1], "label": int32}` for `digits` and
  `{"features": float32[d], "label": int32}` for the tables. tfds specs return what
  `tfds.data_source` gives, unchanged.
  """
  return _concat([_records_part(part, split) for part in _parse(spec)])


def list_sources() -> list[str]:
  """Names every builtin and synthetic source (tfds names are listed by `tfds.list_builders`)."""
  names = [f"builtin:{n}" for n in (*_BUILTIN_TEXT, *_BUILTIN_RECORDS)]
  names += [f"synthetic:{n}" for n in (*_SYNTHETIC_TEXT, *_SYNTHETIC_RECORDS)]
  return sorted(names)


# --------------------------------------------------------------------------- spec parsing


@dataclasses.dataclass(frozen=True)
class _Part:
  scheme: str
  name: str  # "pydoc", "stdlib_code/email", "mnist/3.0.1", ...
  options: dict[str, str]

  def __str__(self):
    query = "&".join(f"{k}={v}" for k, v in self.options.items())
    query = f"?{query}" if query else ""
    return f"{self.scheme}:{self.name}{query}"

  def check_options(self, allowed: Sequence[str]):
    unknown = sorted(set(self.options) - set(allowed))
    if unknown:
      raise ValueError(
          f"Source {self} does not take option(s) {unknown}; allowed: {sorted(allowed) or 'none'}."
      )


def _parse(spec: str) -> list[_Part]:
  parts, scheme = [], None
  for raw in spec.split("+"):
    raw = raw.strip()
    if ":" in raw.partition("?")[0]:  # else inherit: builtin:pydoc+stdlib_code
      scheme, raw = raw.split(":", 1)
    if scheme not in _SCHEMES or not raw:
      raise ValueError(
          f"Cannot parse source spec {spec!r}; write <scheme>:<name> with scheme in {_SCHEMES}, "
          f"e.g. one of {list_sources()} or tfds:<name>."
      )
    name, _, query = raw.partition("?")
    options = dict(kv.partition("=")[::2] for kv in query.split("&") if kv)
    if not all(options.values()):
      raise ValueError(f"Cannot parse options {query!r} of {spec!r}; write ?key=value&key=value.")
    parts.append(_Part(scheme, name, options))
  return parts


def _split_name(split: str, part: _Part) -> str:
  if split == "train":
    return "train"
  if split in ("validation", "test"):
    return "validation"
  raise ValueError(
      f"Unknown split {split!r} for {part}; use 'train' or 'validation' (alias 'test')."
  )


# --------------------------------------------------------------------------- sequences


class _Concat(Sequence):
  """Concatenation of random-access sequences, itself random-access."""

  def __init__(self, parts: Sequence[Sequence[Any]]):
    self._parts = list(parts)
    self._ends = np.cumsum([len(p) for p in self._parts]).tolist()

  def __len__(self):
    return self._ends[-1] if self._ends else 0

  def __getitem__(self, index: int):
    index = _check_index(index, len(self))
    k = bisect.bisect_right(self._ends, index)
    return self._parts[k][index - (self._ends[k - 1] if k else 0)]


def _concat(parts: list[Sequence[Any]]) -> Sequence[Any]:
  return parts[0] if len(parts) == 1 else _Concat(parts)


def _check_index(index: int, length: int) -> int:
  index = int(index)
  if not -length <= index < length:
    raise IndexError(f"index {index} out of range for a source of {length} items")
  return index % length


class _Files(Sequence):
  """Text files read on access, so listing the stdlib costs no I/O beyond the directory walk."""

  def __init__(self, root: str, paths: Sequence[str]):
    self._root, self._paths = root, tuple(paths)

  def __len__(self):
    return len(self._paths)

  def __getitem__(self, index: int) -> str:
    path = os.path.join(self._root, self._paths[_check_index(index, len(self))])
    with open(path, encoding="utf-8", errors="replace") as f:
      return f.read()


class _Columns(Sequence):
  """Row view over a dict of equal-length arrays: item i is {key: column[i]}."""

  def __init__(self, columns: dict[str, np.ndarray]):
    self._columns = columns
    self._len = len(next(iter(columns.values())))

  def __len__(self):
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = _check_index(index, self._len)
    return {k: v[index] for k, v in self._columns.items()}


class _Field(Sequence):
  """Text features of a tfds data source as one str (array_record stores Text as bytes); several
  fields are joined one per line, empty ones left out."""

  def __init__(self, source: Sequence[dict[str, Any]], fields: Sequence[str]):
    self._source, self._fields = source, tuple(fields)

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index: int) -> str:
    record = self._source[_check_index(index, len(self))]
    texts = (record[f].decode("utf-8", errors="replace") if isinstance(record[f], bytes) else str(record[f])
             for f in self._fields)
    return "\n".join(t for t in texts if t)


# --------------------------------------------------------------------------- held-out rule


def _held_out(identities: Sequence[str]) -> np.ndarray:
  """Boolean mask of the validation documents, decided by a stable hash of each identity.

  Rule: u = (first 8 bytes of sha256(identity)) / 2**64; a document is held out iff u < 0.05.
  The decision depends on the identity alone (topic key, path relative to the stdlib), so it is
  the same on every machine and Python version, and adding a document never moves another. When
  no document of a group falls under the threshold (small packages), the one with the smallest u
  is held out, so validation is never empty.
  """
  if len(identities) < 2:
    raise ValueError(
        f"Cannot split {list(identities)} into train and validation; a source needs >= 2 documents."
    )
  u = np.array([int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") for i in identities])
  u = u / 2.0**64
  mask = u < _VALIDATION_FRACTION
  if not mask.any():
    mask[np.argmin(u)] = True
  return mask


def _pick(items: Sequence[Any], mask: np.ndarray, split: str) -> list[Any]:
  keep = mask if split == "validation" else ~mask
  return [item for item, k in zip(items, keep) if k]


# --------------------------------------------------------------------------- builtin text


@functools.lru_cache(maxsize=None)
def _pydoc_topics() -> tuple[tuple[str, str], ...]:
  from pydoc_data import topics  # pylint: disable=g-import-not-at-top

  return tuple(sorted(topics.topics.items()))


def _pydoc(arg: str, split: str) -> Sequence[str]:
  if arg:
    raise ValueError(f"builtin:pydoc takes no '/{arg}'; use builtin:pydoc.")
  keys, texts = zip(*_pydoc_topics())
  return _pick(texts, _held_out(keys), split)


@functools.lru_cache(maxsize=None)
def _stdlib_packages() -> tuple[str, dict[str, tuple[str, ...]]]:
  """Returns (stdlib root, {package: sorted relative .py paths}); "" groups top-level modules."""
  root = sysconfig.get_paths()["stdlib"]
  packages: dict[str, list[str]] = {}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and d not in _STDLIB_SKIP_DIRS)
    rel_dir = os.path.relpath(dirpath, root)
    package = "" if rel_dir == "." else rel_dir.split(os.sep)[0]
    for name in sorted(filenames):
      path = os.path.join(dirpath, name)
      if name.endswith(".py") and 0 < os.path.getsize(path) <= _MAX_STDLIB_FILE_BYTES:
        packages.setdefault(package, []).append(os.path.relpath(path, root).replace(os.sep, "/"))
  # A package needs >= 2 files to have both a train and a validation document.
  return root, {k: tuple(sorted(v)) for k, v in sorted(packages.items()) if len(v) >= 2}


def _stdlib_code(arg: str, split: str) -> Sequence[str]:
  """Stdlib source, held out per package so `stdlib_code/<p>` validation ⊂ `stdlib_code`'s."""
  root, packages = _stdlib_packages()
  if arg and arg not in packages:
    raise ValueError(
        f"builtin:stdlib_code has no package {arg!r}; "
        f"available: {sorted(p for p in packages if p)}."
    )
  paths = []
  for package in [arg] if arg else packages:
    files = packages[package]
    paths += _pick(files, _held_out(files), split)
  return _Files(root, paths)


@functools.lru_cache(maxsize=None)
def _docstrings_of(package: str) -> tuple[tuple[str, str], ...]:
  """((identity, docstring), ...) of the modules, classes and functions of one stdlib package."""
  import ast  # pylint: disable=g-import-not-at-top
  root, packages = _stdlib_packages()
  out = []
  for rel in packages[package]:
    with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
      try:
        tree = ast.parse(f.read())
      except (SyntaxError, ValueError):
        continue
    nodes = [tree] + [n for n in ast.walk(tree)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for n in nodes:
      doc = ast.get_docstring(n)
      if doc and len(doc) >= 40:  # one-liners carry little text
        out.append((f"{rel}:{getattr(n, 'name', '')}:{getattr(n, 'lineno', 0)}", doc))
  return tuple(out)


def _docstrings(arg: str, split: str) -> Sequence[str]:
  """Docstrings of the stdlib (≥ 40 chars), held out by the split of the file they come from, so
  `docstrings/<p>` validation comes from `stdlib_code/<p>` validation files (no train-code leak)."""
  _, packages = _stdlib_packages()
  if arg and arg not in packages:
    raise ValueError(f"builtin:docstrings has no package {arg!r}; available: {sorted(p for p in packages if p)}.")
  docs = []
  for package in [arg] if arg else packages:
    files = packages[package]
    keep = set(_pick(files, _held_out(files), split))
    docs += [d for ident, d in _docstrings_of(package) if ident.split(":")[0] in keep]
  return docs


def _task_text(name: str) -> Callable[[str, str], Sequence[str]]:
  def load(arg: str, split: str) -> Sequence[str]:
    from paperjax.data import tasks  # pylint: disable=g-import-not-at-top
    return tasks.TaskText(tasks.load(name, arg, split))
  return load


# --------------------------------------------------------------------------- synthetic text

_NOUNS = ("cat", "dog", "river", "teacher", "garden", "city", "robot", "child", "bird", "ship",
          "letter", "mountain", "farmer", "window", "song", "market", "engine", "forest")
_VERBS = ("sees", "builds", "follows", "paints", "finds", "carries", "hears", "opens", "likes",
          "watches", "moves", "reads")
_ADJECTIVES = ("small", "old", "bright", "quiet", "green", "heavy", "quick", "strange", "warm",
               "tired", "gentle", "distant")
_ADVERBS = ("slowly", "often", "never", "quietly", "again", "today", "carefully")
_PREPOSITIONS = ("near", "under", "behind", "across", "inside", "beyond")
_DETERMINERS = ("the", "a", "every", "one", "that")
_CONJUNCTIONS = ("and", "but", "because", "while", "so")
_SYNTHETIC_DOCS = {"train": 10_000, "validation": 500}


def _noun_phrase(rng: np.random.Generator) -> str:
  words = [rng.choice(_DETERMINERS)]
  if rng.random() < 0.5:
    words.append(rng.choice(_ADJECTIVES))
  words.append(rng.choice(_NOUNS))
  if rng.random() < 0.2:
    words += [rng.choice(_PREPOSITIONS), *_noun_phrase(rng).split()]
  return " ".join(words)


def _clause(rng: np.random.Generator) -> str:
  words = [_noun_phrase(rng), rng.choice(_VERBS), _noun_phrase(rng)]
  if rng.random() < 0.3:
    words.insert(1, rng.choice(_ADVERBS))
  return " ".join(words)


class _SyntheticText(Sequence):
  """Documents of 2-8 sentences of a small English grammar; item i depends on (split, i) only."""

  def __init__(self, split: str):
    self._seed = ("train", "validation").index(split)
    self._len = _SYNTHETIC_DOCS[split]

  def __len__(self):
    return self._len

  def __getitem__(self, index: int) -> str:
    rng = np.random.default_rng([self._seed, _check_index(index, self._len)])
    sentences = []
    for _ in range(rng.integers(2, 9)):
      s = _clause(rng)
      if rng.random() < 0.3:
        s += f" {rng.choice(_CONJUNCTIONS)} {_clause(rng)}"
      sentences.append(s[0].upper() + s[1:] + ".")
    return " ".join(sentences)


def _synthetic_text(arg: str, split: str) -> Sequence[str]:
  if arg:
    raise ValueError(f"synthetic:text takes no '/{arg}'; use synthetic:text.")
  return _SyntheticText(split)


# --------------------------------------------------------------------------- builtin records


@functools.lru_cache(maxsize=None)
def _sklearn_split(name: str) -> dict[str, dict[str, np.ndarray]]:
  """Fixed stratified 80/20 split (random_state=0): digits gives 1,437 train / 360 validation."""
  from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top

  data = getattr(datasets, f"load_{name}")()
  x, y = data.data.astype(np.float32), data.target.astype(np.int32)
  if name == "digits":
    columns = {"image": (x / 16.0).reshape(-1, 8, 8, 1), "label": y}  # pixels are 0..16
  else:
    columns = {"features": x, "label": y}
  train, val = model_selection.train_test_split(
      np.arange(len(y)), test_size=0.2, stratify=y, random_state=0
  )
  return {
      split: {k: v[np.sort(rows)] for k, v in columns.items()}
      for split, rows in (("train", train), ("validation", val))
  }


def _sklearn(name: str) -> Callable[[str, str], Sequence[dict[str, np.ndarray]]]:
  def load(arg: str, split: str):
    if arg:
      raise ValueError(f"builtin:{name} takes no '/{arg}'; use builtin:{name}.")
    return _Columns(_sklearn_split(name)[split])

  return load


# --------------------------------------------------------------------------- tfds


def _tfds_source(part: _Part, split: str):
  """Opens a prepared tfds dataset; never downloads and never imports TensorFlow."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  name, data_dir = part.name, part.options.get("data_dir")
  base = name.split("/")[0]
  try:
    try:
      builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
      if not _import_tfds_module(base):
        raise
      builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
  except (tfds.core.registered.DatasetNotFoundError, ImportError) as e:
    # Unknown to tfds (your own dataset), or its code needs TensorFlow: read the prepared files alone.
    try:
      builder = tfds.builder_from_directory(_prepared_dir(tfds, name, data_dir))
      return builder, builder.as_data_source(split=_tfds_split(part, builder, split))
    except (FileNotFoundError, tfds.core.registered.DatasetNotFoundError):
      pass
    root = data_dir or tfds.core.constants.DATA_DIR
    if isinstance(e, ImportError):
      raise FileNotFoundError(
          f"tfds dataset {name!r} is not prepared in data_dir {root!r}, and its tfds code needs "
          f"{str(e).rsplit('No module named', 1)[-1].strip() or 'TensorFlow'}; build it where that is installed with "
          f"`tfds build {name} --file_format=array_record` and copy it here, or set TFDS_DATA_DIR."
      ) from None
    # Without community datasets: listing those reads a GCS index (network, and TensorFlow).
    close = difflib.get_close_matches(base, tfds.list_builders(with_community_datasets=False), n=5)
    raise ValueError(
        f"Unknown tfds dataset {base!r}, and none is prepared under {root!r}; close matches: {close} "
        "(all: tfds.list_builders()); for your own dataset, prepare it there with `tfds build`."
    ) from None
  except ValueError as e:
    if "/" not in name:
      raise
    base, config = name.split("/", 1)
    configs = [c.name for c in tfds.builder_cls(base).BUILDER_CONFIGS]
    if config in configs:
      raise
    raise ValueError(f"tfds dataset {base!r} has no config {config!r}; configs: {configs}.") from e

  split = _tfds_split(part, builder, split)
  prepared = builder.is_prepared()
  try:
    return builder, tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    root = data_dir or str(builder.data_dir).rsplit(f"/{builder.name}/", 1)[0]
    fix = f"`tfds build {name} --file_format=array_record --data_dir={root}`"
    if not prepared:
      raise FileNotFoundError(
          f"tfds dataset {name!r} is not prepared in data_dir {root!r}; run {fix} on a machine "
          "with network (then copy it here), or set TFDS_DATA_DIR to where it is prepared."
      ) from e
    if isinstance(e, NotImplementedError):  # prepared, but as tfrecord: no random access
      raise ValueError(
          f"tfds dataset {name!r} in {root!r} is not in array_record format; rebuild it with {fix}."
      ) from e
    raise


def _tfds_split(part: _Part, builder, split: str) -> str:
  splits = builder.info.splits  # Empty until prepared, and under tfds.testing.mock_data.
  if splits:
    if split == "validation" and "validation" not in splits and "test" in splits:
      logging.info("%s has no validation split; using 'test' as validation.", part)
      split = "test"
    if split.isidentifier() and split not in splits:
      raise ValueError(f"{part} has no split {split!r}; splits: {sorted(splits)}.")
  return split


def _import_tfds_module(base: str) -> bool:
  """Imports the tfds module that defines dataset `base` where `import tensorflow_datasets` did
  not (without TensorFlow it skips some, e.g. c4, wiki40b, gsm8k); True if one imported."""
  import importlib  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  root = pathlib.Path(tfds.__file__).parent
  candidates = [*root.glob(f"*/{base}.py"), *root.glob(f"*/{base}/{base}.py"),
                *root.glob(f"datasets/{base}/{base}_dataset_builder.py")]
  for path in candidates:
    module = ".".join(("tensorflow_datasets", *path.relative_to(root).with_suffix("").parts))
    try:
      importlib.import_module(module)
      return True
    except Exception:  # pylint: disable=broad-except
      continue
  return False


def _prepared_dir(tfds, name: str, data_dir: str | None) -> str:
  """<data_dir>/<name>[/<config>]/<newest version>, or FileNotFoundError."""
  folder = os.path.join(data_dir or tfds.core.constants.DATA_DIR, *name.split("/"))
  versions = sorted((v for v in (os.listdir(folder) if os.path.isdir(folder) else [])
                     if os.path.isfile(os.path.join(folder, v, "dataset_info.json"))),
                    key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit()))
  if not versions:
    raise FileNotFoundError(folder)
  return os.path.join(folder, versions[-1])


def _tfds_text(part: _Part, split: str) -> Sequence[str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  part.check_options(["field", "data_dir"])
  builder, source = _tfds_source(part, split)
  features = builder.info.features
  texts = sorted(k for k, f in features.items() if isinstance(f, tfds.features.Text))
  fields = part.options.get("field", "").split(",") if part.options.get("field") else []
  if not fields and ("text" in features or len(texts) == 1):
    fields = ["text" if "text" in features else texts[0]]
  if not fields or any(f not in features for f in fields):
    raise ValueError(
        f"Cannot pick the text field of {part} (features {sorted(features)}); "
        f"name it, e.g. tfds:{part.name}?field={(texts or sorted(features))[0]} (several: field=a,b)."
    )
  return _Field(source, fields)


# --------------------------------------------------------------------------- dispatch

_BUILTIN_TEXT = {"pydoc": _pydoc, "stdlib_code": _stdlib_code, "docstrings": _docstrings}
_BUILTIN_RECORDS = {n: _sklearn(n) for n in ("digits", "iris", "wine", "breast_cancer")}
_SYNTHETIC_TEXT = {"text": _synthetic_text, "arithmetic": _task_text("arithmetic"), "lego": _task_text("lego")}


def _synthetic_shapes(arg: str, split: str):
  from paperjax.data import shapes  # pylint: disable=g-import-not-at-top

  return shapes.load(arg, split)


def _synthetic_2d(name: str):
  def load(arg: str, split: str):
    from paperjax.data import points2d  # pylint: disable=g-import-not-at-top

    return points2d.load(name, arg, split)

  return load


_SYNTHETIC_RECORDS = {"shapes": _synthetic_shapes, "ring": _synthetic_2d("ring"), "moons": _synthetic_2d("moons")}


def _lookup(part: _Part, kind: str, table: dict[str, Callable], other: dict[str, Callable]):
  """Finds the loader of `part` in `table`, or says why not (wrong kind, or unknown name)."""
  base, _, arg = part.name.partition("/")
  if base in table:
    part.check_options([])
    return table[base], arg
  if base in other:
    hint = "records()" if kind == "text" else "text_documents()"
    raise ValueError(f"{part} is not a {kind} source; load it with paperjax.data.sources.{hint}.")
  raise ValueError(f"Unknown source {part}; available: {list_sources()}, or tfds:<name>.")


def _text_part(part: _Part, split: str) -> Sequence[str]:
  if part.scheme == "tfds":
    return _tfds_text(part, split)
  if part.scheme == "builtin":
    load, arg = _lookup(part, "text", _BUILTIN_TEXT, _BUILTIN_RECORDS)
  else:
    load, arg = _lookup(part, "text", _SYNTHETIC_TEXT, _SYNTHETIC_RECORDS)
  return load(arg, _split_name(split, part))


def _records_part(part: _Part, split: str) -> Any:
  if part.scheme == "tfds":
    part.check_options(["data_dir"])
    return _tfds_source(part, split)[1]
  table = _BUILTIN_RECORDS if part.scheme == "builtin" else _SYNTHETIC_RECORDS
  other = _BUILTIN_TEXT if part.scheme == "builtin" else _SYNTHETIC_TEXT
  load, arg = _lookup(part, "records", table, other)
  return load(arg, _split_name(split, part))
