#!/usr/bin/env bash
# Prepares what crates/rampart-vuln/tests/real_sboms.rs needs to make real SBOMs at test time:
# the CycloneDX generator (PyPI cyclonedx-bom, pinned) in target/sbom-tool-venv, and a Python
# environment with known-vulnerable packages installed in target/sbom-subject-venv. Idempotent;
# run by scripts/test.sh. Nothing it makes is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
pip_quiet=(-q --disable-pip-version-check)
[ -x target/sbom-tool-venv/bin/pip ] || python3 -m venv target/sbom-tool-venv
target/sbom-tool-venv/bin/pip install "${pip_quiet[@]}" -r scripts/sbom/requirements-tool.txt
[ -x target/sbom-subject-venv/bin/pip ] || python3 -m venv target/sbom-subject-venv
# --no-deps: the environment holds exactly the pins (requests 2.19.0 itself refuses urllib3 1.24.1).
target/sbom-subject-venv/bin/pip install "${pip_quiet[@]}" --no-deps -r scripts/sbom/environment-pins.txt
target/sbom-tool-venv/bin/cyclonedx-py --version
