#!/usr/bin/env bash
# Multi-node GPU training under SLURM: one process per node, all GPUs of a node in that process.
#
# Assumes: a shared filesystem holding this checkout, an environment with `pip install -e .[gpu]` (`.[gpu-cuda13]` on CUDA 13 drivers)
#          done (activate it in ENV_SETUP), and datasets prepared under TFDS_DATA_DIR.
# Usage:   sbatch --nodes=4 --gpus-per-node=8 launch/slurm.sh --config=configs/ul2.py:large --workdir=/shared/runs/ul2-large
#          (or `srun`-less: bash launch/slurm.sh ... inside an salloc allocation)
# jax.distributed.initialize() reads SLURM's variables (SLURM_JOB_ID, SLURM_NTASKS, node list) itself,
# so every task runs the identical command. On preemption/timeouts SLURM sends SIGTERM first
# (--signal=TERM@120 below): the run saves a checkpoint and exits 0; resubmitting resumes it.
#SBATCH --job-name=paperjax
#SBATCH --ntasks-per-node=1
#SBATCH --exclusive
#SBATCH --signal=TERM@120
#SBATCH --output=paperjax-%j.log
set -euo pipefail
${ENV_SETUP:-true}
# The XLA flags that matter on GPUs live in one place (paperjax/xla_flags.py, measured in notes/perf.md).
export XLA_FLAGS="$(python -c 'from paperjax import xla_flags; print(xla_flags.apply("tuned"))')"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
srun --kill-on-bad-exit=1 python -m paperjax.main "$@"
