#!/usr/bin/env bash
# Schema-driven fuzzing of the HTTP edge: schemathesis sends requests generated from the
# running server's /openapi.json to every operation, once anonymously and once with the
# admin token, with every check (`--checks all`: no 5xx, no undocumented status or body,
# no schema-valid request refused, no schema-violating request accepted, no undeclared
# method accepted). Any failure fails the script.
#
#   ./deploy/schemathesis.sh                       SCHEMATHESIS_EXAMPLES (30) per operation
#   SCHEMATHESIS_EXAMPLES=500 ./deploy/schemathesis.sh
#
# The server is the development backend (target/debug/nachet-dev, built here when missing:
# the production server with the stand-ins' settings), in a scratch folder, with the demo
# DICOM server off and free ports for the stand-ins.
# schemathesis (pinned) is installed with pip in target/schemathesis-venv on first use.
# deploy/schemathesis/hooks.py turns each schema-valid `image` into a real picture;
# deploy/schemathesis/schemathesis.toml says why a 502 is expected of the DICOM searches.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

version=4.32.5
examples=${SCHEMATHESIS_EXAMPLES:-30}
port=${SCHEMATHESIS_PORT:-18090}
admin_token=schemathesis-admin-token
venv=$root/target/schemathesis-venv
binary=$root/target/debug/nachet-dev

if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
    echo "installing schemathesis $version (pip, in $venv)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
[ -x "$binary" ] || cargo build -p nachet-dev

scratch=$(mktemp -d "${TMPDIR:-/tmp}/nachet-schemathesis.XXXXXX")
server=""
# shellcheck disable=SC2317 # called by the trap
finish() {
    local rc=$?
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    if [ "$rc" -ne 0 ]; then
        echo "schemathesis: failed; the server's log is $scratch/server.log" >&2
    else
        rm -rf "$scratch"
    fi
    exit "$rc"
}
trap finish EXIT

(
    cd "$scratch"
    NACHET__SERVER__PORT=$port NACHET__ADMIN__TOKEN=$admin_token \
        NACHET__DEVELOPMENT__DEMO_DICOM=false RUST_LOG=warn exec "$binary"
) >"$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 120); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    kill -0 "$server" 2>/dev/null || { cat "$scratch/server.log" >&2; exit 1; }
    sleep 0.5
done

# In the scratch folder: schemathesis keeps a cache there (.schemathesis/).
run() {
    (cd "$scratch" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$root/deploy/schemathesis" \
        "$venv/bin/schemathesis" --config-file "$root/deploy/schemathesis/schemathesis.toml" \
        run "http://127.0.0.1:$port/openapi.json" \
        --checks all --max-examples "$examples" --seed 1 --no-color "$@")
}
echo "schemathesis: anonymous" >&2
run
echo "schemathesis: with the admin token" >&2
run -H "Authorization: Bearer $admin_token"
