#!/bin/sh
# Runs a command only while this caller leads an election, through `tenure serve`.
#
#   TENURE_URL=http://127.0.0.1:7480 ./leader-job.sh jobs/nightly -- ./nightly-job.sh
#
# POSIX sh + curl (+ sed). Campaigns (waits until leader), starts the command, and keeps
# the leadership alive every TTL/3. If a keepalive fails or the validity the gateway
# reports runs out, the command is stopped at once (SIGTERM) and the script exits 1.
# When the command ends, the script resigns and exits with the command's status.
# Set TENURE_TOKEN for a gateway that needs a bearer token.
set -u
url=${TENURE_URL:-http://127.0.0.1:7480}
election=${1:?usage: leader-job.sh ELECTION -- COMMAND...}
shift
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "leader-job.sh: no command given" >&2; exit 2; }

auth=""
[ -n "${TENURE_TOKEN:-}" ] && auth="Authorization: Bearer $TENURE_TOKEN"

api() { # METHOD PATH [BODY [CURL OPTIONS...]] -> prints the body; fails on non-2xx
    method=$1 path=$2 body=${3:-}
    shift 2; [ $# -gt 0 ] && shift
    curl -sS --fail-with-body -X "$method" -H "Content-Type: application/json" \
        ${auth:+-H "$auth"} ${body:+-d "$body"} "$@" "$url$path"
}
field() { sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p"; }

grant=$(api POST "/v1/elections/$election/campaign" "{\"value\": \"$(hostname)\"}") || {
    echo "leader-job.sh: campaign failed: $grant" >&2; exit 1; }
handle=$(printf '%s' "$grant" | field handle)
token=$(printf '%s' "$grant" | field token)
ttl=$(printf '%s' "$grant" | field ttl)
echo "leader-job.sh: leading $election with fencing token $token" >&2

TENURE_FENCING_TOKEN=$token "$@" &
child=$!
trap 'kill -TERM $child 2>/dev/null; api DELETE "/v1/leaderships/$handle" >/dev/null; exit 130' INT TERM

interval=$(awk "BEGIN { print $ttl / 3 }")
while kill -0 $child 2>/dev/null; do
    sleep "$interval"
    kill -0 $child 2>/dev/null || break
    if ! state=$(api POST "/v1/leaderships/$handle/keepalive" "" --max-time "$interval"); then
        echo "leader-job.sh: leadership lost ($state); stopping the job" >&2
        kill -TERM $child 2>/dev/null
        wait $child
        exit 1
    fi
done
wait $child
status=$?
api DELETE "/v1/leaderships/$handle" >/dev/null
echo "leader-job.sh: job exited with $status; resigned" >&2
exit $status
