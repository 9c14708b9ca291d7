"""Host throughput of UL2's mixture of denoisers on one CPU core, per example and per batch.

  python -m paperjax.papers.ul2.bench_denoisers --raw_length=568 --inputs_length=512 \
      --targets_length=128 --batch=256 --seconds=5

Prints the length plan, then raw tokens/s (tokens of input chunks consumed) and used tokens/s
(the part of each chunk its denoiser corrupts; see `denoisers.plan_lengths`) for each path and
architecture. The process is pinned to one core, so the figures are per core. `--pipeline` adds
the trainer's whole grain iterator (`data.pipeline.make_iterator`: reading, batching, transform)
with the per-example `example_fn` and with the vectorised `batch_fn` that configs/ul2.py trains with,
and (encdec) that iterator packing the examples several to a row (`data.pack=True`; its figure is
the tokens in the packed rows per second, padding not counted).
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads
  os.environ.setdefault(_var, "1")

# pylint: disable=g-import-not-at-top,wrong-import-position
import argparse
import time

import numpy as np

from paperjax.papers.ul2 import denoisers


def _pin_to_one_core() -> str:
  if not hasattr(os, "sched_setaffinity"):
    return "not pinned (no sched_setaffinity on this OS)"
  core = min(os.sched_getaffinity(0))
  os.sched_setaffinity(0, {core})
  return f"pinned to core {core}"


def _timed(fn, seconds: float) -> tuple[int, float]:
  fn()  # warm-up
  calls, start = 0, time.perf_counter()
  while (elapsed := time.perf_counter() - start) < seconds:
    fn()
    calls += 1
  return calls, elapsed


def run(args) -> None:
  token_ids = denoisers.TokenIds(pad_id=0, eos_id=1, first_sentinel=args.vocab_size - args.num_sentinels,
                                 num_sentinels=args.num_sentinels, mode_ids={"[NLU]": 3, "[NLG]": 4, "[S2S]": 5})
  rng = np.random.default_rng(args.seed)
  tokens = rng.integers(6, token_ids.first_sentinel, size=(args.batch, args.raw_length)).astype(np.int32)
  print(f"UL2 mixture: raw_length={args.raw_length} inputs_length={args.inputs_length} "
        f"targets_length={args.targets_length} batch={args.batch}; {_pin_to_one_core()}")
  for arch in args.architectures.split(","):
    mix = denoisers.MixtureOfDenoisers(denoisers.UL2_DENOISERS, denoisers.UL2_RATES, token_ids,
                                       args.inputs_length, args.targets_length, args.raw_length, arch)
    print(f"\n[{arch}]\n{mix.length_report()}")
    used_per_row = float(np.dot(mix.rates, [p.raw_used for p in mix.plans]))  # expected, per example
    row = iter(range(1 << 62))
    paths = {"per-example": (lambda: mix(tokens[next(row) % args.batch], rng), 1),
             "batched": (lambda: mix.batch(tokens, rng), args.batch)}
    if args.pipeline:  # the trainer's own grain iterator (data/pipeline.py), one reader thread
      from paperjax.data import pipeline
      source = rng.integers(6, token_ids.first_sentinel, size=(8 * args.batch, args.raw_length)).astype(np.int32)
      for name, kw in (("grain per-example", dict(example_fn=mix)), ("grain batched", dict(batch_fn=mix.batch))):
        it = pipeline.make_iterator(source, global_batch_size=args.batch, seed=args.seed, num_threads=1, **kw)
        paths[name] = (lambda it=it: next(it), args.batch)
      if arch == "encdec":
        from paperjax.models.transformer import MAX_SEGMENTS  # the model's default cap, as the trainer packs
        it = pipeline.make_iterator(source, global_batch_size=args.batch, seed=args.seed, num_threads=1,
                                    batch_fn=mix.batch, pack=mix.packing(MAX_SEGMENTS))
        from paperjax.models.lm import real_tokens
        held = []

        def packed(it=it, held=held):
          b = next(it)
          held.append(real_tokens(b))
        calls, elapsed = _timed(packed, args.seconds)
        print(f"grain batched packed: {sum(held[1:]) / elapsed / 1e6:8.2f}M tokens/s in packed rows  "
              f"{1e3 * elapsed / calls:8.2f} ms/batch of {args.batch} rows, "
              f"{100 * np.mean(held) / (args.batch * (args.inputs_length + args.targets_length)):.1f}% of positions hold a token")
    for name, (fn, rows) in paths.items():
      calls, elapsed = _timed(fn, args.seconds)
      examples = calls * rows / elapsed
      print(f"{name:>12}: {examples * args.raw_length / 1e6:8.2f}M raw tokens/s  "
            f"{examples * used_per_row / 1e6:8.2f}M used tokens/s  {examples:10.0f} examples/s  "
            f"{1e3 * args.batch / examples:8.2f} ms/batch of {args.batch}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--raw_length", type=int, default=568)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=128)
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--seconds", type=float, default=5.0, help="per path and architecture")
  parser.add_argument("--architectures", default="encdec,decoder")
  parser.add_argument("--vocab_size", type=int, default=32_128)
  parser.add_argument("--num_sentinels", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--pipeline", action="store_true",
                      help="also time the trainer's grain iterator with each path (needs grain)")
  run(parser.parse_args(argv))


if __name__ == "__main__":
  main()
