"""A fetched config is data: the extension modules its ``extensions`` list names are imported by
vae-reproduce only when they are installed as entry points or the user names them."""

from __future__ import annotations

import uuid

from helpers.former_run import CROSS_CPU_TOLERANCE, FIXTURE, log_former_run, reproduced_alike

from vae_sweep import cli

# Importing it leaves a mark: the test can tell whether vae-reproduce ran it.
MARKING_MODULE = "from pathlib import Path\nPath(__file__).with_suffix('.imported').write_text('ran')\n"


def test_a_fetched_config_imports_nothing_the_user_did_not_trust(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    module = f"listed_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(MARKING_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = (FIXTURE / "config.yaml").read_text() + f"extensions:\n- {module}\n"
    run_id = log_former_run(uri, config)

    refused = cli.reproduce([run_id, "--tracking-uri", uri, "--no-track"])
    err = capsys.readouterr().err
    assert refused == 2
    assert (
        f"lists extension module(s) {module}, which are not installed here as vae_sweep.extensions entry points" in err
    )
    assert f"pass --extensions {module} if you trust them" in err
    assert not (tmp_path / f"{module}.imported").exists()  # refused without importing it

    trusted = cli.reproduce(
        [run_id, "--tracking-uri", uri, "--no-track", "--extensions", module, "--tolerance", CROSS_CPU_TOLERANCE]
    )
    out = capsys.readouterr().out
    assert trusted == 0, out
    assert (tmp_path / f"{module}.imported").exists()
    assert reproduced_alike(out), out
