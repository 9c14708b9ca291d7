"""`python -m paperjax.papers`: the table of implemented papers, generated from the code.

Status: `reproduced` / `not reproduced` from the committed result.json, `implemented` when the claim
has not been run yet. `--markdown` prints the README's table.
"""

import sys

from paperjax import registry, reproduce


def rows() -> list[dict]:
  out = []
  for slug in registry.slugs():
    info = registry.module(slug).PAPER
    res = reproduce.load_result(slug)
    if res is None:
      status, claim = "implemented", "(not run yet)"
    else:
      status = "reproduced" if res["passed"] else "not reproduced"
      claim = res["claim"]
    out.append(dict(slug=slug, title=info.title, family=info.family, status=status, claim=claim, url=info.url))
  return out


def main(argv) -> None:
  table = rows()
  if "--markdown" in argv:
    print("| slug | paper | family | status | toy claim |")
    print("|---|---|---|---|---|")
    for r in table:
      print(f"| `{r['slug']}` | [{r['title']}]({r['url']}) | {r['family']} | {r['status']} | {r['claim']} |")
    return
  w = max([len(r["slug"]) for r in table] + [4])
  print(f"{'slug':<{w}}  {'status':<15} {'family':<14} title / claim")
  for r in table:
    print(f"{r['slug']:<{w}}  {r['status']:<15} {r['family']:<14} {r['title']}")
    print(f"{'':<{w}}  {'':<15} {'':<14} claim: {r['claim']}")


if __name__ == "__main__":
  main(sys.argv[1:])
