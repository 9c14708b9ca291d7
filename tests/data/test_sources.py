"""Source specs: builtin corpora and tables offline, synthetic text, tfds under mock_data only."""

import pickle

import grain
import numpy as np
import pytest
import tensorflow_datasets as tfds

from paperjax.data import sources

TEXT_SPECS = ["builtin:pydoc", "builtin:stdlib_code", "builtin:stdlib_code/json", "synthetic:text"]


@pytest.mark.parametrize("spec", TEXT_SPECS)
def test_text_splits_are_nonempty_disjoint_and_deterministic(spec):
  train, val = sources.text_documents(spec, "train"), sources.text_documents(spec, "validation")
  assert len(train) > len(val) > 0
  assert isinstance(train[0], str) and isinstance(val[-1], str) and train[0]
  shared = set(val) & set(train[i] for i in range(min(len(train), 600)))
  assert all(len(doc) < 100 for doc in shared)  # only boilerplate such as a one-line __init__.py
  again = sources.text_documents(spec, "validation")
  assert [again[i] for i in range(len(again))] == [val[i] for i in range(len(val))]
  assert sources.text_documents(spec, "test")[0] == val[0]  # "test" names the held-out split


def test_builtin_texts_are_real_english_and_code():
  pydoc = sources.text_documents("builtin:pydoc", "train")
  code = sources.text_documents("builtin:stdlib_code", "train")
  assert any("the" in doc and "function" in doc for doc in pydoc)
  assert sum("def " in code[i] or "class " in code[i] for i in range(50)) > 40
  assert 0.02 < len(sources.text_documents("builtin:stdlib_code", "validation")) / len(code) < 0.12


def test_stdlib_code_skips_tests_third_party_and_huge_files():
  _, packages = sources._stdlib_packages()
  paths = [p for files in packages.values() for p in files]
  assert len(paths) > 300
  for bad in ("site-packages", "test", "tests", "idlelib", "lib2to3"):
    assert not [p for p in paths if bad in p.split("/")[:-1]], bad
  assert {"email", "asyncio", "json"} <= set(packages)


def test_package_domain_is_a_subset_of_the_whole_with_the_same_split():
  for split in ("train", "validation"):
    whole = set(sources.text_documents("builtin:stdlib_code", split))
    part = list(sources.text_documents("builtin:stdlib_code/email", split))
    assert part and set(part) <= whole


def test_plus_concatenates_and_inherits_the_scheme():
  a = sources.text_documents("builtin:pydoc", "validation")
  b = sources.text_documents("builtin:stdlib_code", "validation")
  both = sources.text_documents("builtin:pydoc+stdlib_code", "validation")
  assert len(both) == len(a) + len(b)
  assert both[0] == a[0] and both[len(a)] == b[0] and both[-1] == b[-1]
  with pytest.raises(IndexError):
    both[len(both)]


def test_held_out_rule_is_stable_and_never_empty():
  ids = [f"doc{i}" for i in range(2000)]
  mask = sources._held_out(ids)
  assert 0.03 < mask.mean() < 0.07
  assert (sources._held_out(ids[:1000]) == mask[:1000]).all()  # membership is per document
  assert sources._held_out(["a.py", "b.py"]).sum() == 1  # small groups still hold one out
  with pytest.raises(ValueError, match=">= 2 documents"):
    sources._held_out(["only.py"])


def test_synthetic_text_is_seeded_english():
  docs = sources.text_documents("synthetic:text", "train")
  assert docs[7] == sources.text_documents("synthetic:text", "train")[7] != docs[8]
  assert docs[0][0].isupper() and docs[0].endswith(".")


def test_text_sources_feed_grain_and_pickle():
  docs = sources.text_documents("builtin:pydoc+stdlib_code/json", "train")
  ds = grain.MapDataset.source(docs).shuffle(seed=0).map(len)
  assert len(ds) == len(docs) and ds[0] > 0
  assert pickle.loads(pickle.dumps(docs))[3] == docs[3]


def test_digits_records():
  train, test = sources.records("builtin:digits", "train"), sources.records("builtin:digits", "test")
  assert (len(train), len(test)) == (1437, 360)
  ex = train[0]
  assert ex["image"].shape == (8, 8, 1) and ex["image"].dtype == np.float32
  assert ex["label"].dtype == np.int32
  images = np.stack([test[i]["image"] for i in range(len(test))])
  assert images.min() == 0.0 and images.max() == 1.0
  assert set(int(test[i]["label"]) for i in range(len(test))) == set(range(10))  # stratified
  assert sources.records("builtin:digits", "validation")[5]["label"] == test[5]["label"]


@pytest.mark.parametrize("name,dim,total", [("iris", 4, 150), ("wine", 13, 178), ("breast_cancer", 30, 569)])
def test_table_records(name, dim, total):
  train, val = (sources.records(f"builtin:{name}", s) for s in ("train", "validation"))
  assert len(train) + len(val) == total and len(val) > 0
  assert train[0]["features"].shape == (dim,) and train[0]["features"].dtype == np.float32


