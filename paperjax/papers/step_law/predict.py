"""`python -m paperjax.papers.step_law.predict --N=<non-embedding params> --D=<tokens> [--seq_len=2048]`:
Step Law's optimal peak learning rate and batch size (tokens, and sequences of `seq_len`)."""

from __future__ import annotations

import json

from absl import app, flags

from paperjax.papers.step_law import method

_N = flags.DEFINE_float("N", None, "Non-embedding parameters of the model.", required=True)
_D = flags.DEFINE_float("D", None, "Training tokens.", required=True)
_SEQ = flags.DEFINE_integer("seq_len", 2048, "Sequence length, to express the batch in sequences.")


def main(argv):
  del argv
  from paperjax import errors
  with errors.one_sentence():
    out = method.predict(_N.value, _D.value)
  out["batch_sequences"] = out["batch_tokens"] / _SEQ.value
  print(json.dumps({"N": _N.value, "D": _D.value, **out}))


if __name__ == "__main__":
  app.run(main)
