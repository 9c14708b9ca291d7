"""FedOpt (Reddi et al., ICLR 2021): FedAvg's clients with an adaptive server optimizer — FedAdam here.

The server treats the weighted mean client update Δ as a pseudo-gradient and applies Adam to it
(β1 = 0.9, β2 = 0.99, ε = τ = 1e-3 as in the paper's FedAdam; server lr 0.03 is a toy choice from the
paper's grid of 10^{-2.5}…10^{-1}). FedAvg (`configs/fedavg.py`) is the same rule with server SGD, lr 1;
DiLoCo (`configs/diloco.py`) with server Nesterov SGD. The FedAvg claim is `python -m paperjax.reproduce fedopt`.

Presets:
  tiny   (default) the FedAvg tiny setting (digits, 20 Dirichlet-0.5 clients, 5 per round, 5 local SGD
         steps) with FedAdam on the server, 60 rounds, offline:
           python -m paperjax.main --config=configs/fedopt.py
         Expect: ~15 s on 2 cores; held-out accuracy ≈ 0.9.
  emnist FedJAX's EMNIST-62 recipe shape with FedAdam (one GPU or a v5e-8):
           python -m paperjax.main --config=configs/fedopt.py:emnist --workdir=runs/fedadam-emnist
"""

from configs import fedavg

PRESETS = fedavg.PRESETS


def get_config(arg: str | None = None):
  c = fedavg.get_config(arg)
  c.optimizer.update(name="adam", lr=0.03, b1=0.9, b2=0.99, eps=1e-3, schedule="constant", warmup_steps=0)
  return c
