"""`paperjax.reproduce` records what happened, including failures; UL2's claim judge by hand."""

import json

from paperjax import reproduce
from paperjax.papers.ul2 import claim


def test_record_has_the_required_fields(tmp_path, monkeypatch):
  monkeypatch.setattr(claim, "run", lambda seeds, workdir: {"passed": False, "metrics": {"x": 1.0}, "analysis": "why"})
  out = tmp_path / "result.json"
  rec = reproduce.reproduce("ul2", [0, 1], out=str(out))
  saved = json.loads(out.read_text())
  assert saved == rec
  assert {"slug", "claim", "passed", "metrics", "seeds", "wall_s"} <= set(saved)
  assert saved["passed"] is False and saved["seeds"] == [0, 1] and saved["analysis"] == "why"


def _res(ul2, span, causal, nlu):
  mk = lambda v, s=None: {"infill": [v[0]] * 3, "suffix": [v[1]] * 3, "suffix_as_NLU": s or []}
  return {"ul2": mk(ul2, nlu), "span": mk(span), "causal": mk(causal)}


def test_judge_pareto_and_mode_switching():
  # Span better on infill only, causal better on suffix only: not dominated; [NLU] worse on S.
  ok = claim.judge(_res((2.0, 2.0), (1.9, 2.5), (4.0, 1.9), [2.1, 2.2, 2.05]))
  assert ok["passed"] and ok["metrics"]["dominated_by"] == []
  # Span beats UL2 by >5% on both tasks: dominated.
  dom = claim.judge(_res((2.0, 2.0), (1.8, 1.8), (4.0, 2.1), [2.1, 2.2, 2.05]))
  assert not dom["passed"] and dom["metrics"]["dominated_by"] == ["span"]
  # Better on both but by less than 5%: not dominated in the claim's sense.
  close = claim.judge(_res((2.0, 2.0), (1.95, 1.95), (4.0, 2.1), [2.1, 2.2, 2.05]))
  assert close["passed"]
  # The mismatched mode token is not worse on one seed: mode switching not shown.
  mode = claim.judge(_res((2.0, 2.0), (1.9, 2.5), (4.0, 1.9), [2.1, 1.99, 2.05]))
  assert not mode["passed"]
