#!/usr/bin/env bash
# The services the tests need, on loopback: PostgreSQL 15, Azurite (Azure Blob emulator)
# and Orthanc with its DICOMweb plugin. All their data goes to one temporary folder.
#
#   deploy/services.sh install      install what is missing (apt, npm), nothing else
#   deploy/services.sh start        install, start all three, print how to load the variables
#   eval "$(deploy/services.sh env)"  export TEST_DATABASE_URL, TEST_AZURITE_URL, ... in this shell
#   deploy/services.sh status       what runs, where
#   deploy/services.sh stop         stop them and delete their data
#
# Ports (loopback only), overridable: TEST_PG_PORT (55432), TEST_AZURITE_PORT (10000),
# TEST_ORTHANC_PORT (18042).
#
# deploy/run-tests.sh sources this file and uses its functions with a folder of its own,
# so a test run never touches services a developer started with `start` (on the same
# ports it stops at once and says so: stop them first, or choose other ports).
set -euo pipefail

SERVICES_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Where `start` records the folder of the services it started (for env/status/stop).
SERVICES_POINTER="$SERVICES_REPO/.data/services-dir"

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
ORTHANC_BIN=${ORTHANC_BIN:-/usr/sbin/Orthanc}
ORTHANC_DICOMWEB_PLUGIN=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}
PYDICOM_TEST_FILES=${PYDICOM_TEST_FILES:-/usr/lib/python3/dist-packages/pydicom/data/test_files}
# nginx, which the many-replicas test (apps/nachet-backend/tests/replicas.rs) starts itself
# in front of three backends; only installed here, never started.
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
AZURITE_DIR="$SERVICES_REPO/deploy/azurite"
AZURITE_CONTAINER=${TEST_AZURITE_CONTAINER:-test}
START_TIMEOUT=${SERVICES_START_TIMEOUT:-30}

svc_log() { printf '[services] %s\n' "$*" >&2; }
svc_die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
svc_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The first of the given apt package names that apt knows a candidate for.
svc_apt_candidate() {
    local name policy
    for name in "$@"; do
        # Read whole before matching: `apt-cache ... | grep -q` fails under pipefail whenever
        # grep exits before apt-cache has written everything (SIGPIPE).
        policy=$(apt-cache policy "$name" 2>/dev/null || true)
        if grep -q 'Candidate: [0-9]' <<<"$policy"; then
            echo "$name"
            return 0
        fi
    done
    return 1
}

svc_install() {
    local apt_packages=() pydicom_pkg
    if [ ! -x "$ORTHANC_BIN" ] || [ ! -f "$ORTHANC_DICOMWEB_PLUGIN" ]; then
        apt_packages+=(orthanc orthanc-dicomweb)
    fi
    if [ ! -x "$NGINX_BIN" ]; then
        apt_packages+=(NGINX)
    fi
    if [ ! -d "$PYDICOM_TEST_FILES" ]; then
        apt_packages+=(PYDICOM)
    fi
    if [ ${#apt_packages[@]} -gt 0 ]; then
        svc_log "installing with apt: ${apt_packages[*]}"
        svc_as_root apt-get update -qq
        local i
        for i in "${!apt_packages[@]}"; do
            case "${apt_packages[$i]}" in
            PYDICOM)
                # Debian's name for pydicom: python3-pydicom (bookworm and later), python3-dicom before.
                pydicom_pkg=$(svc_apt_candidate python3-pydicom python3-dicom) ||
                    svc_die "no apt package for pydicom (tried python3-pydicom, python3-dicom)"
                apt_packages[i]=$pydicom_pkg
                ;;
            NGINX)
                # The smallest build that has the proxy module: nginx-light (Debian 12), else nginx.
                apt_packages[i]=$(svc_apt_candidate nginx-light nginx) ||
                    svc_die "no apt package for nginx (tried nginx-light, nginx)"
                ;;
            esac
        done
        svc_as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${apt_packages[@]}" >/dev/null
    fi
    [ -x "$ORTHANC_BIN" ] || svc_die "$ORTHANC_BIN is missing after installing orthanc"
    [ -f "$ORTHANC_DICOMWEB_PLUGIN" ] || svc_die "$ORTHANC_DICOMWEB_PLUGIN is missing after installing orthanc-dicomweb"
    [ -d "$PYDICOM_TEST_FILES" ] || svc_die "$PYDICOM_TEST_FILES is missing after installing pydicom"
    [ -x "$NGINX_BIN" ] || svc_die "$NGINX_BIN is missing after installing nginx"
    [ -x "$PG_BIN/initdb" ] || svc_die "PostgreSQL 15 is not installed ($PG_BIN/initdb missing): apt-get install postgresql-15"

    # Azurite and the script that creates its container: npm ci when the lock file changed.
    if ! cmp -s "$AZURITE_DIR/package-lock.json" "$AZURITE_DIR/node_modules/.installed-lock.json"; then
        svc_log "installing Azurite with npm ci"
        (cd "$AZURITE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        cp "$AZURITE_DIR/package-lock.json" "$AZURITE_DIR/node_modules/.installed-lock.json"
    fi
}

svc_ports() {
    PG_PORT=${TEST_PG_PORT:-55432}
    AZURITE_PORT=${TEST_AZURITE_PORT:-10000}
    ORTHANC_PORT=${TEST_ORTHANC_PORT:-18042}
}

# True when something accepts TCP connections on 127.0.0.1:$1.
svc_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svc_require_free_port() {
    local port=$1 what=$2 var=$3
    if svc_port_open "$port"; then
        svc_die "port $port for $what is already in use on 127.0.0.1 (a previous run still running? \
try 'deploy/services.sh stop', see 'ss -ltnp | grep :$port', or pick another port with $var=...)"
    fi
}

# True when GET $1 answers 2xx.
svc_http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null
    else
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1" 2>/dev/null
    fi
}

