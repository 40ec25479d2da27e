#!/usr/bin/env bash
# Create or refresh the project's virtualenv from constraints.txt (called by `make`).
#
#   scripts/setup.sh [VENV] [PYTHON]
#
# Order matters: torch is installed first from the pinned CPU build, so that no later
# package can pull a multi-GB CUDA build; mediapipe is installed without its metadata's
# dependencies (jax, jaxlib, a second OpenCV...), which its bundled face models never use.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${1:-.venv}
PYTHON=${2:-python3}
# Debian packages the project needs (installed when run as root and missing): Mesa's
# headless EGL/OpenGL, on which the synthetic-head renderer runs (llvmpipe on CPU);
# chromium and its WebDriver for the web UI's browser test; opencv-data for the BRISQUE
# metric's model files.
APT_PACKAGES=(libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri chromium chromium-driver opencv-data)

if ((${#APT_PACKAGES[@]})); then
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        else
            echo "setup: missing Debian packages (install them as root): ${missing[*]}" >&2
        fi
    fi
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24"
"${PIP[@]}" install -q -c constraints.txt torch
"${PIP[@]}" install -q --no-deps -c constraints.txt mediapipe
# --no-warn-conflicts: pip would report mediapipe's unused extras (jax...) as missing.
"${PIP[@]}" install -q --no-warn-conflicts -c constraints.txt -e ".[dev]"
"$VENV/bin/python" -c "import icportrait.faces, mediapipe, dlib, torch, moderngl" \
    || { echo "setup: the environment does not import; see the errors above" >&2; exit 1; }
