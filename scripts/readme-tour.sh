#!/usr/bin/env bash
# Runs the README's hand-typed tour as written (signing and release, the update server, the
# campaign against a simulated fleet, the A/B install on a workstation) in a new directory,
# with the workspace's built binaries in place of `cargo run --release` (build them first:
# `cargo build -p rampart-cli -p rampart-agent`, add --release and PROFILE=release for those).
# It uses the README's fixed loopback ports (8080, 8443, 8444): run it where they are free.
# Stops what it started (by process id) when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${PROFILE:-debug}
bin="$PWD/target/$profile"
dir=$(mktemp -d /tmp/rampart-readme-tour.XXXXXX)
script="$dir/tour.sh"
python3 - "$bin" "$dir" >"$script" <<'PY'
import re, sys
bin, dir = sys.argv[1], sys.argv[2]
text = open("README.md").read()
blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
wanted = [b for b in blocks if "rampart key generate --scheme ed25519" in b
          or "rampart ca init --dir ca" in b or "rampart campaign create" in b
          or "agent simulate-reboot" in b]
assert len(wanted) == 4, f"expected the README's 4 tour blocks, found {len(wanted)}"
print("set -euo pipefail\nshopt -s expand_aliases\ncd " + dir)
for block in wanted:
    block = block.replace("alias rampart='cargo run -q --release -p rampart-cli --bin rampart --'",
                          f"alias rampart={bin}/rampart")
    block = block.replace("cargo run -q --release -p rampart-agent --", f"{bin}/rampart-agent")
    for line in block.split("\n"):
        print(line)
        if line.rstrip().endswith("&") and not line.rstrip().endswith("&&"):
            # What a person starts in the background, recorded to be stopped; and the moment
            # they take to type the next command.
            print(f"echo $! >> {dir}/pids; sleep 2")
PY
stop() {
    [ -f "$dir/pids" ] || return 0
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
}
trap stop EXIT
echo "README tour in $dir"
bash "$script"
echo "README tour: every command succeeded"