# Fails with the service's log tail.
svc_start_failed() {
    local what=$1 log=$2 why=$3
    {
        printf '[services] ERROR: %s did not start: %s\n' "$what" "$why"
        printf '[services] last lines of %s:\n' "$log"
        tail -n 30 "$log" 2>/dev/null | sed 's/^/    /'
    } >&2
    exit 1
}

# Waits until `$check` succeeds, for at most START_TIMEOUT seconds, while process $pid lives.
svc_wait_until() {
    local what=$1 pid=$2 log=$3 deadline=$((SECONDS + START_TIMEOUT))
    shift 3
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            svc_start_failed "$what" "$log" "the process exited"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            svc_start_failed "$what" "$log" "no answer within ${START_TIMEOUT}s"
        fi
        sleep 0.1
    done
}

# The PostgreSQL commands run as the postgres user when we are root (initdb refuses root).
# From / so that the postgres user never needs to read the current folder.
svc_pg() {
    if [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

# Starts all three with their data in folder $1 (created if needed), and writes $1/env.
svc_start() {
    local dir=$1
    svc_ports
    svc_require_free_port "$PG_PORT" PostgreSQL TEST_PG_PORT
    svc_require_free_port "$AZURITE_PORT" Azurite TEST_AZURITE_PORT
    svc_require_free_port "$ORTHANC_PORT" Orthanc TEST_ORTHANC_PORT
    mkdir -p "$dir"
    chmod 755 "$dir" # the postgres user must reach its folder inside
    local azurite_url="http://127.0.0.1:$AZURITE_PORT/devstoreaccount1"

    # Azurite (blob only)
    mkdir -p "$dir/azurite/data"
    setsid "$AZURITE_DIR/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
        --location "$dir/azurite/data" --skipApiVersionCheck --loose --disableTelemetry \
        </dev/null >"$dir/azurite/azurite.log" 2>&1 &
    echo $! >"$dir/azurite/pid"

    # Orthanc, with a configuration of its own (not Debian's /etc/orthanc)
    mkdir -p "$dir/orthanc/db"
    cat >"$dir/orthanc/orthanc.json" <<EOF
{
  "Name": "nachet-test",
  "StorageDirectory": "$dir/orthanc/db",
  "IndexDirectory": "$dir/orthanc/db",
  "HttpPort": $ORTHANC_PORT,
  "DicomServerEnabled": false,
  "DicomPort": $((ORTHANC_PORT + 1)),
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "SaveJobs": false,
  "Plugins": ["$ORTHANC_DICOMWEB_PLUGIN"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" }
}
EOF
    setsid "$ORTHANC_BIN" "$dir/orthanc/orthanc.json" </dev/null >"$dir/orthanc/orthanc.log" 2>&1 &
    echo $! >"$dir/orthanc/pid"

    # PostgreSQL, while Azurite and Orthanc start
    mkdir -p "$dir/pg"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$dir/pg"
    svc_pg "$PG_BIN/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync \
        >"$dir/pg/initdb.log" 2>&1 || svc_start_failed PostgreSQL "$dir/pg/initdb.log" "initdb failed"
    if ! svc_pg "$PG_BIN/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/pg.log" -w -t "$START_TIMEOUT" \
        -o "-p $PG_PORT -h 127.0.0.1 -k $dir/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
        svc_start_failed PostgreSQL "$dir/pg/pg.log" "pg_ctl start failed"
    fi

    svc_wait_until Azurite "$(cat "$dir/azurite/pid")" "$dir/azurite/azurite.log" svc_port_open "$AZURITE_PORT"
    if ! node "$AZURITE_DIR/create-container.mjs" "$AZURITE_CONTAINER" "$azurite_url" \
        >>"$dir/azurite/azurite.log" 2>&1; then
        svc_start_failed Azurite "$dir/azurite/azurite.log" "cannot create container '$AZURITE_CONTAINER'"
    fi
    svc_wait_until Orthanc "$(cat "$dir/orthanc/pid")" "$dir/orthanc/orthanc.log" \
        svc_http_ok "http://127.0.0.1:$ORTHANC_PORT/system"
    if ! svc_http_ok "http://127.0.0.1:$ORTHANC_PORT/dicom-web/studies"; then
        svc_start_failed Orthanc "$dir/orthanc/orthanc.log" "the DICOMweb plugin does not answer at /dicom-web/"
    fi

    cat >"$dir/env" <<EOF
export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export TEST_AZURITE_URL=$azurite_url
export TEST_AZURITE_CONTAINER=$AZURITE_CONTAINER
export TEST_ORTHANC_URL=http://127.0.0.1:$ORTHANC_PORT
export TEST_DICOM_FILES=$PYDICOM_TEST_FILES
EOF
}

# Waits until the process whose pid is in file $2 exits (it was sent SIGTERM);
# SIGKILL after 20 s. Orthanc takes a few seconds to exit.
svc_wait_exit() {
    local what=$1 pidfile=$2 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        svc_log "$what (pid $pid) did not exit within 20 s of SIGTERM: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it when it is our child, so that the port and the folder are free afterwards.
    wait "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

# Stops whatever runs from folder $1, then deletes the folder. Never fails.
svc_stop() {
    local dir=$1 pidfile
    [ -d "$dir" ] || return 0
    for pidfile in "$dir/orthanc/pid" "$dir/azurite/pid"; do
        if [ -f "$pidfile" ]; then kill -TERM "$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        svc_pg "$PG_BIN/pg_ctl" -D "$dir/pg/data" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            svc_log "PostgreSQL did not stop cleanly (see $dir/pg/pg.log)"
    fi
    svc_wait_exit Azurite "$dir/azurite/pid"
    svc_wait_exit Orthanc "$dir/orthanc/pid"
    rm -rf "$dir"
}

svc_main() {
    local cmd=${1:-}
    case "$cmd" in
    install)
        svc_install
        ;;
    start)
        if [ -f "$SERVICES_POINTER" ] && [ -f "$(cat "$SERVICES_POINTER")/env" ]; then
            svc_log "already started (data in $(cat "$SERVICES_POINTER")); 'deploy/services.sh stop' first to restart"
            exit 0
        fi
        svc_install
        local dir
        dir=$(mktemp -d "${TMPDIR:-/tmp}/nachet-services.XXXXXX")
        mkdir -p "$(dirname "$SERVICES_POINTER")"
        echo "$dir" >"$SERVICES_POINTER"
        if ! (svc_start "$dir"); then
            svc_stop "$dir"
            rm -f "$SERVICES_POINTER"
            exit 1
        fi
        svc_log "started (data and logs in $dir). Load the variables with:"
        # shellcheck disable=SC2016 # printed for the user to run
        echo '  eval "$(deploy/services.sh env)"' >&2
        ;;
    env)
        if ! [ -f "$SERVICES_POINTER" ] || ! [ -f "$(cat "$SERVICES_POINTER")/env" ]; then
            svc_die "the services are not started: deploy/services.sh start"
        fi
        cat "$(cat "$SERVICES_POINTER")/env"
        ;;
    status)
        if [ -f "$SERVICES_POINTER" ] && [ -f "$(cat "$SERVICES_POINTER")/env" ]; then
            echo "data and logs in $(cat "$SERVICES_POINTER")"
            cat "$(cat "$SERVICES_POINTER")/env"
        else
            echo "not started"
        fi
        ;;
    stop)
        if [ -f "$SERVICES_POINTER" ]; then
            svc_stop "$(cat "$SERVICES_POINTER")"
            rm -f "$SERVICES_POINTER"
            svc_log "stopped"
        else
            svc_log "not started"
        fi
        ;;
    *)
        echo "usage: deploy/services.sh install|start|env|status|stop" >&2
        exit 2
        ;;
    esac
}

# Run as a command (not sourced by run-tests.sh).
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    svc_main "$@"
fi
