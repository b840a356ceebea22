#!/usr/bin/env bash
# Set up and run the test suite (the README's test command; .ci/run runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
# The sandbox's strongest level needs bubblewrap; install it where we can.
if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq bubblewrap
  else
    echo "note: bubblewrap is missing; the sandbox falls back to its weaker rlimits level" >&2
  fi
fi
# The pinned CPU build first: an unpinned torch would pull several GB of CUDA packages.
python3 -m pip install -q torch==2.13.0
python3 -m pip install -q -e ".[test]"
python3 -m ruff check perfrl_trl tests examples benchmarks scripts
# pytest exits 5 when it ran no test, which fails this script as it should.
python3 -m pytest -q -p no:cacheprovider --timeout 900 tests
