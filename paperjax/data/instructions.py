"""Procedural instruction tasks with a programmatic verifier (instruction-tuning toys, offline).

Each task maps a short instruction to one correct answer, e.g. "upper cfa" → "CFA", "max 3 9 2" → "9".
`solve(instruction)` computes the correct answer from the instruction alone, so `verify(x, y)` is an
exact, noise-free reward R(x, y) ∈ {0, 1} — the stand-in for a reward model in data-selection toys
(kMQ's iterative refinement, judges). A *pool* is an imbalanced mix of templates; a template can be
*corrupted*: its gold answers are random letter strings (the instruction is fine, the response is
not), which is what "low-quality clusters" means in instruction-selection papers.

  pool(sizes, corrupted, seed)    records {instruction, answer, task, corrupted} (answer = the gold
                                  answer the dataset ships, wrong for corrupted templates)
  test_set(tasks, per_task, seed) held-out records with correct answers (drawn from another seed;
                                  tasks with tiny input spaces, e.g. "next c", may repeat pool items)
  encode(record, tok, length)     {tokens, loss_mask}: "<instruction>\\n<answer><eos>", loss on the
                                  answer and its eos (the usual instruction-tuning mask)
  greedy_answers(...)             decoded answers (models/decode.py's greedy decoder, cut at eos)
  VerifierAccuracy                evaluator: verifier accuracy per task and the macro mean (answers
                                  checked by each task's verifier, unlike evals/lm.ExactMatch's string match)
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

LETTERS = "abcdef"
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _word(rng, lo=2, hi=4) -> str:
  return "".join(rng.choice(list(LETTERS), int(rng.integers(lo, hi + 1))))


def _digits(rng, n=3) -> list[str]:
  return [str(d) for d in rng.integers(0, 10, n)]


# name -> (instruction generator, solver of the instruction's argument string)
TASKS: dict[str, tuple[Callable, Callable[[str], str]]] = {
    "copy": (lambda r: _word(r), lambda a: a),
    "upper": (lambda r: _word(r), lambda a: a.upper()),
    "first": (lambda r: _word(r), lambda a: a[0]),
    "last": (lambda r: _word(r), lambda a: a[-1]),
    "double": (lambda r: _word(r, 1, 3), lambda a: a + a),
    "length": (lambda r: _word(r, 1, 6), lambda a: str(len(a))),
    "next": (lambda r: _ALPHABET[int(r.integers(0, 25))], lambda a: _ALPHABET[_ALPHABET.index(a) + 1]),
    "max": (lambda r: " ".join(_digits(r)), lambda a: max(a.split())),
    "min": (lambda r: " ".join(_digits(r)), lambda a: min(a.split())),
    "second": (lambda r: _word(r), lambda a: a[1]),
    "lower": (lambda r: _word(r).upper(), lambda a: a.lower()),
    "inc": (lambda r: str(int(r.integers(0, 9))), lambda a: str(int(a) + 1)),
    "swap": (lambda r: _word(r), lambda a: a[-1] + a[1:-1] + a[0]),
    "rotate": (lambda r: _word(r), lambda a: a[1:] + a[0]),
    "middle": (lambda r: _word(r, 3, 3), lambda a: a[1]),
    "drop": (lambda r: _word(r), lambda a: a[1:]),
}
NAMES = tuple(TASKS)


def solve(instruction: str) -> str:
  name, _, arg = instruction.partition(" ")
  if name not in TASKS:
    raise ValueError(f"Unknown instruction task {name!r}; known: {', '.join(NAMES)}.")
  return TASKS[name][1](arg)


def verify(instruction: str, answer: str) -> float:
  """R(x, y): 1.0 when `answer` is the correct answer to `instruction`, else 0.0."""
  return float(answer.strip() == solve(instruction))


def pool(sizes: dict[str, int], corrupted: Sequence[str] = (), seed: int = 0) -> list[dict]:
  """`sizes[task]` examples of each task, in a fixed shuffled order; `corrupted` tasks ship random
  letter strings (length 1–5) as gold answers."""
  unknown = (set(sizes) | set(corrupted)) - set(TASKS)
  if unknown:
    raise ValueError(f"Unknown instruction tasks {sorted(unknown)}; known: {', '.join(NAMES)}.")
  rng = np.random.default_rng([int(seed), 4747])
  recs = []
  for name, n in sizes.items():
    gen = TASKS[name][0]
    for _ in range(int(n)):
      x = f"{name} {gen(rng)}"
      bad = name in corrupted
      y = "".join(rng.choice(list(LETTERS), int(rng.integers(1, 6)))) if bad else solve(x)
      recs.append({"instruction": x, "answer": y, "task": NAMES.index(name), "corrupted": bad})
  order = rng.permutation(len(recs))
  return [recs[i] for i in order]


def test_set(tasks: Sequence[str], per_task: int, seed: int = 1) -> list[dict]:
  return pool({t: per_task for t in tasks}, (), seed=int(seed) + 7919)


def encode(record: dict, tok, length: int) -> dict:
  """{tokens [length], loss_mask [length]} for "<instruction>\\n<answer><eos>"; loss on answer + eos."""
  prompt = tok.encode(record["instruction"] + "\n")
  ans = np.concatenate([tok.encode(record["answer"]), [tok.eos_id]])
  n = len(prompt) + len(ans)
  if n > length:
    raise ValueError(f"An instruction example needs {n} tokens but the sequence length is {length}; "
                     "raise the config's sequence length.")
  tokens = np.zeros(length, np.int32)
  tokens[:n] = np.concatenate([prompt, ans])
  mask = np.zeros(length, np.int32)
  mask[len(prompt):n] = 1
  return {"tokens": tokens, "loss_mask": mask}


def greedy_answers(model, params, tok, instructions: Sequence[str], *, length: int, max_answer: int = 10,
                   batch_size: int = 256) -> list[str]:
  """The model's greedy answer to each instruction (prompt "<instruction>\\n", cut at the first eos)."""
  from paperjax.evals import lm  # pylint: disable=g-import-not-at-top
  return lm.greedy_completions(model, params, tok, [tok.encode(x + "\n") for x in instructions], length=length,
                               max_new=max_answer + 1, batch_size=batch_size)


@dataclasses.dataclass
class VerifierAccuracy:
  """Verifier accuracy of greedy answers on held-out records: `<name>` (macro mean over tasks) and
  `<name>/<task>` per task."""
  records: Sequence[dict]
  model: object
  tok: object
  length: int
  name: str = "accuracy"

  def __call__(self, params, ctx) -> dict[str, float]:
    del ctx
    xs = [r["instruction"] for r in self.records]
    ok = np.asarray([verify(x, y) for x, y in zip(xs, greedy_answers(self.model, params, self.tok, xs, length=self.length))])
    tasks = np.asarray([r["task"] for r in self.records])
    per = {NAMES[t]: float(ok[tasks == t].mean()) for t in np.unique(tasks)}
    return {self.name: float(np.mean(list(per.values()))), **{f"{self.name}/{k}": v for k, v in per.items()}}
