"""DCC (Lee et al., 2022): dataset condensation by matching the all-class gradient of the whole
synthetic set (contrastive signal), after a class-wise DC warm-up.

Presets (`--config=configs/dcc_contrastive.py:<preset>[,ipc=1,distractor=0.0,seed=0]`):

  tiny        (default) DCC on `builtin:digits`: 1 synthetic image per class initialised from real
              ones, 100 outer iterations (fresh 2×16-channel ConvNet each), real batch 128, warm-up 25
              iterations of class-wise DC; evaluation = 5 fresh nets × 300 SGD steps on the 10 images:
                python -m paperjax.main --config=configs/dcc_contrastive.py
              Expect (~30 s): ≈ 0.5–0.6 test accuracy from 10 images (see result.json, 3 seeds).
  dc          the class-wise DC baseline (same loop, `dcc.rule=dc`)
                python -m paperjax.main --config=configs/dcc_contrastive.py:dc,distractor=0.4
  cifar10     the paper's CIFAR-10 ipc=10 setting: 3×128 ConvNet, 1,000 outer iterations,
              (outer_loop, inner_loop) = (10, 50), warm-up 250/10, `tfds:cifar10` prepared beforehand;
              one GPU (A100/H100), ~2 h:
                python -m paperjax.main --config=configs/dcc_contrastive.py:cifar10 --workdir=runs/dcc_cifar10
              Expect (paper, Table 1): ≈ 49% (DC ≈ 44.9%) (unverified in this codebase).
"""

from paperjax import config_lib

PRESETS = ("tiny", "dc", "cifar10")
LOOPS = {1: (1, 1), 5: (5, 25), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


def get_config(arg: str | None = None):
  preset, kv = config_lib.parse_arg(arg, PRESETS)
  c = config_lib.vision("dcc_contrastive")
  c.preset = preset
  ipc = int(kv.pop("ipc", 1 if preset != "cifar10" else 10))
  if ipc not in LOOPS:
    raise ValueError(f"ipc={ipc} has no (outer_loop, inner_loop); use one of {sorted(LOOPS)}.")
  outer_iters = int(kv.pop("iters", 100 if preset != "cifar10" else 1000))
  outer_loop, inner_loop = LOOPS[ipc]
  c.model.update(kind="cnn", channels=(16, 16), dense_dim=0, norm="group", num_classes=10)
  c.data.update(batch_size=128 if preset != "cifar10" else 256)
  c.dcc = dict(rule="dc" if preset == "dc" else "dcc", ipc=ipc, outer_loop=outer_loop, inner_loop=inner_loop,
               outer_warmup=outer_iters // 4, inner_warmup=10, net_lr=0.01, distractor=float(kv.pop("distractor", 0.0)),
               eval_steps=300, eval_lr=0.01, eval_nets=5)
  c.optimizer.update(name="sgd", lr=0.1, momentum=0.5, schedule="constant", warmup_steps=0, clip_norm=0.0,
                     weight_decay=0.0)
  c.train.update(steps=outer_iters * outer_loop, log_every=50, eval_every=0)
  if preset == "cifar10":
    c.data.update(source="tfds:cifar10")
    c.model.update(channels=(128, 128, 128))
    c.dcc.update(eval_steps=1000, eval_nets=5)
    c.train.update(log_every=100, ckpt_every=1000)
  return config_lib.apply_common_args(c, kv, f"configs/dcc_contrastive.py:{arg}", "ipc=, iters=, distractor=, ")
