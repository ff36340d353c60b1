"""Did-you-mean: the allowed name closest to a misspelt one, for the messages that refuse a name.

``did_you_mean`` ends a message that refuses a value (``model.activation=relux``: did you mean
relu?). ``unknown_name_line`` reads Hydra's own refusal of a key or a config-group option that
does not exist and says it in one line, with the close match and what does exist: Hydra's
``To append to your config use +model.activaton=relu`` would only lead to the next refusal (each
option takes its own keys), so it is left out. Shared: nothing of ours is imported here.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError

# difflib's own default: 'adm' finds adam and 'activaton' activation, 'nope' finds nothing.
CUTOFF = 0.6


def close_match(name: object, allowed: Iterable[object]) -> str | None:
    """The allowed name closest to ``name``, or None when none is close enough to suggest.

    >>> close_match("adm", ["sgd", "adam", "adamw"])
    'adam'
    >>> close_match("swish", ["relu", "tanh"]) is None
    True
    """
    matches = difflib.get_close_matches(str(name), [str(each) for each in allowed], n=1, cutoff=CUTOFF)
    return matches[0] if matches else None


def did_you_mean(
    name: object, allowed: Iterable[object], *, spelled: str = "{}", before: str = "; ", after: str = ""
) -> str:
    """``"; did you mean X?"`` for the close match of ``name`` (written as ``spelled`` says), to
    end a message with (``before="", after=" "`` to put it ahead of a list); ``""`` when nothing
    allowed is close.

    >>> "got 'lnes'" + did_you_mean("lnes", ["auto", "bar", "lines", "off"])
    "got 'lnes'; did you mean lines?"
    """
    match = close_match(name, allowed)
    return "" if match is None else f"{before}did you mean {spelled.format(match)}?{after}"


def refusal(subject: str, problem: str, match: str | None, listing: str) -> str:
    """``subject: problem; did you mean match? (listing)``, without the question when there is no match."""
    question = f"; did you mean {match}?" if match else ""
    return f"{subject}: {problem}{question} ({listing})"


def unknown_name_line(error: BaseException, *, groups: Iterable[str] = ()) -> str | None:
    """One line for Hydra's refusal of a config-group option or a key that does not exist,
    naming the close match and what exists; None for any other error.

    ``groups`` are config groups that may have no key in the composed config (one whose default
    is null, such as ``study``), offered with the top-level keys for a top-level name.
    """
    if isinstance(error, MissingConfigException):
        return unknown_option_line(error)
    cause = error.__cause__
    if isinstance(error, ConfigCompositionException) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key_line(cause, groups)
    return None


def unknown_option_line(error: MissingConfigException) -> str | None:
    """``optimizer=adm: no such option; did you mean optimizer=adam? (optimizer has: ...)``; None
    when Hydra found no option of that group at all (then its own message says more)."""
    group, _, option = str(error.missing_cfg_file or "").rpartition("/")
    if not group or not error.options:
        return None
    options = sorted(error.options)
    match = close_match(option, options)
    listing = f"{group} has: {', '.join(options)}"
    return refusal(f"{group}={option}", "no such option", match and f"{group}={match}", listing)


def unknown_key_line(cause: ConfigAttributeError | ConfigKeyError, groups: Iterable[str]) -> str | None:
    """``model.activaton: no such key; did you mean model.activation? (model has: ...)``, the
    sibling keys read from the node that lacks the key; None if that node has it after all."""
    full_key = str(cause.full_key or cause.key or "")
    parent, _, name = full_key.rpartition(".")
    node = cause.parent_node
    keys = [str(key) for key in node] if isinstance(node, DictConfig) else []
    if not name or name in keys:
        return None
    shown = sorted(key for key in keys if not key.startswith("_"))  # _target_ and the like are not for typing
    if parent:
        match = close_match(name, shown)
        listing = f"{parent} has: {', '.join(shown)}" if shown else f"{parent} has no keys below it"
        return refusal(full_key, "no such key", match and f"{parent}.{match}", listing)
    names = sorted({*shown, *groups})
    match = close_match(name, names) or (close_nested_key(name, node) if isinstance(node, DictConfig) else None)
    return refusal(full_key, "no such key", match, f"top-level keys and groups: {', '.join(names)}")


def close_nested_key(name: str, root: DictConfig) -> str | None:
    """``trainer.epochs`` for ``epochz`` (or ``epochs``) given at the top level: the one key of a
    group whose own name is close, when no other group has a key of that name."""
    owners: dict[str, list[str]] = {}
    for top in root:
        if top == "hydra" or OmegaConf.is_interpolation(root, str(top)) or OmegaConf.is_missing(root, str(top)):
            continue  # reading those would resolve or raise
        if not isinstance(root[top], DictConfig):
            continue
        for key in root[top]:
            owners.setdefault(str(key), []).append(f"{top}.{key}")
    unique = [key for key, where in owners.items() if len(where) == 1 and not key.startswith("_")]
    match = close_match(name, unique)
    return owners[match][0] if match else None
