"""The papers: one folder each, `method.py` (+ `claim.py`, `result.json`). `python -m paperjax.papers` lists them."""
