"""The package's layout rules (vae_sweep/__init__.py), read from the source: which part may
import which, and how long a module may grow. Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "vae_sweep"
PLUGIN = PACKAGE.parent / "hydra_plugins"
SHARED = (
    "vae_sweep.errors",
    "vae_sweep.names",
    "vae_sweep.interrupts",
    "vae_sweep.overrides",
    "vae_sweep.local_stores",
    "vae_sweep.hydra_version",
    "vae_sweep.lazy_exports",
    "vae_sweep.suggestions",
    "vae_sweep.garbage",
)
MAX_LINES = 450

# part -> the parts of ours it must never import
FORBIDDEN = {
    "vae_sweep.train": (
        "vae_sweep.track",
        "vae_sweep.sweep",
        "vae_sweep.compare",
        "vae_sweep.reproduce",
        "vae_sweep.cli",
        "vae_sweep.bench",
    ),
    "vae_sweep.track": (
        "vae_sweep.sweep",
        "vae_sweep.compare",
        "vae_sweep.reproduce",
        "vae_sweep.cli",
        "vae_sweep.bench",
    ),
    "vae_sweep.sweep": ("vae_sweep.compare", "vae_sweep.reproduce", "vae_sweep.cli", "vae_sweep.bench"),
    "vae_sweep.compare": ("vae_sweep.sweep", "vae_sweep.reproduce", "vae_sweep.cli", "vae_sweep.bench"),
    "vae_sweep.reproduce": ("vae_sweep.sweep", "vae_sweep.compare", "vae_sweep.cli", "vae_sweep.bench"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def every_import(path: Path) -> set[str]:
    """Every module ``path`` imports, with ``from package import x`` also as ``package.x``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def imported(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, with ``from vae_sweep import x`` as ``vae_sweep.x``."""
    return {name for name in every_import(path) if name == "vae_sweep" or name.startswith("vae_sweep.")}


def within(name: str, part: str) -> bool:
    return name == part or name.startswith(part + ".")


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_each_part_imports_only_what_it_may(path: Path):
    name = module_name(path)
    if name in SHARED:  # shared by all: they may lean on the error classes, nothing else of ours
        assert all(within(name, "vae_sweep.errors") for name in imported(path)), imported(path)
    for part, forbidden in FORBIDDEN.items():
        if within(name, part):
            wrong = sorted(i for i in imported(path) if any(within(i, f) for f in forbidden))
            assert not wrong, f"{name} ({part}) imports {wrong}"


def test_the_hydra_plugin_is_a_facade_over_the_sweep():
    for path in PLUGIN.rglob("*.py"):
        assert all(within(name, "vae_sweep.sweep") for name in imported(path)), (path, imported(path))


OUR_CODE = sorted({*MODULES, *PLUGIN.rglob("*.py"), *(PACKAGE.parent / "tests").rglob("*.py")})
OUR_CODE += sorted((PACKAGE.parent / "examples").rglob("*.py"))


@pytest.mark.parametrize("path", OUR_CODE, ids=lambda path: str(path.relative_to(PACKAGE.parent)))
def test_nothing_of_ours_imports_hydras_private_modules(path: Path):
    """``hydra._internal`` changes without notice (Hydra's main branch removed what we once used)."""
    private = sorted(name for name in every_import(path) if within(name, "hydra._internal"))
    assert not private, f"{path.name} imports {private}"


def test_the_rules_see_the_imports_they_judge():
    """The reader finds what the rules are about, so a rule cannot pass by reading nothing."""
    assert "vae_sweep.track.training" in imported(PACKAGE / "cli.py")
    assert "vae_sweep.interrupts" in imported(PACKAGE / "track" / "training.py")  # `from vae_sweep import interrupts`
    assert any(within(name, "vae_sweep.track") for name in imported(PACKAGE / "sweep" / "trial_link.py"))
    assert "hydra.core.config_loader.ConfigLoader" in every_import(PACKAGE / "sweep" / "compose.py")


@pytest.mark.parametrize("path", MODULES, ids=lambda path: module_name(path))
def test_no_module_is_longer_than_its_one_job_needs(path: Path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module_name(path)} has {lines} lines; split it by job"
