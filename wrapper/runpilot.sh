#!/bin/bash
# runpilot.sh: start the pilot on a batch worker node, forward the batch system's signals to it, and exit with
# its exit code. Written for this pilot; behaviour follows what sites expect of PanDA's pilot wrapper
# (spec launchers.md §1), without its two faults: exit 146 on scancel and a hang when only the wrapper is
# signalled.
#
# usage: runpilot.sh [wrapper options] -q QUEUE [pilot options...]
#   --piloturl local|PATH|URL   pilot code: 'local' (default) = the pilot.py next to this script or in the
#                               current dir; a directory; a tarball path; or an http(s) URL of a tarball
#   --python PATH               Python for the pilot (default: $PILOT_PYTHON, the pilot's .venv, python3)
#   --min-space-mb N            free space needed in the work dir (default 2048; exit 69 below it)
#   --grace N                   seconds the pilot gets after a forwarded signal before SIGKILL (default 90)
#   --keep                      keep the private work dir
#   --wrapper-help              this text
# Every other option goes to the pilot unchanged. Exit code: the pilot's (128+N when it died of signal N;
# 137 when the wrapper had to SIGKILL it); wrapper failures: 1 (no usable Python or pilot code), 69 (space).
set -u

LAUNCH_DIR=$(pwd)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PILOT_URL=local
PYTHON_BIN=${PILOT_PYTHON:-}
MIN_SPACE_MB=2048
GRACE=90
KEEP=0
QUEUE=""
PILOT_ARGS=()
START=$(date +%s)

log() { echo "$(date -u '+%Y-%m-%d %H:%M:%S') [wrapper] $*" >&2; }
die() { local code=$1; shift; log "ERROR: $*"; summary "$code"; exit "$code"; }
summary() { echo "runpilot: pilot exit $1 after $(( $(date +%s) - START )) s, queue ${QUEUE:-?}, host $(hostname)" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --piloturl) PILOT_URL=$2; shift 2 ;;
        --piloturl=*) PILOT_URL=${1#*=}; shift ;;
        --python) PYTHON_BIN=$2; shift 2 ;;
        --min-space-mb) MIN_SPACE_MB=$2; shift 2 ;;
        --grace) GRACE=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --wrapper-help) sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -q|--queue) QUEUE=$2; PILOT_ARGS+=("$1" "$2"); shift 2 ;;
        --queue=*) QUEUE=${1#*=}; PILOT_ARGS+=("$1"); shift ;;
        *) PILOT_ARGS+=("$1"); shift ;;
    esac
done
[ -n "$QUEUE" ] || die 1 "no queue: -q QUEUE is required"

# --- where we are -------------------------------------------------------------------------------------------
log "runpilot.sh starting: host $(hostname -f 2>/dev/null || hostname), user $(id -un) ($(id -u)), $(uname -srm)"
[ -r /etc/os-release ] && log "OS: $(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")"
log "launch dir $LAUNCH_DIR; batch job ${SLURM_JOB_ID:-${PBS_JOBID:-${CONDOR_JOBID:-${_CONDOR_JOB_AD:+condor}}}}"
log "limits: cpu $(ulimit -t), vmem $(ulimit -v), files $(ulimit -n), procs $(ulimit -u)"
log "command: $0 ${PILOT_ARGS[*]}"

