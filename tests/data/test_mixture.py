"""Mixture stream: the sampling rule, schedules, realised proportions and exact resume (also
through the trainer's checkpoints)."""

import json

import numpy as np
import pytest

from paperjax.data import mixture


class _Rows:
  def __init__(self, n, sid):
    self.n, self.sid = n, sid

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    return {"tokens": np.full(4, 100 * self.sid + int(i), np.int32), "loss_mask": np.ones(4, np.int32)}


def _stream(weights=(0.7, 0.2, 0.1), phases=(), steps=100, **kw):
  names = ["a", "b", "c"]
  sched = mixture.Schedule(names, dict(zip(names, weights)), phases, steps)
  return mixture.MixtureStream({n: _Rows(7 + i, i) for i, n in enumerate(names)}, sched, batch_size=32, seed=3, **kw)


def test_realised_proportions_match_weights():
  s = _stream()
  for _ in range(200):
    next(s)
  np.testing.assert_allclose(s.realised(), [0.7, 0.2, 0.1], atol=0.02)
  m = s.metrics()
  assert m["mix_weight/a"] == pytest.approx(0.7) and m["mix/a"] == pytest.approx(s.realised()[0])


def test_each_source_is_read_in_epochs_without_repeats():
  s = _stream(weights=(1.0, 0.0, 0.0))
  seen = np.concatenate([next(s)["tokens"][:, 0] for _ in range(7)])  # 224 rows of a 7-row source
  for e in range(len(seen) // 7):
    assert sorted(seen[7 * e:7 * (e + 1)]) == list(range(7))


def test_phase_switch_step_and_weights():
  s = _stream(phases=((0.85, {"c": 1.0}),), steps=100)
  assert mixture.switch_step(0.85, 100) == 85 and mixture.switch_step(0.1, 1000) == 100
  src = [next(s)["source"] for _ in range(100)]
  assert all((b == 2).all() for b in src[85:]) and not all((b == 2).all() for b in src[:85])


def test_get_set_state_resumes_exactly_with_online_weights():
  s = _stream()
  for _ in range(5):
    next(s)
  s.set_weights([0.1, 0.1, 0.8])
  for _ in range(3):
    next(s)
  state = json.loads(json.dumps(s.get_state()))  # as grain's checkpoint handler stores it
  after = [next(s) for _ in range(4)]
  t = _stream()
  t.set_state(state)
  for a, b in zip(after, [next(t) for _ in range(4)]):
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
  assert t.metrics() == s.metrics()


def test_processes_split_the_global_batch():
  one = _stream()
  full = [next(one) for _ in range(3)]
  parts = [[next(p) for _ in range(3)] for p in (_stream(process_index=i, process_count=2) for i in (0, 1))]
  for b in range(3):
    np.testing.assert_array_equal(full[b]["tokens"], np.concatenate([parts[0][b]["tokens"], parts[1][b]["tokens"]]))


def test_bad_weights_say_what_to_fix():
  with pytest.raises(ValueError, match="not sources"):
    mixture.normalise(["a"], {"b": 1.0})
  with pytest.raises(ValueError, match="positive sum"):
    mixture.normalise(["a"], {"a": 0.0})


def test_task_rows_train_on_answers_only():
  from paperjax.data import tasks, tokenizers
  tok = tokenizers.make_tokenizer("byte")
  rows = mixture.TaskRows(tasks.Arithmetic("train", 2), tok, 64, source_id=1)
  r = rows[0]
  assert rows.per_row >= 2 and r["source"] == 1
  text = tok.decode(r["tokens"][r["loss_mask"] > 0])
  ex = [tasks.Arithmetic("train", 2)[i] for i in range(rows.per_row)]
  assert text == "".join(e.answer + "<eos>" for e in ex)


def test_trainer_resume_restores_mixture_exactly(tmp_path):
  """Straight 4 steps == 2 steps, stop, resume to 4: same loss curve and realised proportions."""
  from configs import slimpajama_dc
  from paperjax import train
  from tests.conftest import shrink

  def cfg():
    c = shrink(slimpajama_dc.get_config("dedup=none"), steps=4)
    c.mixture.sources = {"prose": "synthetic:text", "sums": "synthetic:arithmetic/2"}
    c.mixture.weights = {"prose": 0.6, "sums": 0.4}
    c.mixture.phases = ((0.5, {"sums": 1.0}),)
    c.mixture.length = 32
    c.slimpajama.update(plant_fraction=0.0, plant_cross_fraction=0.0)
    c.train.update(log_every=1, ckpt_every=2, eval_batches=1)
    c.eval.em_examples = 0
    return c

  straight = train.run(cfg(), str(tmp_path / "straight"))
  c = cfg()
  c.train.stop_at = 2
  train.run(c, str(tmp_path / "resumed"))
  resumed = train.run(cfg(), str(tmp_path / "resumed"))
  rows = lambda d: [json.loads(l) for l in open(tmp_path / d / "metrics.jsonl")]
  pick = lambda rs: {r["step"]: (r["loss"], r["mix/sums"]) for r in rs if "mix/sums" in r}
  assert pick(rows("straight")) == pick(rows("resumed"))
  assert resumed["data"]["rows_drawn"] == straight["data"]["rows_drawn"]
  assert straight["train"]["mix_weight/sums"] == 1.0
