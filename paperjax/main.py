"""paperjax entry point: `python -m paperjax.main --config=configs/ul2.py [--workdir=runs/ul2]`.

Every field can be overridden (`--config.optimizer.lr=1e-3`); presets are picked with
`--config=configs/ul2.py:base`. Running the same command again resumes from the newest checkpoint.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "A paper's config file, e.g. configs/ul2.py[:preset].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where metrics and checkpoints go (default runs/<method>).")
_RESTART = flags.DEFINE_bool("restart", False, "Move the workdir's checkpoints aside and start over.")
_DEBUG = flags.DEFINE_bool("debug", bool(os.environ.get("PAPERJAX_DEBUG")), "Show full tracebacks.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; pass settings as --config.<key>=<value>.")
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("No config given; run with --config=configs/<slug>.py (for example configs/ul2.py).")
  from paperjax import errors, train  # imported late so --help stays fast
  workdir = _WORKDIR.value or os.path.join("runs", config.method)
  logging.set_verbosity(logging.WARNING)
  with errors.one_sentence(debug=_DEBUG.value):
    train.run(config, workdir, restart=_RESTART.value)


def cli():
  app.run(main)


if __name__ == "__main__":
  cli()
