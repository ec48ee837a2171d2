#!/usr/bin/env bash
# Runs every test of the workspace against real services on loopback.
#
#   ./deploy/run-tests.sh                 all tests
#   ./deploy/run-tests.sh -p sql-store    extra arguments go to `cargo nextest run`
#
# It installs what is missing (Orthanc + DICOMweb and pydicom's DICOM files with apt,
# Azurite with npm, cargo-nextest with cargo), starts PostgreSQL 15, Azurite and Orthanc
# with their data in a temporary folder, exports the TEST_* variables that the
# `test-support` crate reads, runs the tests, and stops the services whatever happens.
# Ports: TEST_PG_PORT (55432), TEST_AZURITE_PORT (10000), TEST_ORTHANC_PORT (18042).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/services.sh
source deploy/services.sh

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }

t_begin=$(now)
t_install="" t_start="" t_tests="" t_stop=""
RUN_DIR=""

# shellcheck disable=SC2317 # called by the trap
finish() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$RUN_DIR" ]; then
        local t0
        t0=$(now)
        svc_stop "$RUN_DIR"
        t_stop=$(since "$t0")
    fi
    printf '[run-tests] timing: install %s, services start %s, tests %s, services stop %s, total %s\n' \
        "${t_install:--}" "${t_start:--}" "${t_tests:--}" "${t_stop:--}" "$(since "$t_begin")" >&2
    exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. Install what is missing.
t0=$(now)
if ! cargo nextest --version >/dev/null 2>&1; then
    svc_log "installing cargo-nextest (cargo install, a few minutes)"
    cargo install --locked cargo-nextest
fi
svc_install
t_install=$(since "$t0")

# 2. Start the services.
t0=$(now)
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/nachet-test-run.XXXXXX")
svc_start "$RUN_DIR"
# shellcheck disable=SC1091
source "$RUN_DIR/env"
t_start=$(since "$t0")
svc_log "up in $t_start: PostgreSQL $TEST_DATABASE_URL, Azurite $TEST_AZURITE_URL (container $TEST_AZURITE_CONTAINER), Orthanc $TEST_ORTHANC_URL; logs in $RUN_DIR"

# 3. Run the tests. With -p/--package the selection is the caller's, else the whole workspace.
scope=(--workspace)
for arg in "$@"; do
    case "$arg" in
    -p | -p* | --package | --package=*) scope=() ;;
    esac
done
t0=$(now)
rc=0
cargo nextest run "${scope[@]}" --all-targets --no-fail-fast "$@" || rc=$?
t_tests=$(since "$t0")
exit "$rc"
