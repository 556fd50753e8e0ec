"""A failing node test keeps its node logs: copied to test-logs/ and named in the report."""

from __future__ import annotations

import shutil
import time
from collections.abc import Generator
from pathlib import Path

import pytest

from nodes.stack_support import KEPT_LOGS, LOG_DIRS

TAIL_LINES = 30  # of each node's log, in the failure report itself


def keep_logs(nodeid: str) -> tuple[Path, str] | None:
    """Copy the log folders started by the test's module to a new folder under test-logs/;
    returns (that folder, the tail of each log), or None when the module started no nodes."""
    folders = [f for f in LOG_DIRS.get(nodeid.split("::")[0], []) if f.is_dir()]
    if not folders:
        return None
    name = nodeid.split("::")[-1].replace("/", "_").replace("[", "_").replace("]", "")
    target = KEPT_LOGS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    tails = []
    for i, folder in enumerate(folders):
        dest = target / f"{i}-{folder.parent.name}"
        shutil.copytree(folder, dest, dirs_exist_ok=True)
        for log in sorted(dest.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-TAIL_LINES:]
            tails.append(f"--- {log.relative_to(KEPT_LOGS)} (last {len(lines)} lines)\n"
                         + "\n".join(lines))
    return target, "\n".join(tails)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    """On a failure (set-up or test), keep the node logs before the fixtures tear the run's
    temporary folder down (pytest deletes all but the last three)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        kept = keep_logs(item.nodeid)
        if kept is not None:
            report.sections.append(("node logs", f"kept in {kept[0]}\n{kept[1]}"))