def test_list_sources():
  names = sources.list_sources()
  assert {"builtin:pydoc", "builtin:stdlib_code", "builtin:digits", "synthetic:text"} <= set(names)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: sources.text_documents("builtin:nope", "train"), "Unknown source builtin:nope.*builtin:pydoc"),
        (lambda: sources.records("synthetic:digits", "train"), "Unknown source synthetic:digits"),
        (lambda: sources.text_documents("nope:x", "train"), "scheme"),
        (lambda: sources.text_documents("pydoc", "train"), "scheme"),
        (lambda: sources.text_documents("builtin:digits", "train"), "records()"),
        (lambda: sources.records("builtin:pydoc", "train"), "text_documents()"),
        (lambda: sources.text_documents("builtin:pydoc", "dev"), "'train' or 'validation'"),
        (lambda: sources.text_documents("builtin:stdlib_code/nope", "train"), "email"),
        (lambda: sources.text_documents("builtin:pydoc?x=1", "train"), "does not take"),
        (lambda: sources.text_documents("builtin:pydoc?x", "train"), "key=value"),
    ],
)
def test_errors_say_what_exists(call, match):
  with pytest.raises(ValueError, match=match):
    call()


# --------------------------------------------------------------------------- tfds (mocked only)


@pytest.fixture
def mock_tfds():
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    yield


def test_tfds_records(mock_tfds):
  ds = sources.records("tfds:mnist", "train")
  assert len(ds) == 8 and ds[0]["image"].shape == (28, 28, 1)


def test_tfds_text_field(mock_tfds):
  docs = sources.text_documents("tfds:lm1b", "train")
  assert len(docs) == 8 and isinstance(docs[0], str)
  assert len(sources.text_documents("tfds:lm1b+builtin:pydoc", "validation")) > 8


def test_tfds_text_field_must_be_named_when_ambiguous(mock_tfds):
  with pytest.raises(ValueError, match=r"\?field=description"):
    sources.text_documents("tfds:ag_news_subset", "train")
  assert isinstance(sources.text_documents("tfds:ag_news_subset?field=title", "train")[0], str)


def test_tfds_unknown_name_and_config():
  with pytest.raises(ValueError, match="Unknown tfds dataset 'mnistt'.*'mnist'"):
    sources.records("tfds:mnistt", "train")
  with pytest.raises(ValueError, match="no config 'nope'.*plain_text"):
    sources.text_documents("tfds:imdb_reviews/nope", "train")


def test_tfds_not_prepared_names_dataset_dir_and_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match=rf"'mnist'.*{tmp_path}.*tfds build mnist.*TFDS_DATA_DIR"):
    sources.records(f"tfds:mnist?data_dir={tmp_path}", "train")


def test_docstrings_and_tasks_are_text_sources():
  train = sources.text_documents("builtin:docstrings/json", "train")
  val = sources.text_documents("builtin:docstrings/json", "validation")
  assert len(train) and len(val) and not set(train) & set(val)
  assert all(len(d) >= 40 for d in train)
  for doc in [sources.text_documents("synthetic:arithmetic/3", "train")[i] for i in range(20)]:
    lhs, rhs = doc.split("=")
    assert sum(map(int, lhs.split("+"))) == int(rhs)
  assert sources.text_documents("synthetic:lego/2", "validation")[0].startswith("Input: ")


@pytest.fixture(scope="module")
def tiny_corpus_dir(tmp_path_factory):
  """A dataset of our own, prepared offline in array_record format (no TensorFlow needed); its
  builder class is registered with tfds once per process, so it is defined here once."""
  class PaperjaxTinyCorpus(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return self.dataset_info_from_configs(features=tfds.features.FeaturesDict(
          {"instruction": tfds.features.Text(), "output": tfds.features.Text(), "n": np.int32}))

    def _split_generators(self, dl_manager):
      return {"train": self._generate_examples(6), "test": self._generate_examples(2, "t")}

    def _generate_examples(self, n, tag=""):
      for i in range(n):
        yield f"{tag}{i}", {"instruction": f"{tag}add {i} and 1", "output": str(i + 1), "n": i}

  data_dir = tmp_path_factory.mktemp("tfds")
  PaperjaxTinyCorpus(data_dir=str(data_dir), file_format="array_record").download_and_prepare()
  return data_dir


def test_tfds_prepared_dataset_of_our_own_joins_fields(tiny_corpus_dir):
  tmp_path = tiny_corpus_dir
  spec = f"tfds:paperjax_tiny_corpus?data_dir={tmp_path}&field=instruction,output"
  train = sources.text_documents(spec, "train")
  assert len(train) == 6 and sorted(train)[2] == "add 2 and 1\n3"
  val = sources.text_documents(spec, "validation")   # no validation split: falls back to test
  assert sorted(val) == ["tadd 0 and 1\n1", "tadd 1 and 1\n2"]
  with pytest.raises(ValueError, match=r"field=a,b"):
    sources.text_documents(f"tfds:paperjax_tiny_corpus?data_dir={tmp_path}&field=instruction,nope", "train")


def test_tfds_reads_prepared_files_when_the_builder_code_needs_tensorflow(tiny_corpus_dir, monkeypatch):
  tmp_path = tiny_corpus_dir

  def builder_needing_tf(*args, **kwargs):
    raise ModuleNotFoundError("Failed to construct dataset: No module named 'tensorflow'")
  monkeypatch.setattr(tfds, "builder", builder_needing_tf)
  recs = sources.records(f"tfds:paperjax_tiny_corpus?data_dir={tmp_path}", "train")
  assert len(recs) == 6 and sorted(int(r["n"]) for r in recs) == list(range(6))
  with pytest.raises(FileNotFoundError, match=r"needs 'tensorflow'.*tfds build paperjax_tiny_corpus"):
    sources.records(f"tfds:paperjax_tiny_corpus?data_dir={tmp_path / 'elsewhere'}", "train")
