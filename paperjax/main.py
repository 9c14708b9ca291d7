"""paperjax entry point: `python -m paperjax.main --config=configs/ul2.py [--workdir=runs/ul2]`.

Every field can be overridden (`--config.optimizer.lr=1e-3`); presets are picked with
`--config=configs/ul2.py:base`. Running the same command again resumes from the newest checkpoint.
"""

import os
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "A paper's config file, e.g. configs/ul2.py[:preset].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where metrics and checkpoints go (default runs/<method>).")
_RESTART = flags.DEFINE_bool("restart", False, "Move the workdir's checkpoints aside and start over.")
_COORD = flags.DEFINE_string("coordinator_address", os.environ.get("PAPERJAX_COORDINATOR"),
                             "host:port of process 0, for multi-process runs without auto-detection.")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes of a multi-process run.")
_PID = flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
_XLA_FLAGS = flags.DEFINE_string("xla_flags", "none", "A named XLA flag set from paperjax/xla_flags.py "
                                  "(e.g. tuned), added to XLA_FLAGS before the backend starts.")
_DEBUG = flags.DEFINE_bool("debug", bool(os.environ.get("PAPERJAX_DEBUG")), "Show full tracebacks.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments {argv[1:]}; pass settings as --config.<key>=<value>.")
  config = _CONFIG.value
  if config is None:
    raise app.UsageError("No config given; run with --config=configs/<slug>.py (for example configs/ul2.py).")
  try:
    config.method  # noqa: B018 — config_flags reports a file that failed to load on first access
  except OSError as e:
    path = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--config=")), "?")
    reason = "no such file" if "No such file" in str(e) else str(e).strip().splitlines()[-1].strip()
    _fail(f"Cannot load the config file {path!r} ({reason}); pass --config=configs/<slug>.py (see ls configs/).")
  from paperjax import distributed, errors, xla_flags
  with errors.one_sentence(debug=_DEBUG.value):
    xla_flags.apply(_XLA_FLAGS.value)  # before the backend starts (the config was only parsed)
    distributed.initialize(_COORD.value, _NPROC.value, _PID.value)  # before any other JAX call
    from paperjax import train  # imported late so --help stays fast
    workdir = _WORKDIR.value or os.path.join("runs", config.method)
    logging.set_verbosity(logging.WARNING)
    train.run(config, workdir, restart=_RESTART.value)


def parse_flags(argv):
  """absl's parser, with config mistakes turned into one sentence naming the key."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(_flag_error_sentence(str(e)))
  except OSError as e:  # the config file itself (missing, unreadable) while applying overrides
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "?")
    _fail(f"Cannot load the config file {path!r} ({'no such file' if 'No such file' in str(e) else e}); "
          "pass --config=configs/<slug>.py (see ls configs/).")
  except (AttributeError, KeyError) as e:  # an unknown --config.<key>
    missing = re.search(r"'([^'\\]+)", str(e))
    keys = [a.split("=")[0][len("--config."):] for a in argv[1:] if a.startswith("--config.")]
    key = next((k for k in keys if missing and missing.group(1) in k.split(".")), missing.group(1) if missing else "")
    guess = re.search(r'Did you mean "([^"]+)"', str(e))
    hint = f" (did you mean {guess.group(1)!r}?)" if guess else ""
    _fail(f"Unknown config key {key!r}{hint}; the config file lists every field, override them as --config.<key>=<value>.")


def _flag_error_sentence(text: str) -> str:
  """absl wraps errors from loading a config file in a multi-line traceback; keep the sentence."""
  m = re.search(r"(?:ValueError|KeyError|TypeError): (.+)", text)
  if m:
    return m.group(1).strip()
  m = re.search(r"--config=(\S+)", text) or re.search(r"Attempted \[.*?\]:\s+(\S+)", text)
  if "No such file" in text and m:
    return f"Cannot read the config file {m.group(1)!r}: no such file; pass --config=configs/<slug>.py (ls configs/)."
  first = text.strip().splitlines()[0]
  return f"{first}. Fix the value on the command line (the config file shows each field's type)."


def _fail(msg: str):
  print(f"paperjax: error: {msg}", file=sys.stderr, flush=True)
  sys.exit(2)


def cli():
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  cli()
