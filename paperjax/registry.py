"""Papers are found by import path: `config.method = "ul2"` imports `paperjax.papers.ul2.method`.

No hand-edited table and no registration by side effect: the list of papers is the list of
`paperjax/papers/<slug>/method.py` files.
"""

from __future__ import annotations

import difflib
import importlib
import pathlib

PAPERS_DIR = pathlib.Path(__file__).parent / "papers"


def slugs() -> list[str]:
  return sorted(p.parent.name for p in PAPERS_DIR.glob("*/method.py"))


def _check(slug: str) -> None:
  if slug not in slugs():
    close = difflib.get_close_matches(slug, slugs(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"Unknown paper {slug!r}: there is no paperjax/papers/{slug}/method.py.{hint} "
                     f"Known papers: {', '.join(slugs())}.")


def module(slug: str):
  _check(slug)
  return importlib.import_module(f"paperjax.papers.{slug}.method")


def make(config, ctx):
  return module(config.method).make(config, ctx)


def resolve(path: str):
  """'package.module:attr' → the object (for evaluators, optimizers, models named in configs)."""
  mod, _, attr = path.partition(":")
  obj = importlib.import_module(mod)
  for part in attr.split(".") if attr else []:
    obj = getattr(obj, part)
  return obj
