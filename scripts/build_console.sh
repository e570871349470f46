#!/usr/bin/env bash
# Rebuild the console page (fleetmind/serve/console_static/) from console/src.
#
# The built files are committed, so running, installing and testing fleetmind never needs Node:
# this is the one step that does (Node >= 18 with npm), for people who change the page. Commit
# the rebuilt console_static/ with the sources; tests/console/test_console_bundle.py fails when
# the two disagree.
set -euo pipefail
cd "$(dirname "$0")/../console"

if ! command -v npm >/dev/null 2>&1; then
    echo "building the console page needs Node.js with npm (https://nodejs.org); none found" >&2
    exit 1
fi
npm ci --no-audit --no-fund
npm run build
