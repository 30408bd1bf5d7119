#!/usr/bin/env bash
# Fleet simulator benchmark (docs/benchmarks.md, "Fleet simulator: 10,000 devices").
#
#   scripts/bench-sim.sh BINARY [DEVICES]
#
# BINARY is a release build of `rampart` (e.g. target/release/rampart). The script builds a
# throwaway world on /dev/shm: keys, an image repository with 1.0.0 and 2.0.0 (256 KiB images
# for board-a and board-b), the manufacturer CA, the director, and a `rampart server` (SQLite,
# --poll-interval 30). It starts `BINARY sim --devices DEVICES` (default 10000), waits until
# every device has enrolled, assigns 2.0.0 to every device by tag, and waits for the simulator
# to stop on its own (--until-version 2.0.0). Prints the full-update wall time (assignment ->
# every device settled on 2.0.0) and the simulator's CPU (user + sys) and peak RSS over its
# whole run.
#
# Environment: RAMPART_BENCH_SERVER=PATH runs the server from another binary (to compare two
# simulators against the same server); RAMPART_BENCH_SIM_ARGS adds simulator options (e.g.
# "--crash-rate 0.01 --slow-rate 0.05 --slow-bytes-per-sec 65536"); RAMPART_BENCH_KEEP=1 keeps
# the work directory. Exit status: 0 when the simulator converged, 1 otherwise.
set -euo pipefail

BIN=$(realpath "${1:?usage: $0 BINARY [DEVICES]}")
DEVICES=${2:-10000}
SERVER_BIN=$(realpath "${RAMPART_BENCH_SERVER:-$BIN}")
EXTRA_SIM_ARGS=${RAMPART_BENCH_SIM_ARGS:-}
WORKERS=${RAMPART_BENCH_WORKERS:-64}
BOOT_SPREAD=${RAMPART_BENCH_BOOT_SPREAD:-30}

W=$(mktemp -d /dev/shm/rampart-bench-sim.XXXXXX)
SERVER_PID=""
SIM_PID=""
cleanup() {
    [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    if [ "${RAMPART_BENCH_KEEP:-0}" = 1 ]; then
        echo "work directory kept: $W" >&2
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
log() { echo "[bench-sim] $*" >&2; }
die() {
    log "$*"
    exit 1
}

export RAMPART_KEY_PASSPHRASE='bench-sim throwaway passphrase'
cd "$W"
r() { "$BIN" "$@" >>setup.log 2>&1 || die "setup step failed: rampart $* (see $W/setup.log)"; }

log "setting up keys, repository, CA and director in $W"
for k in root targets snapshot timestamp dir-root dir-online; do
    r key generate --out "$k.key"
done
r repo init repo --root-key root.key --targets-key targets.key --snapshot-key snapshot.key \
    --timestamp-key timestamp.key
for v in 1.0.0 2.0.0; do
    head -c 262144 /dev/urandom >fw.img
    r release add fw.img --repo repo --hw board-a --hw board-b --version "$v" --security-version 1
done
r ca init --dir ca
r ca server-cert --ca ca --name 127.0.0.1 --out srv
r director init --dir director --root-key dir-root.key --online-key dir-online.key
TOKEN=$("$BIN" token create --db "sqlite://$W/server.db" --role operator --name bench 2>>setup.log |
    grep -o 'rampart_[A-Za-z0-9_-]*' | head -n1) || true
[ -n "$TOKEN" ] || die "no management token (see $W/setup.log)"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
DEV_PORT=$(port)
MGMT_PORT=$(port)
log "starting the server on 127.0.0.1:$DEV_PORT (management :$MGMT_PORT)"
"$SERVER_BIN" server --db "sqlite://$W/server.db" --listen "127.0.0.1:$DEV_PORT" \
    --management-listen "127.0.0.1:$MGMT_PORT" --cert srv/server.pem --key srv/server.key \
    --client-ca ca/ca.pem --crl ca/crl.pem --repo repo --director-root director/root.json \
    --director-key dir-online.key --poll-interval 30 >server.log 2>&1 &
SERVER_PID=$!

api() {
    curl -sS --fail --cacert ca/ca.pem -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' "$@"
}
for _ in $(seq 1 100); do
    api "https://127.0.0.1:$MGMT_PORT/api/v1/fleet/versions" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited (see $W/server.log)"
    sleep 0.2
done

log "starting the simulator: $DEVICES devices"
# shellcheck disable=SC2086
/usr/bin/time -v -o sim.time "$BIN" sim --server "https://127.0.0.1:$DEV_PORT" \
    --server-ca ca/ca.pem --ca ca --director-root director/1.root.json --repo repo \
    --initial-target 1.0.0/fw.img --devices "$DEVICES" --models board-a=70,board-b=30 \
    --regions eu=50,us=50 --tags all=100,canary=5 --boot-spread "$BOOT_SPREAD" \
    --workers "$WORKERS" --until-version 2.0.0 --status-every 10 \
    --state-dir "$W/sim-state" $EXTRA_SIM_ARGS >sim.log 2>&1 &
SIM_PID=$!

enrolled() {
    api "https://127.0.0.1:$MGMT_PORT/api/v1/fleet/versions" 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["devices"])' 2>/dev/null || echo 0
}
while :; do
    n=$(enrolled)
    [ "$n" -ge "$DEVICES" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || die "the simulator exited early (see $W/sim.log)"
    sleep 1
done
log "all $DEVICES devices enrolled; assigning 2.0.0/fw.img to tag all"
START=$(date +%s.%N)
api -X POST -d '{"target": "2.0.0/fw.img", "tag": "all"}' \
    "https://127.0.0.1:$MGMT_PORT/api/v1/assignments" >assignment.json ||
    die "the assignment was refused: $(cat assignment.json)"
STATUS=0
wait "$SIM_PID" || STATUS=$?
SIM_PID=""
END=$(date +%s.%N)

tail -n 5 sim.log >&2
field() { sed -n "s/^[[:space:]]*$1: //p" sim.time; }
USER=$(field 'User time (seconds)')
SYS=$(field 'System time (seconds)')
RSS_KB=$(field 'Maximum resident set size (kbytes)')
python3 - "$START" "$END" "$USER" "$SYS" "$RSS_KB" "$DEVICES" "$STATUS" <<'PY'
import sys
start, end, user, sys_, rss, devices, status = sys.argv[1:]
print(f"devices: {devices}")
print(f"full update (assignment -> all on 2.0.0): {float(end) - float(start):.1f} s")
print(f"sim CPU (user + sys): {float(user) + float(sys_):.1f} s (user {user} s, sys {sys_} s)")
print(f"sim peak RSS: {int(rss) / 1024:.0f} MiB")
print(f"sim exit status: {status}")
PY
exit "$STATUS"
