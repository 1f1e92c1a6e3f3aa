#!/usr/bin/env bash
# Starts (or reuses) a throwaway PostgreSQL server on 127.0.0.1 for the registry tests and
# prints its connection URL on stdout; everything else goes to stderr.
# Port: MLOPS_PG_PORT (default 55432). A set MLOPS_TEST_POSTGRES_URL is printed as is.
set -euo pipefail
if [ -n "${MLOPS_TEST_POSTGRES_URL:-}" ]; then echo "$MLOPS_TEST_POSTGRES_URL"; exit 0; fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${MLOPS_PG_PORT:-55432}"

# Debian's versioned bin dir first (PATH may hold only wrappers or links), then PATH.
find_bin() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"
  elif command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v initdb)"
  fi
}
bin="$(find_bin)"
if [ -z "$bin" ]; then
  echo "postgres.sh: installing PostgreSQL from apt" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
  bin="$(find_bin)"
fi
PATH="$bin:$PATH"

# initdb refuses to run as root: the server runs as an unprivileged system user.
user=""
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then user=postgres
  else id mlops-pg >/dev/null 2>&1 || useradd --system --no-create-home mlops-pg; user=mlops-pg
  fi
fi
as_pg() { if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }

# One cluster per port, so a second port never waits on the first one's server.
dir="$root/target/postgres-test/$port"
mkdir -p "$dir"
[ -z "$user" ] || chown "$user:" "$dir"
# The server user must reach the directory; a checkout under /root (mode 700) hides it.
if ! as_pg test -w "$dir"; then
  dir="${TMPDIR:-/tmp}/mlops-postgres-test/$port"
  echo "postgres.sh: $user cannot write under $root/target; using $dir" >&2
  mkdir -p "$dir"; chown "$user:" "$dir"
fi
data="$dir/data"
cd "$dir" # the tools complain when the server user cannot read the working directory

if pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
  # A server already answers on the port (this checkout's, or another one's): use it.
  echo "postgres.sh: reusing the server on 127.0.0.1:$port" >&2
elif [ ! -f "$data/PG_VERSION" ]; then
  as_pg initdb -D "$data" --auth=trust -U postgres -E UTF8 --no-locale --no-sync >&2
  # TCP on loopback only; the socket stays out of /var/run; durability is not needed.
  cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
fi
if ! pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null && ! as_pg pg_ctl -D "$data" status >/dev/null 2>&1; then
  as_pg pg_ctl -D "$data" -l "$dir/postgres.log" -o "-p $port" start >&2 \
    || { tail -n 20 "$dir/postgres.log" >&2; exit 1; }
fi
for _ in $(seq 1 60); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$port" || {
  echo "postgres.sh: no server on 127.0.0.1:$port after 30 s; see $dir/postgres.log" >&2
  exit 1
}

psql_() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres "$@"; }
if [ "$(psql_ -tAc "SELECT 1 FROM pg_database WHERE datname='mlops_test'")" != 1 ]; then
  psql_ -c "CREATE DATABASE mlops_test" >&2
fi
echo "postgres://postgres@127.0.0.1:$port/mlops_test"
