"""The operator panel's ROS-free Qt widget (src/safari_rviz): configured and built with plain CMake
against Debian's qtbase5-dev (scripts/setup.sh installs it), then its QtTest suite run headless.
The suite also writes a screenshot of the widget in a realistic state: to the test's temporary
folder, or where SAFARI_SCREENSHOT says (`SAFARI_SCREENSHOT=$PWD/docs/operator_panel.png
scripts/test.sh test/rviz` refreshes README's picture)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "src" / "safari_rviz"
# Beside colcon's build/<package> folders (build/ is ignored) and kept between runs, so a rerun
# compiles only what changed.
BUILD = REPO / "build" / "safari_rviz_widget"


def missing_build_tools() -> str:
    """Why the widget cannot be built here, or '' when it can."""
    for tool in ("cmake", "make", "c++"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (scripts/setup.sh installs the build tools)"
    for module in ("Qt5Widgets", "Qt5Test"):
        # Debian's multiarch folder (/usr/lib/x86_64-linux-gnu/cmake), or the plain one.
        if not glob.glob(f"/usr/lib/*/cmake/{module}/{module}Config.cmake") + glob.glob(
                f"/usr/lib/cmake/{module}/{module}Config.cmake"):
            return (f"Qt 5 development files missing ({module}Config.cmake): "
                    "apt-get install qtbase5-dev (scripts/setup.sh does)")
    return ""


MISSING = missing_build_tools()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(MISSING), reason=MISSING)]


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600,
                          check=False, env={**os.environ, **env})


def output_of(result: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(map(str, result.args))}\n{result.stdout}{result.stderr}"[-6000:]


def test_widget_builds_and_passes_its_qttest_suite(tmp_path: Path) -> None:
    # Plain CMake even where the workspace's ament_cmake is on CMAKE_PREFIX_PATH: this is the
    # widget-only build a machine without ROS makes.
    configure = run(["cmake", "-S", PACKAGE, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                     "-DBUILD_TESTING=ON", "-DCMAKE_DISABLE_FIND_PACKAGE_ament_cmake=ON"])
    assert configure.returncode == 0, output_of(configure)
    build = run(["cmake", "--build", BUILD, "--target", "test_operator_widget"])
    assert build.returncode == 0, output_of(build)

    # a test run must not rewrite a tracked file unless asked to
    screenshot = Path(os.environ.get("SAFARI_SCREENSHOT") or tmp_path / "operator_panel.png")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    suite = run([BUILD / "test_operator_widget"], QT_QPA_PLATFORM="offscreen",
                XDG_RUNTIME_DIR=str(runtime), SAFARI_SCREENSHOT=str(screenshot))
    print(suite.stdout)
    assert suite.returncode == 0, output_of(suite)
    assert " 0 failed" in suite.stdout, output_of(suite)
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
