"""Values as Hydra override text that parses back to exactly the same value.

One writer for every command line we print or compose: a sweep trial's overrides, the
``reproduce`` command of a study, and ``vae-reproduce --print-command``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException

_PARSER = OverridesParser.create()


def format_value(value: Any, *, interpolate: bool = False) -> str:
    """Override text that Hydra parses (and OmegaConf resolves) back to exactly ``value``.

    ``None`` is ``null``, lists ``[a,b]``, floats the shortest text that round-trips; strings
    stay bare unless Hydra's grammar would read them as something else. A literal ``${`` is
    escaped so it is not taken for an interpolation, unless ``interpolate`` (a study's search
    space may name another config value on purpose).
    """
    return _format(value, in_list=False, interpolate=interpolate)


def _format(value: Any, *, in_list: bool, interpolate: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(int(value))
    if isinstance(value, float):
        return repr(float(value))  # 1e-10, 0.1, inf, nan: all read back; float() also for numpy floats
    if isinstance(value, str):
        return _format_string(value, in_list=in_list, interpolate=interpolate)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_format(item, in_list=True, interpolate=interpolate) for item in value) + "]"
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(f"{key}:{_format(item, in_list=True, interpolate=interpolate)}" for key, item in value.items())
            + "}"
        )
    raise TypeError(f"config values are YAML data (null, bool, number, string, list, mapping), got {value!r}")


def _format_string(value: str, *, in_list: bool, interpolate: bool) -> str:
    text = value if interpolate else value.replace("${", "\\${")  # OmegaConf reads \${ as a literal ${
    if text and _reads_back(text, in_list=in_list):
        return text
    # In a quoted value a backslash escapes only a quote or the backslashes before one (Hydra's grammar).
    return "'" + re.sub(r"(\\*)('|$)", lambda match: match.group(1) * 2 + ("\\'" if match.group(2) else ""), text) + "'"


def _reads_back(text: str, *, in_list: bool) -> bool:
    """Hydra parses ``text`` (alone, or as a list item) to this very string."""
    try:
        override = _PARSER.parse_overrides([f"key=[{text}]" if in_list else f"key={text}"])[0]
    except OverrideParseException:
        return False
    parsed = override.value()
    if in_list:
        return isinstance(parsed, list) and len(parsed) == 1 and parsed[0] == text and isinstance(parsed[0], str)
    return not override.is_sweep_override() and isinstance(parsed, str) and parsed == text
