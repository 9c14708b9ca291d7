"""User-facing errors: one clear sentence and a non-zero exit, never a traceback wall.

Errors meant for the user are raised as ValueError / FileNotFoundError / PermissionError with a
sentence that says what is wrong and how to fix it; `one_sentence` prints that sentence alone
(set PAPERJAX_DEBUG=1 or --debug for the traceback).
"""

import contextlib
import sys

class NonFiniteLossError(RuntimeError):
  """The loss became NaN/inf: the run stops at that step and keeps its last good checkpoint."""


USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, KeyError, TypeError, NonFiniteLossError)


@contextlib.contextmanager
def one_sentence(debug: bool = False):
  try:
    yield
  except USER_ERRORS as e:
    if debug:
      raise
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    print(f"paperjax: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)
