"""The one difference between the Hydra versions we support (``hydra-core>=1.3.2,<1.5``) that
our own calls see: ``version_base``.

Hydra 1.3 wants it given (else it warns and falls back to 1.1's defaults); Hydra 1.4 keeps only
its own defaults, which are 1.3's, warns about the parameter on every run, and 1.5 removes it.
So every ``hydra.main``, ``initialize_config_module`` and ``compose`` of ours passes
``**VERSION_BASE``.
"""

from __future__ import annotations

import hydra

VERSION_BASE: dict[str, str] = (
    {"version_base": "1.3"} if tuple(map(int, hydra.__version__.split(".")[:2])) < (1, 4) else {}
)
