#!/usr/bin/env bash
# Bounded smoke run of every fuzz target (docs/fuzzing.md): builds them with cargo-fuzz on the
# stable toolchain, seeds them (fuzz/seeds.sh) and fuzzes all of them for FUZZ_SMOKE_SECONDS in
# total (default 120), split evenly. Fails if cargo-fuzz cannot be installed, a target is missing
# or does not build, or any target crashes, panics, runs out of memory or times out.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
fuzz_dir=$repo/fuzz
total=${FUZZ_SMOKE_SECONDS:-120}
# The targets docs/fuzzing.md lists: one missing from fuzz/Cargo.toml fails the run.
expected="agent_config canonical_json checkpoint cosignature cyclonedx_sbom ddi_bodies device_requests
director_metadata grub_env key_file pcr_file poll_answer signed_note tiles tlog_proof tpm_structures tuf_metadata
uboot_env event_log credential_input device_csr evidence_bundle incident_inputs osv_advisory sbom_document vex_document
provenance_envelope nvd_record signed_vex osv_feed_zip"
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz $cargo_fuzz_version" >&2
    cargo install --locked --version "$cargo_fuzz_version" cargo-fuzz
fi

cd "$fuzz_dir"
listed=$(cargo fuzz list | sort)
for t in $expected; do
    grep -qx "$t" <<<"$listed" || { echo "fuzz-smoke: fuzz target $t is missing" >&2; exit 1; }
done

# Stable toolchain: without a sanitizer cargo-fuzz passes no -Z flag, so stable rustc builds the
# targets; no sanitizer is needed because every fuzzed crate forbids unsafe code (docs/fuzzing.md).
# Its own target directory (instrumented builds share nothing with the workspace's), named so
# that a CARGO_TARGET_DIR in the environment does not move the binaries.
cargo fuzz build --sanitizer none --target-dir "$fuzz_dir/target"
bin_dir=$fuzz_dir/target/$(rustc -vV | sed -n 's/^host: //p')/release

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$fuzz_dir/seeds.sh" "$work/seeds" >/dev/null

count=$(wc -w <<<"$listed")
each=$(( total / count ))
[ "$each" -ge 1 ] || each=1
failed=""
for t in $listed; do
    mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
    corpora=("$work/corpus/$t")
    [ -d "$work/seeds/$t" ] && corpora+=("$work/seeds/$t")
    if "$bin_dir/$t" "${corpora[@]}" \
        -max_total_time="$each" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/artifacts/$t/" >"$work/$t.log" 2>&1; then
        echo "fuzz-smoke: $t ok ($(grep -o 'Done [0-9]* runs' "$work/$t.log" | tail -1 || true))"
    else
        echo "fuzz-smoke: $t FAILED" >&2
        tail -n 30 "$work/$t.log" >&2
        for a in "$work/artifacts/$t"/*; do
            [ -f "$a" ] && { echo "input ($a):" >&2; od -c "$a" | head -n 20 >&2; }
        done
        failed="$failed $t"
    fi
done
[ -z "$failed" ] || { echo "fuzz-smoke: failures in:$failed" >&2; exit 1; }
echo "fuzz-smoke: $count targets, ${each}s each, no findings"
