"""scripts/setup.sh stops with a readable message on the bad inputs a new user meets."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup.sh"


def run_setup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SAFARI_VENV": str(tmp_path / "venv"), **env}
    return subprocess.run(["bash", str(SETUP)], env=full_env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_refuses_an_unsupported_python(tmp_path):
    fake = tmp_path / "python3.9"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    result = run_setup(tmp_path, SAFARI_PYTHON=str(fake))
    assert result.returncode != 0
    assert "Python 3.9 found; SAFARI needs Python 3.11 or 3.12" in result.stderr
    assert not (tmp_path / "venv").exists()


def test_refuses_when_the_disk_is_too_small(tmp_path):
    result = run_setup(tmp_path, SAFARI_MIN_FREE_GB="100000000")
    assert result.returncode != 0
    assert "GiB free" in result.stderr and "needs about 100000000 GiB" in result.stderr


def test_names_an_unreachable_registry(tmp_path):
    # No index, no local wheels: pip can reach nothing, as on a machine without network.
    # The disk check is switched off: on a machine that already holds one environment the
    # free space may be below a second one's needs, and that message would come first.
    result = run_setup(
        tmp_path,
        SAFARI_MIN_FREE_GB="0",
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_FIND_LINKS="",
        PIP_NO_INDEX="0",
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
    )
    assert result.returncode != 0
    assert "package registry cannot be reached" in result.stderr
