"""RS2 (Okanovic et al., 2024): a fresh random 10% subset every round, without replacement across rounds.

Presets (`--config=configs/rs2.py:<preset>[,fraction=0.1,rounds=100,seed=0]`); every one trains the
same MLP for the same number of steps (rounds × k/B), so they compare at equal steps:

  tiny             (default) RS2 without replacement on `builtin:digits` (1,437 train / 360 test 8x8
                   digits): r = 10% (k = 144), batch 48 → 3 steps per round, 100 rounds = 300 steps,
                   MLP 64→128→10, Adam; evaluates every 15 steps and reports the time to 90% accuracy:
                     python -m paperjax.main --config=configs/rs2.py
                   Expect (~30 s on 2 CPU cores): ≈ 0.95 test accuracy, 90% reached in ~100 steps.
  rs2_replacement  an independent random 10% subset per round
  static_random    one random 10% subset, fixed (the "prune once" baseline)
  el2n             the 10% with the highest EL2N after a 20-step proxy on the full data (stages
                   proxy → train; the proxy's time counts as selection cost), fixed
  kcenter          k-center greedy on pixels, 10%, fixed
  full             every example (the same number of steps: ≈ 10 epochs)
                     python -m paperjax.main --config=configs/rs2.py:static_random
                   Expect: static subsets plateau lower (≈ 0.85–0.9); full ≈ RS2. See
                   paperjax/papers/rs2/result.json (`python -m paperjax.reproduce rs2`, 3 seeds).
  cifar10          the paper's CIFAR-10 setting: ResNet-18, r = 10%, 200 rounds, batch 128, SGD
                   momentum 0.9 lr 0.1 cosine, wd 5e-4, `tfds:cifar10` (prepare it with tfds first);
                   one GPU (A100/H100), ~15 min:
                     python -m paperjax.main --config=configs/rs2.py:cifar10 --workdir=runs/rs2_cifar10
                   Expect (paper, Table 1): ≈ 87% at r = 10% per round (unverified in this codebase).
"""

from paperjax import config_lib, selection

PRESETS = ("tiny", "rs2_replacement", "static_random", "el2n", "kcenter", "full", "cifar10")


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("rs2")
  c.preset = preset
  fraction = float(kv.pop("fraction", 0.1))
  rounds = int(kv.pop("rounds", 200 if preset == "cifar10" else 100))
  c.model = dict(kind="mlp", hidden=(128,), num_classes=10)
  c.data.update(batch_size=48)
  n_train = 1437
  k = int(round(fraction * n_train))
  round_steps = max(1, k // 48)
  kind = {"tiny": "rs2", "cifar10": "rs2"}.get(preset, preset)
  c.selection = selection.config_block(kind=kind, fraction=fraction, round_steps=round_steps, seed=0)
  c.optimizer.update(lr=1e-2, warmup_steps=10, weight_decay=1e-4)
  c.train.update(steps=rounds * round_steps, log_every=30, eval_every=15, target_metric="accuracy", target_value=0.9)
  if preset == "el2n":
    c.stages = selection.proxy_stages(20, "el2n")

  if preset == "cifar10":
    n_train, bs = 50_000, 128
    c.data.update(source="tfds:cifar10", batch_size=bs)
    c.model = dict(kind="resnet", depth=18, width=1.0, base_channels=64, stem="cifar", num_classes=10)
    round_steps = int(round(fraction * n_train)) // bs
    c.selection.round_steps = round_steps
    c.optimizer.update(name="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, warmup_steps=0)
    c.train.update(steps=rounds * round_steps, log_every=100, eval_every=round_steps * 10, ckpt_every=2000,
                   target_value=0.85)
    c.eval.update(batch_size=1000)

  return selection.apply_args(c, kv, f"configs/rs2.py:{arg}", "fraction=, rounds=, ")
