"""Hydra's errors, reported our way: a config file that is not YAML (or not UTF-8) in one line
naming the file and line, and everything else handed back to Hydra's own report.

Hydra wraps errors it meets while composing in a long traceback; ``vae-train`` (vae_sweep/cli.py)
catches them with ``HYDRA_FULL_ERROR=1`` and uses these helpers to tell them apart.
"""

from __future__ import annotations

from types import TracebackType

import yaml


def frames_below(traceback: TracebackType | None, function: str) -> TracebackType | None:
    """The traceback from the frame called by ``function`` down (all of it if ``function`` is not in it),
    so that Hydra, reporting it again, finds its ``run_job`` frame as near the top as the first time."""
    entry = traceback
    while entry is not None and entry.tb_frame.f_code.co_name != function:
        entry = entry.tb_next
    return entry.tb_next if entry is not None else traceback


def config_file_error(error: Exception) -> str | None:
    """One line for a config file that is not valid YAML or not UTF-8 text; None for any other error."""
    if isinstance(error, yaml.YAMLError):
        return yaml_error_text(error)
    path = config_file_of(error.__traceback__)
    if isinstance(error, UnicodeDecodeError) and path is not None:
        return f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8"
    return None


def config_file_of(traceback: TracebackType | None) -> str | None:
    """The config file Hydra's config source was loading when ``traceback`` was raised, if it was."""
    path = None
    while traceback is not None:
        frame = traceback.tb_frame
        if frame.f_code.co_name == "load_config":
            path = frame.f_locals.get("full_path") or frame.f_locals.get("config_path") or path
        traceback = traceback.tb_next
    return None if path is None else str(path)


def reraise(error: BaseException) -> None:
    raise error


def yaml_error_text(error: yaml.YAMLError) -> str:
    """``path, line L, column C: not valid YAML: <what the parser expected>``."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return f"a config file is not valid YAML: {' '.join(str(error).split())}"
    mark = error.context_mark or error.problem_mark  # where the broken construct starts
    what = "; ".join(str(part) for part in (error.context, error.problem) if part)
    if error.context_mark is not None and error.context_mark.line != error.problem_mark.line:
        what += f" (line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1})"
    return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {what}; fix the file"
