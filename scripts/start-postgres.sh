#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the tests and prints its URL.
# Usage: eval "$(scripts/start-postgres.sh)"   -> exports RAMPART_TEST_POSTGRES_URL
set -euo pipefail
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bin/initdb" ] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 1; }
# A free loopback port, unless one is given.
port=${RAMPART_TEST_POSTGRES_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
dir=$(mktemp -d /tmp/rampart-pg.XXXXXX)
chown postgres "$dir"
run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
run "$bin/initdb -D $dir/data --auth=trust -U postgres -E UTF8" >/dev/null
run "$bin/pg_ctl -D $dir/data -o '-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=on' -l $dir/log -w start" >/dev/null
echo "export RAMPART_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:$port/postgres"
echo "export RAMPART_TEST_POSTGRES_DIR=$dir"
