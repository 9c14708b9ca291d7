"""Checkpoints: orbax over (train state, grain iterator state, config), saved asynchronously.

Resume order (written down because getting it wrong silently changes a run):
  1. read the config stored with the newest checkpoint and refuse to continue a different run;
  2. restore the train state into the shardings of *this* run's mesh (so a checkpoint written on one
     mesh restores on another);
  3. restore each process's grain iterator state, so the next batch is the one that would have come;
  4. the step counter lives in the state: logging, evaluation and schedules continue from it.
A checkpoint directory becomes visible to `latest_step` only once orbax has finalised it, so a run
killed mid-save resumes from the previous complete one. If the newest checkpoint cannot be read,
restore falls back to the one before it and says which step was skipped; nothing is deleted.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

# Settings that may change between a run and its resumption without changing what it computes.
# The mesh may change too: a checkpoint restores into any mesh (resharded by orbax).
RESUMABLE_KEYS = ("train.stop_at", "train.log_every", "train.eval_every", "train.ckpt_every",
                  "train.ckpt_every_s", "train.ckpt_keep", "train.progress", "train.profile_steps",
                  "train.peak_flops", "mesh", "axis_rules", "data.num_threads")
# Fields since removed from the code, with the value whose behaviour the code now always has: a run
# saved with that value resumes (another value refuses, as any changed field does).
RETIRED_KEYS = {"model.packed_guard": True}   # the packed path's selects are no longer optional


class ConfigMismatchError(ValueError):
  pass


def _flatten(d: Any, prefix: str = "") -> dict:
  if isinstance(d, dict):
    out = {}
    for k, v in d.items():
      out.update(_flatten(v, f"{prefix}{k}."))
    return out
  return {prefix[:-1]: d}


def config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort())


def config_diff(saved: dict, current: dict) -> list[str]:
  """The fields that differ, save the resumable ones, fields added to the code since the run was
  saved that are still off ("", 0, False, None: a new option at its default changes nothing), and
  retired fields saved at the value the code now always has (`RETIRED_KEYS`)."""
  a, b = _flatten(saved), _flatten(current)
  keys = sorted(set(a) | set(b))
  return [f"{k}: {a.get(k, '<absent>')!r} → {b.get(k, '<absent>')!r}" for k in keys
          if a.get(k) != b.get(k) and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)
          and not (k not in a and b[k] in ("", 0, False, None))
          and not (k not in b and k in RETIRED_KEYS and a[k] == RETIRED_KEYS[k])]


class Checkpointer:
  def __init__(self, directory: str, keep: int = 3, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                             create=True),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler(),
                       "config": ocp.JsonCheckpointHandler()})

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, data_iter, config, force: bool = False) -> bool:
    args = {"state": ocp.args.StandardSave(state), "config": ocp.args.JsonSave(config_dict(config))}
    if data_iter is not None:
      args["data"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**args), force=force)

  def saved_config(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

  def check_config(self, step: int, config) -> None:
    saved = None
    for s in [x for x in reversed(self.all_steps()) if x <= step]:
      try:
        saved, step = self.saved_config(s), s
        break
      except Exception:  # noqa: BLE001 — an unreadable config is handled like an unreadable state
        continue
    if saved is None:
      return
    diff = config_diff(saved, config_dict(config))
    if diff:
      raise ConfigMismatchError(
          f"The workdir already holds a run with a different config (checkpoint step {step} in "
          f"{self.directory}) — differences: {'; '.join(diff[:8])}{' …' if len(diff) > 8 else ''}. "
          "Use a new --workdir, or pass --restart to keep the old checkpoints aside and start over.")

  def has_data_state(self, step: int) -> bool:
    """Whether this process's iterator state exists (not when the process count changed)."""
    name = f"process_{jax.process_index()}-of-{jax.process_count()}.json"
    return os.path.exists(os.path.join(self.directory, str(step), "data", name))

  def restore(self, abstract_state, data_iter, step: int | None = None):
    """Restore the newest readable checkpoint (or `step`). Returns (step, state) or (None, None).

    The iterator is restored too when this process's saved state exists; the caller repositions it
    otherwise (a run resumed on a different number of processes)."""
    steps = [step] if step is not None else list(reversed(self.all_steps()))
    for s in steps:
      args = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iter is not None and self.has_data_state(s):
        args["data"] = grain.checkpoint.CheckpointRestore(data_iter)
      try:
        out = self.manager.restore(s, args=ocp.args.Composite(**args))
      except Exception as e:  # noqa: BLE001 — any unreadable checkpoint is skipped, never deleted
        logging.warning("Checkpoint at step %d in %s could not be restored (%s: %s); trying the one before it. "
                        "It is left on disk for inspection.", s, self.directory, type(e).__name__, str(e)[:200])
        continue
      return s, out["state"]
    return None, None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
