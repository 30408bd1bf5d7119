#!/usr/bin/env bash
# Runs every Rampart test on this machine, installing first what the tests need:
# SoftHSM2 (PKCS#11 tests), faketime (tuf-conformance), python-tuf (interoperability test),
# moto (an S3-compatible server for the artifact-store tests), PostgreSQL (server storage tests
# run against SQLite and PostgreSQL), grub-common (grub-editenv) and libubootenv-tool
# (fw_printenv/fw_setenv) for the bootloader-environment interoperability tests, and swupdate
# (with openssl and cpio to build signed .swu images) for the hawkBit DDI interoperability test,
# swtpm, swtpm-tools and tpm2-tools (a software TPM 2.0 per test, checked by tpm2-tools) with
# libtss2-dev and pkg-config (rampart-tpm builds tss-esapi against the system's libtss2),
# systemd (systemd-analyze verifies the packaged units), schemathesis (a venv under target/)
# for the bounded run against every API, and chromium and npm (with playwright-core, pinned in
# crates/rampart-system-tests/console) for the web console's browser test.
# Set TUF_CONFORMANCE_DIR to a checkout of theupdateframework/tuf-conformance (v2.4.0 or later)
# to run the public conformance suite too; see docs/conformance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "system packages"
missing=()
[ -e /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null || missing+=(softhsm2)
command -v faketime >/dev/null || missing+=(faketime)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v grub-editenv >/dev/null || missing+=(grub-common)
command -v fw_printenv >/dev/null && command -v fw_setenv >/dev/null || missing+=(libubootenv-tool)
command -v swupdate >/dev/null || missing+=(swupdate)
command -v openssl >/dev/null || missing+=(openssl)
command -v cpio >/dev/null || missing+=(cpio)
command -v swtpm >/dev/null || missing+=(swtpm)
command -v swtpm_setup >/dev/null || missing+=(swtpm-tools)
command -v tpm2_checkquote >/dev/null || missing+=(tpm2-tools)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists tss2-esys 2>/dev/null || missing+=(libtss2-dev)
command -v systemd-analyze >/dev/null || missing+=(systemd)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "softhsm2, faketime, python3-venv, postgresql, grub-common, libubootenv-tool, swupdate, openssl, cpio, swtpm, swtpm-tools, tpm2-tools, pkg-config, libtss2-dev, systemd, chromium, nodejs and npm present"
fi

step "python packages (python-tuf for the interoperability test and benchmark, moto for the artifact-store tests)"
python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r scripts/requirements-bench.txt
python3 -c 'import tuf; print("python-tuf", tuf.__version__)'
python3 -c 'import moto.server, flask; print("moto", moto.__version__)'

step "schemathesis, pinned, in target/schemathesis-venv (the bounded API run of crates/rampart-system-tests/tests/schemathesis.rs)"
[ -x target/schemathesis-venv/bin/pip ] || python3 -m venv target/schemathesis-venv
target/schemathesis-venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-schemathesis.txt
target/schemathesis-venv/bin/schemathesis --version

step "playwright-core, pinned, for the web console's browser test (crates/rampart-system-tests/tests/console.rs)"
(cd crates/rampart-system-tests/console && npm ci --no-audit --no-fund)

step "SBOM generator and a Python environment with known-vulnerable pins (crates/rampart-vuln/tests/real_sboms.rs)"
scripts/make-sboms.sh

step "PostgreSQL for the storage tests"
eval "$(scripts/start-postgres.sh)"
trap 'su postgres -s /bin/sh -c "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)/pg_ctl -D $RAMPART_TEST_POSTGRES_DIR/data -m fast stop" >/dev/null 2>&1 || true' EXIT
echo "PostgreSQL at $RAMPART_TEST_POSTGRES_URL"

step "format and lints"
cargo fmt --all -- --check
python3 scripts/check-module-graph.py --self-test
python3 scripts/check-module-graph.py
cargo clippy --locked --workspace --all-targets -- -D warnings

step "cargo test"
rm -rf target/tmp/torture
cargo test --locked --workspace

step "device agent power-loss torture (from the tests above)"
cat target/tmp/torture/*.txt

step "fuzzing smoke run: every cargo-fuzz target of fuzz/, 2 minutes in total (docs/fuzzing.md)"
scripts/fuzz-smoke.sh

if [ -n "${TUF_CONFORMANCE_DIR:-}" ]; then
    step "tuf-conformance suite in $TUF_CONFORMANCE_DIR"
    cargo build --locked -q -p rampart-tuf-client --bin tuf-conformance-client
    client="$PWD/target/debug/tuf-conformance-client"
    cp crates/rampart-tuf-client/tuf-conformance-client.xfails "$client.xfails"
    venv="$PWD/target/tuf-conformance-venv"
    [ -x "$venv/bin/pytest" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q -e "$TUF_CONFORMANCE_DIR"; }
    (cd "$TUF_CONFORMANCE_DIR" && "$venv/bin/pytest" -q -p no:cacheprovider tuf_conformance --entrypoint "$client")
else
    step "tuf-conformance suite: NOT RUN"
    echo "The public suite is in no package registry; set TUF_CONFORMANCE_DIR to a checkout to run it (docs/conformance.md)."
fi
