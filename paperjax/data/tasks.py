"""Procedural tasks: (prompt, answer) pairs generated from a seed, for skill-level training and
exact-match evaluation. Each is also a text source (`synthetic:<name>`, documents = prompt + answer).

  arithmetic[/<digits>]  "417+62=" → "479": addition of two numbers of 1..digits digits (default 3).
  lego[/<skill>]         LEGO chains (Zhang et al. 2022, as Skill-it generates them in
                         `dataset/lego_dataset.py`): k=5 binary variables on a path graph; the root is
                         assigned a value ("c=val 1"), each other variable copies or negates its parent
                         ("a=not c"); the clauses are shuffled and one variable is queried. Skill i is the
                         variable at depth i of the chain (0 = the root): resolving it needs i steps.
                         Without /<skill> the query's skill is uniform over 0..k−1.
                         Prompt "Input: d=val 1, b=not d, … . Output: e=val " → answer "0".
                         (Skill-it writes "c = val 1 , " with spaces for a BPE tokenizer; we drop them for
                         bytes — the same content in fewer tokens.)

Item i of a split depends on (task, split, i) only. Validation examples are the ones whose
problem hashes into 1/20 of the space (train rejects them), so no held-out problem is trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import string
from collections.abc import Sequence

import numpy as np

LEGO_K = 5
_LEGO_VARS = string.ascii_lowercase
_HELD_OUT_MOD = 20
_SIZES = {"train": 200_000, "validation": 2_000}


@dataclasses.dataclass(frozen=True)
class Example:
  prompt: str
  answer: str
  skill: int = 0


def _held_out(key: str) -> bool:
  return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") % _HELD_OUT_MOD == 0


class Task(Sequence):
  """Random-access (prompt, answer) examples of one split; subclasses give `_draw(rng) -> (Example, key)`."""
  name = "task"
  num_skills = 1

  def __init__(self, split: str):
    if split not in _SIZES:
      raise ValueError(f"Unknown split {split!r} for task {self.name}; use 'train' or 'validation'.")
    self.split = split
    self._seed = ("train", "validation").index(split)

  def __len__(self) -> int:
    return _SIZES[self.split]

  def __getitem__(self, index: int) -> Example:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for a task of {len(self)} examples")
    rng = np.random.default_rng([self._tag(), self._seed, index % len(self)])
    while True:  # rejection: train never yields a held-out problem, validation only those
      ex, key = self._draw(rng)
      if _held_out(key) == (self.split == "validation"):
        return ex

  def _tag(self) -> int:
    return int.from_bytes(hashlib.sha256(repr(self).encode()).digest()[:4], "big")

  def text(self, index: int) -> str:
    ex = self[index]
    return ex.prompt + ex.answer

  def _draw(self, rng: np.random.Generator) -> tuple[Example, str]:
    raise NotImplementedError


class Arithmetic(Task):
  name = "arithmetic"

  def __init__(self, split: str, digits: int = 3):
    if not 1 <= digits <= 9:
      raise ValueError(f"synthetic:arithmetic/{digits}: digits must be 1..9.")
    self.digits = digits
    super().__init__(split)

  def __repr__(self):
    return f"Arithmetic(digits={self.digits})"

  def _draw(self, rng):
    a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, self.digits + 1)))) for _ in range(2))
    return Example(f"{a}+{b}=", str(a + b)), f"{a}+{b}"


class Lego(Task):
  name = "lego"
  num_skills = LEGO_K

  def __init__(self, split: str, skill: int | None = None, k: int = LEGO_K):
    if skill is not None and not 0 <= skill < k:
      raise ValueError(f"synthetic:lego/{skill}: the skill is a chain depth in 0..{k - 1}.")
    self.skill, self.k = skill, k
    super().__init__(split)

  def __repr__(self):
    return f"Lego(skill={self.skill}, k={self.k})"

  def _draw(self, rng):
    k = self.k
    values = rng.integers(0, 2, k)
    names = [_LEGO_VARS[i] for i in rng.permutation(len(_LEGO_VARS))[:k]]
    clauses = [f"{names[0]}=val {values[0]}"]  # path graph: variable i's parent is i−1
    for i in range(1, k):
      clauses.append(f"{names[i]}={'val' if values[i] == values[i - 1] else 'not'} {names[i - 1]}")
    order = rng.permutation(k)
    skill = int(self.skill if self.skill is not None else rng.integers(0, k))
    prompt = "Input: " + ", ".join(clauses[j] for j in order) + f". Output: {names[skill]}=val "
    return Example(prompt, str(int(values[skill])), skill), prompt


def resolve(prompt: str) -> int:
  """Solves a LEGO prompt by following the clauses (a reference solver, for tests)."""
  body, _, query = prompt.partition(". Output: ")
  rules = dict(c.split("=", 1) for c in body[len("Input: "):].split(", "))
  var = query.split("=")[0]

  def value(v):
    op, arg = rules[v].split(" ")
    if op == "val" and arg in "01":
      return int(arg)
    parent = value(arg)
    return parent if op == "val" else 1 - parent

  return value(var)


def load(name: str, arg: str, split: str) -> Task:
  """The task `synthetic:<name>[/<arg>]` for `split` ("train" | "validation")."""
  if name == "arithmetic":
    return Arithmetic(split, int(arg) if arg else 3)
  if name == "lego":
    if arg and not arg.isdigit():
      raise ValueError(f"synthetic:lego/{arg}: write synthetic:lego/<skill> with skill in 0..{LEGO_K - 1}.")
    return Lego(split, int(arg) if arg else None)
  raise ValueError(f"Unknown task {name!r}; tasks: {sorted(TASKS)}.")


TASKS = ("arithmetic", "lego")


def is_task(spec: str) -> bool:
  """Whether a single-part source spec names a procedural task (`synthetic:arithmetic`, ...)."""
  scheme, _, rest = spec.partition(":")
  return scheme == "synthetic" and rest.split("/")[0].split("?")[0] in TASKS


def from_spec(spec: str, split: str) -> Task:
  _, _, rest = spec.partition(":")
  name, _, arg = rest.partition("/")
  return load(name, arg, "validation" if split in ("validation", "test") else split)


class TaskText(Sequence):
  """The task's examples as text documents (prompt + answer)."""

  def __init__(self, task: Task):
    self.task = task

  def __len__(self):
    return len(self.task)

  def __getitem__(self, index: int) -> str:
    return self.task.text(index)
