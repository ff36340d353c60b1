"""Every error vae-sweep raises on purpose, under one base class.

Library code raises these; only ``vae_sweep/cli.py`` turns them into one ``<program>: error:``
line and an exit code (its ``EXIT_CODES``). The kinds that stop a command are ``ConfigError``,
``DataError`` and ``UsageError`` (the input cannot be used, exit code 2), ``SweepFailed`` (the
work could not be done, exit code 1) and ``SweepInterrupted`` (a signal, exit code 130). The
others travel between the training loop, tracking and the sweep and never reach a user.
"""

from __future__ import annotations

import errno


class VaeSweepError(Exception):
    """Base of every error vae-sweep raises itself."""


class ConfigError(VaeSweepError, ValueError):
    """A config value is unknown, of the wrong type or out of range.

    ``key`` is the dotted config key (``optimizer.lr``) so the message tells the user
    exactly what to fix; groups prefix their name while the error travels outwards.
    """

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)

    def within(self, group: str) -> ConfigError:
        """The same error with ``group.`` in front of its key."""
        return ConfigError(f"{group}.{self.key}" if self.key else group, self.message)


class DataError(VaeSweepError, RuntimeError):
    """A data set is missing, corrupt or fails its checksum."""


class UsageError(VaeSweepError, ValueError):
    """A reading command (vae-compare, vae-reproduce) cannot use what it was given: an unknown
    study, run, key or metric, an unreachable store, a run that cannot be re-run here."""


class SweepFailed(VaeSweepError, RuntimeError):
    """The sweep ended without a usable result: every trial failed, too many did, its workers
    could not finish any, or the disk is full. The results written so far are kept."""


class SweepInterrupted(VaeSweepError):
    """A signal stopped the sweep; the message is the one line that says how to go on (the study
    is whole, so the same command resumes it)."""


class TrainingDiverged(VaeSweepError, RuntimeError):
    """The loss became NaN, infinite or absurdly large; the run is recorded as failed with
    ``reason`` (``nan_loss``) and ``detail`` saying which metric did what."""

    def __init__(self, reason: str, epoch: int, detail: str = "", metrics: dict[str, float] | None = None) -> None:
        self.reason = reason
        self.epoch = epoch
        self.detail = detail
        self.metrics = metrics or {}  # the failing epoch's metrics, so trackers can keep the curve
        super().__init__(f"training diverged at epoch {epoch}: {reason}" + (f" ({detail})" if detail else ""))


def require(condition: bool, key: str, message: str) -> None:
    """Raise ``ConfigError(key, message)`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)


class TrainingPruned(VaeSweepError, RuntimeError):
    """A pruner stopped the run after ``epoch``; its curves so far are kept."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"pruned at epoch {epoch}")


class TrialTakenOver(VaeSweepError, RuntimeError):
    """Another process failed this run's trial (its worker looked dead: paused past the heartbeat's
    grace period) and retries it; this run must stop and its result is not reported."""

    reason = "worker_died"


class DiskFull(VaeSweepError, RuntimeError):
    """A store or output folder ran out of space; ``where`` is the fullest folder in use."""

    def __init__(self, where: str, detail: str) -> None:
        self.where = where
        super().__init__(f"no space left on the disk holding {where} ({detail})")


def is_disk_full(error: BaseException | None) -> bool:
    """Whether ``error``, or an error that caused it, is a full disk: ENOSPC from the OS, or
    SQLite's "database or disk is full" (however SQLAlchemy, MLflow or Optuna wrapped it)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "database or disk is full" in str(error) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
