"""Resumable training: Orbax checkpoints of one program's training state.

A checkpoint holds the state of every run of a program (any pytree of arrays: a stacked
:class:`~jaxmmcl.training.TrainState`, or one state per device; PRNG keys are stored as their
raw data) (sharded arrays are written shard by
shard, by every process that holds them) and the loss history, ``(R, chunks)`` with NaN for the
chunks not yet trained, in one Orbax item; its step is the number of optimiser steps taken.
Orbax finalises a checkpoint by renaming a temporary folder, so a kill during a save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxmmcl import interrupts


class Checkpoint(Protocol):
    """What a training loop needs of a checkpoint store (:class:`GroupCheckpoint` is one)."""

    def restore(self, like: Any, history_like: np.ndarray) -> tuple[Any, np.ndarray] | None: ...

    def maybe_save(
        self, step: int, state: Any, history: np.ndarray, *, force: bool = False
    ) -> bool: ...


def _is_key(x) -> bool:
    return isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _raw(state):
    """``state`` with its PRNG keys as their raw ``uint32`` data (what Orbax can store)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def _wrapped(raw, like):
    """The inverse of :func:`_raw`: the leaves that are keys in ``like`` wrapped back."""
    return jax.tree.map(lambda x, y: jax.random.wrap_key_data(x) if _is_key(y) else x, raw, like)


class GroupCheckpoint:
    """Saves and restores one group's training state in ``directory``.

    Args:
      directory: the group's checkpoint folder (created on first save).
      every_seconds: minimum wall time between two saves; ``0`` saves after every chunk.
    """

    def __init__(self, directory: str | Path, every_seconds: float):
        self._every_seconds = every_seconds
        self._directory = Path(directory).absolute()
        self._last = time.monotonic()
        self._manager = ocp.CheckpointManager(
            self._directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False),
        )

    def restore(self, like, history_like: np.ndarray) -> tuple[object, np.ndarray] | None:
        """The newest checkpoint with the shapes and shardings of ``like``, or None.

        Returns:
          ``(state, loss_history)``, history shaped like ``history_like``.
        """
        step = self._manager.latest_step()
        if step is None:
            return None
        target = {
            "state": jax.tree.map(ocp.utils.to_shape_dtype_struct, _raw(like)),
            "history": history_like,
        }
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
        return _wrapped(restored["state"], like), np.asarray(restored["history"])

    def maybe_save(self, step: int, state, history: np.ndarray, *, force: bool = False) -> bool:
        """Saves when ``every_seconds`` have passed since the last save (or when forced).

        Blocks until the checkpoint is complete: the next chunk donates the state's buffers.
        """
        if not force and time.monotonic() - self._last < self._every_seconds:
            return False
        item = {"state": _raw(state), "history": np.asarray(history)}
        try:
            # A signal waits for the save to finish: stopped halfway, Orbax's helper threads
            # outlive it and print tracebacks of their own.
            with interrupts.deferred():
                self._manager.save(step, args=ocp.args.StandardSave(item), force=True)
                self._manager.wait_until_finished()
        except (OSError, ValueError) as err:
            # TensorStore reports a full disk as ValueError("RESOURCE_EXHAUSTED: ..."); the
            # unfinished save is a temporary folder that Orbax ignores on restore.
            text = str(err).splitlines()[0] if str(err) else type(err).__name__
            if isinstance(err, ValueError) and not _is_storage_error(text):
                raise
            raise OSError(
                f"cannot write a checkpoint into {str(self._directory)!r} ({text})"
            ) from None
        self._last = time.monotonic()
        return True

    def close(self) -> None:
        """Releases Orbax's resources."""
        self._manager.close()


_STORAGE_CODES = ("RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "UNAVAILABLE", "DATA_LOSS")


def _is_storage_error(text: str) -> bool:
    """Whether a TensorStore error message reports the storage failing (not a bug of ours)."""
    return text.startswith(_STORAGE_CODES) or "No space left" in text
