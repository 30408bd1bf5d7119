#!/usr/bin/env bash
# Builds the seed corpora of every fuzz target into fuzz/seeds/<target>/ (or $1): what
# make-seeds writes with the project's own writers, plus the known-answer vectors of
# ../shared/vectors and the agent configuration documented in docs/device-integration.md.
# Nothing here is committed: the vectors stay where they are (see their README).
set -euo pipefail
fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$fuzz_dir")
vectors=$repo/../shared/vectors
out=${1:-$fuzz_dir/seeds}

rm -rf "$out"
mkdir -p "$out"
# An ordinary (uninstrumented) debug build: make-seeds runs once, outside libFuzzer. It goes to
# the workspace's target directory, where the test build has compiled most of what it needs.
cargo run --quiet --manifest-path "$fuzz_dir/Cargo.toml" --target-dir "${CARGO_TARGET_DIR:-$repo/target}" \
    --example make-seeds -- "$out"
rm -rf "$out/.work"

mkdir -p "$out/signed_note" "$out/canonical_json" "$out/agent_config" "$out/cyclonedx_sbom" "$out/tiles"
if [ -d "$vectors" ]; then
    cp "$vectors/signed-note/example.note" "$out/signed_note/c2sp-example.note"
    cp "$vectors/signed-note/example.vkey" "$out/signed_note/c2sp-example.vkey"
    # A few of each kind of JSON document the vectors hold (the fuzzer mutates; more seeds of
    # the same shape only slow its start).
    find "$vectors/rfc6962-merkle" -name '*.json' | sort | awk 'NR <= 12' | while read -r f; do
        cp "$f" "$out/canonical_json/merkle-$(basename "$(dirname "$f")")-$(basename "$f")"
    done
    find "$vectors/osv-pypi" -name 'PYSEC-*.json' | sort | awk 'NR <= 12' | while read -r f; do
        cp "$f" "$out/canonical_json/osv-$(basename "$f")"
        cp "$f" "$out/cyclonedx_sbom/osv-$(basename "$f")"
        mkdir -p "$out/osv_advisory"
        cp "$f" "$out/osv_advisory/$(basename "$f")"
    done
else
    echo "seeds.sh: $vectors not found; seeding without the shared vectors" >&2
fi

# SBOMs and VEX documents: one small document of each format read, and a real dpkg status
# file's first packages when this machine has one.
mkdir -p "$out/sbom_document" "$out/vex_document"
printf '%s' '{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,"components":[{"type":"library","bom-ref":"r","name":"requests","version":"2.19.0","purl":"pkg:pypi/requests@2.19.0","components":[{"type":"library","group":"org.a","name":"core","version":"1","cpe":"cpe:2.3:a:a:core:1:*:*:*:*:*:*:*"}]}]}' \
    >"$out/sbom_document/cyclonedx.json"
printf '%s' '{"spdxVersion":"SPDX-2.3","packages":[{"SPDXID":"SPDXRef-a","name":"busybox","versionInfo":"1.36.1","externalRefs":[{"referenceType":"purl","referenceLocator":"pkg:generic/busybox@1.36.1"},{"referenceType":"cpe23Type","referenceLocator":"cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*"}]}]}' \
    >"$out/sbom_document/spdx.json"
printf 'Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\nDescription: C library\n more\n\n' \
    >"$out/sbom_document/dpkg-status"
if [ -f /var/lib/dpkg/status ]; then
    head -c 16384 /var/lib/dpkg/status >"$out/sbom_document/dpkg-status-real"
fi
printf '%s' '{"bomFormat":"CycloneDX","specVersion":"1.5","metadata":{"timestamp":"2024-01-01T00:00:00Z"},"vulnerabilities":[{"id":"CVE-2019-10906","references":[{"id":"GHSA-462w-v97r-4m45"}],"analysis":{"state":"not_affected","justification":"code_not_reachable","detail":"unused","lastUpdated":"2024-03-01T12:00:00Z"},"affects":[{"ref":"urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:pypi/jinja2@2.10"}]}]}' \
    >"$out/vex_document/cyclonedx-vex.json"