WORK=$(mktemp -d "${TMPDIR:-$LAUNCH_DIR}/runpilot.XXXXXX") || die 1 "cannot create a private work dir"
cleanup() {
    if [ "$KEEP" = 1 ]; then log "keeping $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_mb=$(df -Pm "$WORK" | awk 'NR==2 {print $4}')
log "free space in $WORK: ${free_mb} MB (need $MIN_SPACE_MB)"
[ "${free_mb:-0}" -ge "$MIN_SPACE_MB" ] || die 69 "not enough local space: ${free_mb} MB < $MIN_SPACE_MB MB"

# --- credentials (the pilot enforces the limits; the wrapper reports what it sees) ----------------------------
proxy=${X509_USER_PROXY:-/tmp/x509up_u$(id -u)}
if [ -f "$proxy" ]; then
    if command -v openssl >/dev/null 2>&1; then
        end=$(openssl x509 -in "$proxy" -noout -enddate 2>/dev/null | cut -d= -f2)
        end_s=$(date -d "$end" +%s 2>/dev/null || echo 0)
        log "X509 proxy $proxy: $(( (end_s - $(date +%s)) / 60 )) min left"
    else
        log "X509 proxy $proxy present (no openssl to read its lifetime)"
    fi
fi
token=${OIDC_AUTH_TOKEN:-${PANDA_AUTH_TOKEN:-}}
if [ -n "$token" ]; then
    case "$token" in /*) tpath=$token ;; *) tpath=${OIDC_AUTH_DIR:-${PANDA_AUTH_DIR:-$LAUNCH_DIR}}/$token ;; esac
    if [ -r "$tpath" ]; then log "token file $tpath present"; else log "WARNING: token file $tpath not readable"; fi
fi

# --- the pilot code ---------------------------------------------------------------------------------------------
fetch_tarball() {  # $1 = URL or path -> unpacked into $WORK/pilot
    local src=$1 tarball="$WORK/pilot.tar.gz"
    case "$src" in
        http://*|https://*)
            if command -v curl >/dev/null 2>&1; then
                curl -sSfL --connect-timeout 30 --max-time 300 -o "$tarball" "$src" || return 1
            else
                python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
                    "$src" "$tarball" || return 1
            fi ;;
        *) cp "$src" "$tarball" || return 1 ;;
    esac
    mkdir -p "$WORK/pilot" && tar -xzf "$tarball" -C "$WORK/pilot" || return 1
}
case "$PILOT_URL" in
    local)
        if [ -f "$HERE/../pilot.py" ]; then PILOT_DIR=$(cd "$HERE/.." && pwd)
        elif [ -f "$LAUNCH_DIR/pilot.py" ]; then PILOT_DIR=$LAUNCH_DIR
        else die 1 "--piloturl local: no pilot.py next to the wrapper or in $LAUNCH_DIR"; fi ;;
    *)
        if [ -d "$PILOT_URL" ]; then PILOT_DIR=$(cd "$PILOT_URL" && pwd)
        else
            fetch_tarball "$PILOT_URL" || die 1 "cannot get the pilot from $PILOT_URL"
            PILOT_DIR="$WORK/pilot"
        fi ;;
esac
[ -f "$PILOT_DIR/pilot.py" ] && [ -d "$PILOT_DIR/pilot" ] || die 1 "incomplete pilot code in $PILOT_DIR"
log "pilot code in $PILOT_DIR, version $(cat "$PILOT_DIR/PILOTVERSION" 2>/dev/null || echo "(checkout)")"

# --- Python -------------------------------------------------------------------------------------------------
if [ -z "$PYTHON_BIN" ]; then
    if [ -x "$PILOT_DIR/.venv/bin/python" ]; then PYTHON_BIN=$PILOT_DIR/.venv/bin/python
    else PYTHON_BIN=$(command -v python3 || true); fi
fi
[ -n "$PYTHON_BIN" ] && [ -x "$(command -v "$PYTHON_BIN")" ] || die 1 "no Python found (set PILOT_PYTHON or --python)"
if ! "$PYTHON_BIN" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
    die 1 "$PYTHON_BIN is older than Python 3.9"
fi
if ! missing=$("$PYTHON_BIN" -c 'import psutil, requests' 2>&1); then
    die 1 "$PYTHON_BIN lacks the pilot's dependencies (pip install psutil requests): ${missing##*$'\n'}"
fi
log "python: $("$PYTHON_BIN" -c 'import sys; print(sys.version.split()[0])') ($PYTHON_BIN)"

# pre-placed files for the pilot (job definition, queue data) go with it into the private dir
for f in pandaJobData.out queuedata.json; do
    [ -f "$LAUNCH_DIR/$f" ] && cp "$LAUNCH_DIR/$f" "$WORK/"
done

# --- run and supervise ----------------------------------------------------------------------------------------
PILOT_PID=""
KILLER_PID=""
forward() {  # $1 = signal name
    if [ -z "$PILOT_PID" ]; then log "caught SIG$1 before the pilot started: exiting"; summary 143; exit 143; fi
    log "caught SIG$1: forwarding to the pilot (pid $PILOT_PID)"
    kill -s "$1" "$PILOT_PID" 2>/dev/null
    if [ -z "$KILLER_PID" ]; then  # one deadline, from the first signal
        ( sleep "$GRACE" & timer=$!
          trap 'kill $timer 2>/dev/null; exit 0' TERM
          wait "$timer"
          if kill -0 "$PILOT_PID" 2>/dev/null; then
              echo "$(date -u '+%Y-%m-%d %H:%M:%S') [wrapper] pilot still running ${GRACE} s after the signal: SIGKILL" >&2
              kill -9 "$PILOT_PID" 2>/dev/null
          fi ) &
        KILLER_PID=$!
    fi
}
for sig in TERM INT QUIT USR1 XCPU HUP; do
    # shellcheck disable=SC2064
    trap "forward $sig" "$sig"
done
trap 'log "caught SIGCONT (job resumed)"; [ -n "$PILOT_PID" ] && kill -s CONT "$PILOT_PID" 2>/dev/null' CONT

log "BEGIN pilot: $PYTHON_BIN $PILOT_DIR/pilot.py ${PILOT_ARGS[*]}"
cd "$WORK" || die 1 "cannot enter $WORK"
"$PYTHON_BIN" "$PILOT_DIR/pilot.py" "${PILOT_ARGS[@]}" &
PILOT_PID=$!
# a trapped signal interrupts `wait`; only the pilot's own end counts (never a bare `wait`, which would also
# wait for the grace timer)
while kill -0 "$PILOT_PID" 2>/dev/null; do
    wait "$PILOT_PID"
done
wait "$PILOT_PID"
rc=$?
log "END pilot: exit $rc"
if [ -n "$KILLER_PID" ]; then kill "$KILLER_PID" 2>/dev/null; wait "$KILLER_PID" 2>/dev/null; fi
cd "$LAUNCH_DIR" || true
summary "$rc"
exit "$rc"
