#!/usr/bin/env bash
# Throughput and latency of authenticated read endpoints under wrk (GET /api/v1/me: auth only;
# GET /api/v1/team/members: auth + one query), compared with an unauthenticated baseline
# (GET /healthz: no auth, no database) measured in the same run on the same machine. Needs: wrk (apt-get install wrk), PostgreSQL on 127.0.0.1:5432.
#
#   bench/api.sh [connections] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
connections="${1:-64}"
seconds="${2:-20}"
threads=2
db="wfo_bench_$$"
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db"
port=18181

command -v wrk >/dev/null || { echo "bench: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p workflowops-api
bin="${CARGO_TARGET_DIR:-target}/release/workflowops"

psql -h 127.0.0.1 -U postgres -d postgres -qc "create database $db"
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    psql -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists $db with (force)" || true
}
trap cleanup EXIT

"$bin" migrate >/dev/null
"$bin" tenant create --name Bench --slug bench >/dev/null
WFO_NEW_PASSWORD=bench-password-123 "$bin" user create --email bench@bench.example --name Bench --tenant bench --role admin >/dev/null

WFO_MASTER_KEY="$("$bin" keygen)" "$bin" serve --bind "127.0.0.1:$port" >/dev/null 2>&1 &
server=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

token=$(curl -sf "http://127.0.0.1:$port/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"bench@bench.example","password":"bench-password-123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

echo "== baseline: GET /healthz (no auth, no database), $connections connections, ${seconds}s"
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/healthz"
echo
echo "== GET /api/v1/me (session token), $connections connections, ${seconds}s"
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/me"
echo
echo "== GET /api/v1/team/members (session token + one database query), $connections connections, ${seconds}s"
wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/team/members"