printf '%s' '{"@context":"https://openvex.dev/ns/v0.2.0","timestamp":"2024-02-01T00:00:00Z","statements":[{"vulnerability":{"name":"CVE-2019-10906","aliases":["PYSEC-2019-217"]},"products":[{"@id":"pkg:oci/image","subcomponents":[{"@id":"pkg:pypi/jinja2@2.10"}]}],"status":"not_affected","justification":"vulnerable_code_not_in_execute_path","impact_statement":"unused"},{"vulnerability":"CVE-1","products":["pkg:pypi/a"],"status":"fixed","timestamp":"2024-02-02T00:00:00Z"}]}' \
    >"$out/vex_document/openvex.json"

# NVD CVE API 2.0: the firmware CVE fixture the rampart-vuln tests use.
mkdir -p "$out/nvd_record"
cp "$repo/crates/rampart-vuln/tests/data/nvd-firmware-cves.json" "$out/nvd_record/nvd-firmware-cves.json"

# Provenance: an in-toto statement with SLSA v1 provenance (the payload seed), an envelope and
# a bundle carrying it, and a provenance policy.
mkdir -p "$out/provenance_envelope"
statement='{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"fw.img","digest":{"sha256":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://actions.github.io/buildtypes/workflow/v1","externalParameters":{"workflow":{"repository":"https://github.com/acme/firmware","ref":"refs/heads/main","path":".github/workflows/release.yml"}},"resolvedDependencies":[{"uri":"git+https://github.com/acme/firmware@refs/heads/main","digest":{"gitCommit":"9f1e2d"}}]},"runDetails":{"builder":{"id":"https://builder.example"},"metadata":{"invocationId":"run-1","startedOn":"2025-03-01T10:00:00Z"}}}}'
printf '%s' "$statement" >"$out/provenance_envelope/statement.json"
envelope=$(printf '{"payloadType":"application/vnd.in-toto+json","payload":"%s","signatures":[{"keyid":"00","sig":"AAAA"}]}' \
    "$(printf '%s' "$statement" | base64 -w0)")
printf '%s' "$envelope" >"$out/provenance_envelope/envelope.json"
printf '%s\n%s\n' "$envelope" "$envelope" >"$out/provenance_envelope/bundle.intoto.jsonl"
printf 'required_builders = 1\nbuild_types = ["https://actions.github.io/buildtypes/workflow/v1"]\n[[sources]]\nrepository = "https://github.com/acme/*"\nrefs = ["refs/tags/v*"]\n[[builders]]\nid = "https://builder.example"\nkeys = [{ keytype = "ed25519", scheme = "ed25519", keyval = { public = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c" } }]\n' \
    >"$out/provenance_envelope/policy.toml"

# TPM structures and PCR files a real TPM made (swtpm with tpm2-tools; rampart-attest's test
# data), and PCR selections as tpm2-tools writes them.
mkdir -p "$out/tpm_structures" "$out/pcr_file"
for f in "$repo"/crates/rampart-attest/testdata/*; do
    case $f in
        *.pcrs) cp "$f" "$out/pcr_file/" ;;
        *.pem) ;;
        *) cp "$f" "$out/tpm_structures/" ;;
    esac
done
printf 'sha256:0,1,16' >"$out/pcr_file/selection-sha256"
printf 'sha1:0,7+sha256:all' >"$out/pcr_file/selection-two-banks"

# Every TOML example of the agent configuration in the docs.
n=0
for doc in "$repo/docs/device-integration.md" "$repo/README.md"; do
    [ -f "$doc" ] || continue
    awk -v dir="$out/agent_config" -v base="$(basename "$doc" .md)" '
        /^```toml/ { inside = 1; n++; file = dir "/" base "-" n ".toml"; next }
        /^```/ && inside { inside = 0; close(file); next }
        inside { print > file }
    ' "$doc"
done
n=$(find "$out/agent_config" -type f | wc -l)
[ "$n" -gt 0 ] || { echo "seeds.sh: no agent configuration example found in the docs" >&2; exit 1; }

for dir in "$out"/*/; do
    [ -n "$(ls -A "$dir")" ] || { echo "seeds.sh: no seeds for $(basename "$dir")" >&2; exit 1; }
done
echo "seeds.sh: $(find "$out" -type f | wc -l) seeds for $(ls "$out" | wc -l) targets in $out"
