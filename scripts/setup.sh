#!/usr/bin/env bash
# Sets up SAFARI on a bare Debian 12 machine: system packages, a virtual environment in .venv with
# ROS 2 Kilted (PyPI wheels), PyTorch, open_clip, MuJoCo and rosbags, then the colcon build of the
# workspace. Idempotent: each step leaves a stamp keyed by its inputs and is skipped when they have
# not changed, so a second run takes seconds. Each step logs to .setup-logs/<step>.log.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SAFARI_VENV:-$ROOT/.venv}"
LOGS="$ROOT/.setup-logs"
STAMPS="$VENV/.safari-stamps"
# Measured on 2026-12-01: a new .venv takes 6.1 GiB (PyTorch's CUDA build 5.5 GiB), build/ +
# install/ 30 MiB, a test run's scratch about 40 MiB; 7 GiB leaves a margin without refusing a
# machine that can hold it (the third CI run was refused at 11 GiB free by a 12 GiB guess).
MIN_FREE_GB="${SAFARI_MIN_FREE_GB:-7}"
# EGL/Mesa: headless MuJoCo rendering; Qt 5 (+ QtTest, a font): the operator widget and its tests.
APT_PACKAGES=(libegl1 libgl1-mesa-dri libegl-mesa0 libgl1 cmake g++ make qtbase5-dev libqt5test5 fonts-dejavu-core)
PYTHON="${SAFARI_PYTHON:-python3}"
mkdir -p "$LOGS"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] FAILED: %s\n' "$*" >&2; exit 1; }

# run_step NAME COMMAND...: runs COMMAND with its output in .setup-logs/NAME.log; on failure names
# the step, shows the end of the log and its path.
run_step() {
  local name="$1"; shift
  local log="$LOGS/$name.log"
  local t0=$SECONDS
  say "$name ..."
  if ! "$@" >"$log" 2>&1; then
    printf '[setup] FAILED at step "%s"; last lines of %s:\n' "$name" "$log" >&2
    tail -n 25 "$log" >&2 || true
    die "step \"$name\" (full log: $log)"
  fi
  say "$name done in $((SECONDS - t0)) s"
}

stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; printf '%s' "$2" >"$STAMPS/$1"; }

check_python() {
  command -v "$PYTHON" >/dev/null || die "no $PYTHON on PATH: install Python 3.11 (Debian 12: apt-get install python3 python3-venv)"
  local ver
  ver="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  case "$ver" in
    3.11|3.12) ;;
    *) die "Python $ver found; SAFARI needs Python 3.11 or 3.12 (the ROS 2 Kilted wheels exist for those). Set SAFARI_PYTHON to one." ;;
  esac
}

check_disk() {
  local free_gb where
  # The venv is most of it, and SAFARI_VENV may put it on another disk than the checkout.
  where="$(dirname "$VENV")"
  while [[ ! -d "$where" ]]; do where="$(dirname "$where")"; done
  free_gb="$(df -Pk "$where" | awk 'NR==2 {print int($4 / 1048576)}')"
  if [[ ! -d "$VENV" && "$free_gb" -lt "$MIN_FREE_GB" ]]; then
    die "only ${free_gb} GiB free under $where; a new environment needs about ${MIN_FREE_GB} GiB (the virtual environment alone is 6.1 GiB, PyTorch 5.5 GiB of it); free some space or set SAFARI_VENV to a larger disk"
  fi
}

apt_missing() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

install_apt() {
  local missing sudo=""
  missing="$(apt_missing)"
  [[ -z "$missing" ]] && return 0
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  # shellcheck disable=SC2086
  $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends $missing
}

check_registry() {
  # pip's own configuration decides which index is used; asking it for one small package proves
  # the registry answers before a long install starts.
  timeout 120 "$VENV/bin/python" -m pip download --no-deps --quiet -d "$(mktemp -d)" six >/dev/null 2>&1 \
    || die "the Python package registry cannot be reached (pip download of a small package failed); check the network or pip's index configuration"
}

install_python_packages() {
  "$VENV/bin/python" -m pip install --upgrade "pip>=24" wheel
  "$VENV/bin/python" -m pip install -r "$ROOT/requirements.txt" -r "$ROOT/requirements-ros-wheels.txt"
}

# The CMake files inside the ROS wheels name the wheel builder's Python; point them at this one.
patch_wheel_cmake() {
  "$VENV/bin/python" - "$VENV" <<'PY'
import pathlib, sys, sysconfig
import numpy
venv = pathlib.Path(sys.argv[1])
subs = {
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
}
count = 0
for path in (venv / "share").rglob("*.cmake"):
    text = path.read_text(errors="surrogateescape")
    new = text
    for old, repl in subs.items():
        new = new.replace(old, repl)
    if new != text:
        path.write_text(new, errors="surrogateescape")
        count += 1
print(f"patched {count} CMake files")
PY
}

colcon_build() {
  cd "$ROOT"
  # shellcheck disable=SC1091
  source "$VENV/bin/activate"
  export CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV"
  colcon build --base-paths src --metas colcon.meta \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
    || { echo "colcon build failed; per-package logs under $ROOT/log/latest_build"; \
         grep -l 'Failed' log/latest_build/*/stderr.log 2>/dev/null || true; return 1; }
}

src_hash() {
  (cd "$ROOT" && find src colcon.meta -type f \( -name '*.py' -o -name '*.msg' -o -name '*.srv' -o -name '*.action' \
     -o -name '*.xml' -o -name '*.txt' -o -name '*.cfg' -o -name '*.meta' -o -name '*.json' \
     -o -name '*.cpp' -o -name '*.hpp' \) \
     -not -path '*/__pycache__/*' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)
}

main() {
  local t0=$SECONDS
  check_python
  check_disk
  local apt_key="${APT_PACKAGES[*]}"
  if ! stamp_ok apt "$apt_key" || [[ -n "$(apt_missing)" ]]; then
    run_step system-packages install_apt
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    run_step venv "$PYTHON" -m venv "$VENV"
  fi
  stamp_set apt "$apt_key"
  local req_key
  req_key="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-ros-wheels.txt" | sha256sum | cut -c1-64)"
  if ! stamp_ok python-packages "$req_key"; then
    check_registry
    run_step python-packages install_python_packages
    run_step patch-wheel-cmake patch_wheel_cmake
    stamp_set python-packages "$req_key"
  fi
  local build_key
  build_key="$(src_hash)"
  if ! stamp_ok colcon-build "$build_key" || [[ ! -f "$ROOT/install/setup.bash" ]]; then
    run_step colcon-build colcon_build
    stamp_set colcon-build "$build_key"
  fi
  say "ready in $((SECONDS - t0)) s: source scripts/env.sh to use the workspace"
}

main "$@"
