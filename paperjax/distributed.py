"""Multi-process start-up: JAX's own runtime, initialised before any other JAX call.

  * explicit: --coordinator_address=host:port --num_processes=N --process_id=i (local multi-process
    runs, any cluster without auto-detection);
  * auto: Cloud TPU VMs (every worker runs the same command) and SLURM jobs with more than one task,
    where `jax.distributed.initialize()` finds the coordinator itself;
  * otherwise a single process, nothing to do.
On CPU the cross-process collectives use gloo, so multi-process code is tested for real on one machine.
"""

from __future__ import annotations

import os

import jax


def _auto_cluster() -> str | None:
  if os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "tpu" if ("," in hosts or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS")) else None
  if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and os.environ.get("SLURM_JOB_ID"):
    return "slurm"
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> str:
  """Start JAX's distributed runtime if this is a multi-process run. Returns how it was started."""
  explicit = coordinator_address or (num_processes or 1) > 1
  if explicit:
    if not coordinator_address or num_processes is None or process_id is None:
      raise ValueError("A multi-process run needs all of --coordinator_address=host:port, --num_processes and "
                       "--process_id (or none of them, on a TPU VM or under SLURM).")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} is outside [0, {num_processes}); number processes from 0.")
    if _cpu_only():  # (asking jax for its backend here would start the runtime too early)
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
    return "explicit"
  kind = _auto_cluster()
  if kind:
    jax.distributed.initialize()
    return kind
  return "single"


def _cpu_only() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms:
    return platforms.split(",")[0].strip() == "cpu"
  try:  # no accelerator plugin installed → CPU
    import importlib.util
    return not any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin", "jax_cuda13_plugin", "libtpu", "jax_rocm60_plugin"))
  except Exception:  # noqa: BLE001
    return False
