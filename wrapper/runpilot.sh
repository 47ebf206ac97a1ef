#!/bin/bash
# runpilot.sh - batch wrapper for the pilot: check the node, get the pilot code, pick a Python, run the pilot
# as a child, forward the batch system's signals to it, and exit with its exit code.
#
# usage: runpilot.sh [wrapper options] -q QUEUE [pilot options...] [-- pilot options...]
#
# wrapper options:
#   --piloturl local|DIR|TARBALL|URL   pilot code (default local: ./pilot.py, ./pilot3/, ./pilot3.tar.gz or
#                                      ./pilot.tar.gz in the launch dir, else the checkout holding this script);
#                                      TARBALL is a path or file:// URL, URL is http(s) (curl, else Python)
#   --python PY                        Python for the pilot (default: $PILOT_PYTHON, the .venv next to pilot.py,
#                                      python3 from PATH); must be >= 3.9 and import psutil and requests
#   --localpy                          take python3 from PATH (ignore $PILOT_PYTHON and the pilot's .venv)
#   --pythonversion 3                  accepted for compatibility; anything but 3 is an error
#   --min-space-mb N                   free space needed where the pilot works (default 2048, 0 = no check)
#   --grace S                          seconds the pilot gets after a forwarded signal before it and its
#                                      processes are SIGKILLed (default 90)
#   --workdir-base DIR                 where the private work dir is made (default $TMPDIR, else the launch dir)
#   --keep                             keep the private work dir at the end
#   --harvester ID                     Harvester mode: the pilot runs in the launch dir (the access point)
#   -t                                 skip the proxy report (also passed to the pilot)
#   -h, --help                         this text
# Accepted and ignored (production wrapper options): --pilotversion V, --cvmfsbase DIR, --harvester_workflow W,
# --container, --mute, --alma9, -S/--shoal.
# Every other argument goes to the pilot unchanged, except that relative paths given to the pilot's path options
# (-a, --queuedata-url, --config, --job-source local:DIR, ...) are made absolute against the launch dir, since
# the pilot runs in the private work dir.
#
# environment: PILOT_PYTHON, RUNPILOT_GRACE, RUNPILOT_MIN_SPACE_MB, RUNPILOT_WORKDIR_BASE, RUNPILOT_KEEP=1
#
# exit code: the pilot's (128+N when it died of signal N; 143 after scancel; 137 when the wrapper had to SIGKILL
# it after the grace); wrapper failures: 1 usage, no usable Python, no work dir; 64 pilot code not available
# or incomplete; 69 not enough space; 128+N when signal N came before the pilot started.
# The last line is a summary: "runpilot: pilot exit 0 after 12 s, queue Q, host H".
# A pilot that died of a signal (SIGKILL: it could not clean up) gets its payload swept by
# `python -m pilot.recovery` from the records it left in its main work dir.

# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
set -u

printf -v START '%(%s)T' -1
LAUNCH_DIR=$(pwd)
SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HOST=$(uname -n)  # not hostname -f: it may wait for DNS
CALL=$(printf '%q ' "$0" "$@")

PILOT_URL=local
PYTHON_OPT=""
LOCALPY=0
MIN_SPACE_MB=${RUNPILOT_MIN_SPACE_MB:-2048}
GRACE=${RUNPILOT_GRACE:-90}
WORK_BASE=${RUNPILOT_WORKDIR_BASE:-}
KEEP=${RUNPILOT_KEEP:-0}
HARVESTER=""
NOPROXY=0
QUEUE=""
PILOT_ARGS=()

PRIVATE=""        # our private dir (pilot code, checks; the pilot's run dir unless --harvester)
RUN_DIR=""        # where the pilot runs
PAUSE_FD=""       # fd 9 on a private fifo when there is one: `read -t` on it is a sleep without a process
PILOT_PID=""
LAUNCHING=0
PENDING_SIG=""
PILOT_DONE=0
TRAPPED=0
FIRST_SIGNAL=""
DEADLINE_MS=""
KILLED=0
WHY=""            # reason of a wrapper failure, for the summary
BG_PID=""         # a download or check running in the background
WAIT_RC=0
TREE=()

# Nothing that runs while the pilot runs (log lines, signal handlers, the supervision loop) starts a process
# and waits for it: when bash waits for any child it may reap the pilot too, and a pilot reaped at the wrong
# moment can leave `wait` for it blocked (seen with bash 5.2). Hence builtins only from the pilot's start on.
now() { printf -v NOW '%(%s)T' -1; }  # NOW = epoch seconds
now_ms() {  # NOW_MS = epoch milliseconds (whole seconds rounded up without bash 5's EPOCHREALTIME)
    local t=${EPOCHREALTIME:-} ms
    if [ -n "$t" ]; then ms=${t#*[.,]}000; NOW_MS=$(( ${t%[.,]*} * 1000 + 10#${ms:0:3} ))
    else now; NOW_MS=$(( (NOW + 1) * 1000 )); fi
}
utc_stamp() {  # STAMP = "YYYY-mm-dd HH:MM:SS,mmm" in UTC (civil-from-days, H. Hinnant), without a process
    local t=${EPOCHREALTIME:-} sec ms z era doe yoe doy mp y m d
    if [ -n "$t" ]; then sec=${t%[.,]*}; ms=${t#*[.,]}; ms=${ms:0:3}; else now; sec=$NOW; ms=000; fi
    z=$(( sec / 86400 + 719468 )); era=$(( z / 146097 )); doe=$(( z - era * 146097 ))
    yoe=$(( (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365 ))
    doy=$(( doe - (365 * yoe + yoe / 4 - yoe / 100) )); mp=$(( (5 * doy + 2) / 153 ))
    d=$(( doy - (153 * mp + 2) / 5 + 1 )); m=$(( mp < 10 ? mp + 3 : mp - 9 )); y=$(( yoe + era * 400 + (m <= 2) ))
    printf -v STAMP '%04d-%02d-%02d %02d:%02d:%02d,%s' "$y" "$m" "$d" $(( sec % 86400 / 3600 )) \
        $(( sec % 3600 / 60 )) $(( sec % 60 )) "$ms"
}
log() { local STAMP; utc_stamp; printf '%s [wrapper] %s\n' "$STAMP" "$*" >&2; }
die() { local code=$1; shift; WHY=$*; log "ERROR: $*"; exit "$code"; }

usage() { sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed -e 's/^# \{0,1\}//'; }

summary() {
    local rc=$1 what
    if [ -n "$PILOT_PID" ]; then
        what="pilot exit $rc"
        if [ "$KILLED" = 1 ]; then what+=" (SIGKILLed by the wrapper ${GRACE} s after SIG$FIRST_SIGNAL)"
        elif [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then what+=" (SIG$(kill -l "$((rc - 128))" 2>/dev/null))"; fi
    else
        what="wrapper exit $rc, pilot not started${WHY:+ ($WHY)}"
    fi
    now
    echo "runpilot: $what after $(( NOW - START )) s, queue ${QUEUE:-?}, host $HOST" >&2
}

on_exit() {
    local rc=$?
    if [ -n "$BG_PID" ]; then kill "$BG_PID" 2>/dev/null; fi
    cd / 2>/dev/null
    if [ -n "$PRIVATE" ]; then
        if [ "$KEEP" = 1 ]; then log "keeping the private work dir $PRIVATE"
        else rm -rf "$PRIVATE"; fi
    fi
    summary "$rc"
    exit "$rc"
}
trap on_exit EXIT
# a closed stdout/stderr (the batch system's or a caller's pipe gone) must not kill the wrapper when it logs
trap '' PIPE

# --- signals --------------------------------------------------------------------------------------------------
# Installed first, so that a signal at any time is handled. Before the pilot runs, a signal ends the wrapper
# (128+N); while it runs, the signal is forwarded to the pilot only (the pilot stops its payload itself) and the
# wrapper keeps waiting for it. A second delivery (scancel signals every process of the job, so the pilot also
# gets it directly) is harmless: the pilot ignores signals once it is stopping. The first forwarded signal sets
# the grace deadline, after which the pilot's whole process tree is SIGKILLed.
on_signal() {  # $1 = name, $2 = number
    TRAPPED=1
    if [ "$PILOT_DONE" = 1 ]; then log "caught SIG$1 after the pilot ended: ignored"; return; fi
    if [ -z "$PILOT_PID" ]; then
        if [ "$LAUNCHING" = 1 ]; then PENDING_SIG="$1 $2"; return; fi
        WHY="SIG$1 before the pilot started"
        log "caught SIG$1 before the pilot started: exiting"
        exit $((128 + $2))
    fi
    kill -s "$1" "$PILOT_PID" 2>/dev/null  # first, then the log line
    log "caught SIG$1: forwarded it to the pilot (pid $PILOT_PID)"
    if [ -z "$FIRST_SIGNAL" ]; then
        FIRST_SIGNAL=$1
        now_ms
        DEADLINE_MS=$(( NOW_MS + GRACE * 1000 ))
        log "the pilot has $GRACE s to exit before it is SIGKILLed"
    fi
}
for sig in TERM INT QUIT USR1 XCPU HUP; do
    # shellcheck disable=SC2064
    trap "on_signal $sig $(kill -l "$sig")" "$sig"
    # bash cannot trap a signal that was ignored when it started (e.g. SIGINT/SIGQUIT for a job started from a
    # background shell): the trap is silently not set, so say so rather than lose that signal without a word
    if [ "$(trap -p "$sig")" = "trap -- '' SIG$sig" ]; then
        log "WARNING: SIG$sig was ignored when the wrapper started and cannot be trapped: SIG$sig sent to the" \
            "wrapper alone will not reach the pilot"
    fi
done
# SIGUSR2 is not one the pilot handles; untrapped, it would end the wrapper and orphan the pilot
trap 'TRAPPED=1; log "caught SIGUSR2: ignored"' USR2
# SIGCONT (scancel sends it just before SIGTERM) is deliberately NOT trapped: untrapped, it cannot interrupt
# `wait` (the production wrapper's exit 146), and with a trap on it bash 5.2 often loses the SIGTERM trap that
# follows. A resume needs nothing from the wrapper: the batch system resumes every process of the job.

descendants() {  # $1 = pid -> TREE = $1 and all its descendants, parents first (from /proc, builtins only)
    local f line rest pid ppid i=0
    local -A kids=()
    for f in /proc/[0-9]*/stat; do
        { read -r line < "$f"; } 2>/dev/null || continue
        pid=${line%% *}
        rest=${line##*) }       # after the command name, which may hold spaces and parentheses
        ppid=${rest#* }; ppid=${ppid%% *}
        kids[$ppid]+=" $pid"
    done
    TREE=("$1")
    while [ "$i" -lt ${#TREE[@]} ]; do
        # shellcheck disable=SC2206
        TREE+=(${kids[${TREE[$i]}]:-})
        i=$((i + 1))
    done
}

kill_pilot_tree() {
    # freeze the tree first so that nothing forks while it is being killed
    kill -s STOP "$PILOT_PID" 2>/dev/null
    descendants "$PILOT_PID"
    kill -s STOP "${TREE[@]}" 2>/dev/null
    descendants "$PILOT_PID"
    log "the pilot is still running $GRACE s after SIG$FIRST_SIGNAL: SIGKILL to it and its processes (${TREE[*]})"
    KILLED=1
    kill -s KILL "${TREE[@]}" 2>/dev/null
}

pause() {  # about 0.1 s; a trapped signal cuts it short
    if [ -n "$PAUSE_FD" ]; then read -r -t 0.1 -u "$PAUSE_FD" _; else sleep 0.1; fi
}

is_zombie() {  # $1 = pid
    local line
    { read -r line < "/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    [ "${line%% *}" = Z ]
}

# A trapped signal interrupts `wait`, which then returns 128+N of the *signal*, not the child's status (146 for
# SIGCONT: the production wrapper's fault). Until the first trapped signal, `wait` for the child is all there
# is; after it, the wrapper polls for the child's end (bash 5.2 can stay blocked in `wait` for a child that ended
# while a trap ran), applies the grace deadline, and then asks bash for the status it kept. Never a bare `wait`.
wait_for() {  # $1 = pid of a background child -> WAIT_RC = its exit status (128+N if it died of signal N)
    local again
    TRAPPED=0
    wait "$1"
    WAIT_RC=$?
    [ "$TRAPPED" = 1 ] || return 0
    while kill -0 "$1" 2>/dev/null && ! is_zombie "$1"; do
        if [ "$1" = "$PILOT_PID" ] && [ -n "$DEADLINE_MS" ] && [ "$KILLED" = 0 ]; then
            now_ms
            [ "$NOW_MS" -lt "$DEADLINE_MS" ] || kill_pilot_tree
        fi
        pause
    done
    wait "$1"
    again=$?
    if [ "$again" -ge 0 ] && [ "$again" -le 255 ] && [ "$again" -ne 127 ]; then WAIT_RC=$again; fi
}

interruptible() {  # [--out FILE] command...: run it in the background, so that signals are acted on at once
    # (not a redirection of the call: that would also catch what the signal handlers and the exit trap print)
    if [ "$1" = --out ]; then
        local outfile=$2
        shift 2
        "$@" > "$outfile" 2>&1 9>&- &
    else
        "$@" 9>&- &
    fi
    BG_PID=$!
    wait_for "$BG_PID"
    BG_PID=""
    return "$WAIT_RC"
}

# --- options --------------------------------------------------------------------------------------------------
need() { [ $# -ge 2 ] || { usage >&2; die 1 "option $1 needs a value"; }; }
anchor() {  # a relative path given to the pilot, made absolute against the launch dir
    case "$1" in
        /*|*://*|"") printf '%s' "$1" ;;
        *) printf '%s' "$LAUNCH_DIR/$1" ;;
    esac
}
pass_path_option() {  # $1 = option as given (maybe --opt=value), $2 = value or ""; prints the value to pass
    local name=${1%%=*}
    name=${name//_/-}
    case "$name" in
        --job-source)
            case "$2" in
                local:?*) printf 'local:%s' "$(anchor "${2#local:}")" ;;
                *) printf '%s' "$2" ;;
            esac ;;
        *) anchor "$2" ;;
    esac
}
is_path_option() {
    local name=${1%%=*}
    case "${name//_/-}" in
        -a|--workdir|--queuedata-url|--storagedata-url|--config|--input-dir|--input-destination-dir|--output-dir|\
        --harvester-workdir|--harvester-datadir|--harvester-eventstatusdump|--harvester-workerattributes|\
        --redirect-stdout|--replay-spool|--cacert|--capath|--job-source) return 0 ;;
    esac
    return 1
}

PILOT_WORKDIR=""  # the pilot's -a, for the space check
while [ $# -gt 0 ]; do
    case "$1" in
        --piloturl) need "$@"; PILOT_URL=$2; shift 2 ;;
        --piloturl=*) PILOT_URL=${1#*=}; shift ;;
        --python) need "$@"; PYTHON_OPT=$2; shift 2 ;;
        --python=*) PYTHON_OPT=${1#*=}; shift ;;
        --localpy) LOCALPY=1; shift ;;
        --pythonversion) need "$@"; [ "$2" = 3 ] || die 1 "--pythonversion $2: only Python 3 is supported"; shift 2 ;;
        --min-space-mb) need "$@"; MIN_SPACE_MB=$2; shift 2 ;;
        --grace) need "$@"; GRACE=$2; shift 2 ;;
        --workdir-base) need "$@"; WORK_BASE=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --harvester) need "$@"; HARVESTER=$2; shift 2 ;;
        --pilotversion|--cvmfsbase|--harvester_workflow)
            need "$@"; log "option $1 $2 is not used by this wrapper: ignored"; shift 2 ;;
        --container|--mute|--alma9|-S|--shoal) log "option $1 is not used by this wrapper: ignored"; shift ;;
        -h|--help) usage; trap - EXIT; exit 0 ;;
        -t) NOPROXY=1; PILOT_ARGS+=("$1"); shift ;;
        -q|--queue) need "$@"; QUEUE=$2; PILOT_ARGS+=("$1" "$2"); shift 2 ;;
        --queue=*) QUEUE=${1#*=}; PILOT_ARGS+=("$1"); shift ;;
        --) shift; PILOT_ARGS+=("$@"); break ;;
        --*=*)
            if is_path_option "$1"; then
                case "${1%%=*}" in --workdir) PILOT_WORKDIR=$(anchor "${1#*=}") ;; esac
                PILOT_ARGS+=("${1%%=*}=$(pass_path_option "$1" "${1#*=}")")
            else
                PILOT_ARGS+=("$1")
            fi
            shift ;;
        *)
            if is_path_option "$1" && [ $# -ge 2 ]; then
                case "$1" in -a|--workdir) PILOT_WORKDIR=$(anchor "$2") ;; esac
                PILOT_ARGS+=("$1" "$(pass_path_option "$1" "$2")"); shift 2
            else
                PILOT_ARGS+=("$1"); shift
            fi ;;
    esac
done
case "$GRACE" in ''|*[!0-9]*) die 1 "--grace $GRACE: a number of seconds is needed" ;; esac
case "$MIN_SPACE_MB" in ''|*[!0-9]*) die 1 "--min-space-mb $MIN_SPACE_MB: a number of MB is needed" ;; esac
if [ -z "$QUEUE" ]; then usage >&2; die 1 "no queue: -q QUEUE is required"; fi

# --- where we are ---------------------------------------------------------------------------------------------
log "==== runpilot.sh BEGIN ===="
log "host $HOST, user $(id -un 2>/dev/null || echo '?') (uid $(id -u), gid $(id -g)), $(uname -srm)"
# shellcheck disable=SC1091
[ -r /etc/os-release ] && log "OS: $(. /etc/os-release && echo "${PRETTY_NAME:-${NAME:-unknown}}")"
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
memory=$(awk '/^MemTotal/ {printf "%d MB", $2 / 1024}' /proc/meminfo 2>/dev/null)
log "cpus $(nproc 2>/dev/null || echo '?')${cpu_model:+ ($cpu_model)}, memory ${memory:-?}"
log "launch dir $LAUNCH_DIR, TMPDIR ${TMPDIR:-(unset)}"
batch=""
[ -n "${SLURM_JOB_ID:-}" ] && batch+=" slurm=$SLURM_JOB_ID"
[ -n "${PBS_JOBID:-}" ] && batch+=" pbs=$PBS_JOBID"
[ -n "${LSB_JOBID:-}" ] && batch+=" lsf=$LSB_JOBID"
if [ -n "${_CONDOR_JOB_AD:-}" ]; then
    batch+=" condor=$(awk -F' = ' '/^GlobalJobId/ {gsub(/"/, "", $2); print $2}' "$_CONDOR_JOB_AD" 2>/dev/null)"
fi
[ -n "${HARVESTER_ID:-}${HARVESTER_WORKER_ID:-}" ] && batch+=" harvester=${HARVESTER_ID:-?}/${HARVESTER_WORKER_ID:-?}"
log "batch job:${batch:- none seen}"
log "limits: cpu time $(ulimit -t), virtual memory $(ulimit -v), resident $(ulimit -m), file size $(ulimit -f)," \
    "open files $(ulimit -n), processes $(ulimit -u), stack $(ulimit -s)"
log "call: $CALL"

# --- private work dir and space -------------------------------------------------------------------------------
base=$WORK_BASE
if [ -z "$base" ]; then
    base=$LAUNCH_DIR
    if [ -n "${TMPDIR:-}" ] && [ -d "$TMPDIR" ] && [ -w "$TMPDIR" ]; then base=$TMPDIR; fi
fi
if ! PRIVATE=$(mktemp -d "$base/runpilot.XXXXXX" 2>/dev/null); then
    PRIVATE=""
    die 1 "cannot create a private work dir in $base"
fi
if mkfifo "$PRIVATE/.pause" 2>/dev/null && exec 9<>"$PRIVATE/.pause"; then PAUSE_FD=9; fi
if [ -n "$HARVESTER" ]; then
    RUN_DIR=$LAUNCH_DIR
    export HARVESTER_PILOT_WORKDIR=$LAUNCH_DIR
    log "Harvester mode (node $HARVESTER): the pilot runs in the launch dir; private dir $PRIVATE"
else
    RUN_DIR=$PRIVATE
    log "private work dir $PRIVATE"
fi

space_dir=${PILOT_WORKDIR:-$RUN_DIR}
while [ ! -d "$space_dir" ] && [ "$space_dir" != / ]; do space_dir=$(dirname "$space_dir"); done
free_mb=$(df -Pm "$space_dir" 2>/dev/null | awk 'NR == 2 {print $4}')
log "free space in $space_dir: ${free_mb:-?} MB (need $MIN_SPACE_MB MB)"
if [ "$MIN_SPACE_MB" -gt 0 ]; then
    [ -n "$free_mb" ] || die 69 "cannot measure the free space in $space_dir"
    if [ "$free_mb" -lt "$MIN_SPACE_MB" ]; then
        die 69 "not enough local space in $space_dir: $free_mb MB free, $MIN_SPACE_MB MB needed"
    fi
fi

# --- credentials: report (the pilot enforces the limits) ------------------------------------------------------
if [ "$NOPROXY" = 1 ]; then
    log "X509 proxy: not checked (-t)"
else
    proxy=${X509_USER_PROXY:-/tmp/x509up_u$(id -u)}
    if [ -n "${X509_USER_PROXY:-}" ]; then
        proxy=$(anchor "$proxy"); export X509_USER_PROXY=$proxy
    fi
    if [ ! -e "$proxy" ]; then
        if [ -n "${X509_USER_PROXY:-}" ]; then log "WARNING: X509_USER_PROXY=$proxy does not exist"
        else log "X509 proxy: none ($proxy absent; fine with token authentication or a local queue)"; fi
    elif ! command -v openssl >/dev/null 2>&1; then
        log "X509 proxy $proxy present (no openssl to read its lifetime)"
    elif ! end=$(openssl x509 -in "$proxy" -noout -enddate 2>/dev/null); then
        log "WARNING: X509 proxy $proxy cannot be read as a certificate"
    else
        end=${end#notAfter=}
        if end_s=$(date -d "$end" +%s 2>/dev/null); then
            now; left=$(( end_s - NOW ))
            if [ "$left" -le 0 ]; then log "WARNING: X509 proxy $proxy EXPIRED at $end"
            else log "X509 proxy $proxy valid until $end: $(( left / 3600 )) h $(( left % 3600 / 60 )) min left"; fi
        else
            log "X509 proxy $proxy valid until $end"
        fi
    fi
fi
jwt_exp() {  # $1 = token file -> its exp claim (epoch seconds), if it is a JWT
    local part
    part=$(tr -d '[:space:]' < "$1" | cut -d. -f2 | tr '_-' '/+')
    while [ $(( ${#part} % 4 )) -ne 0 ]; do part+="="; done
    printf '%s' "$part" | base64 -d 2>/dev/null | grep -o '"exp"[[:space:]]*:[[:space:]]*[0-9]*' | grep -o '[0-9]*$'
}
token_name=${OIDC_AUTH_TOKEN:-${PANDA_AUTH_TOKEN:-}}
if [ -n "$token_name" ]; then
    token_dir=${OIDC_AUTH_DIR:-${PANDA_AUTH_DIR:-}}
    case "$token_name" in
        /*) token=$token_name ;;
        *) if [ -z "$token_dir" ]; then  # the pilot looks in its cwd, which is not the launch dir
               export OIDC_AUTH_DIR=$LAUNCH_DIR PANDA_AUTH_DIR=$LAUNCH_DIR; token_dir=$LAUNCH_DIR
           fi
           token=$token_dir/$token_name ;;
    esac
    if [ ! -r "$token" ]; then
        log "WARNING: token file $token is not readable"
    elif exp=$(jwt_exp "$token") && [ -n "$exp" ]; then
        now; left=$(( exp - NOW ))
        if [ "$left" -le 0 ]; then log "WARNING: token $token EXPIRED $(( -left / 60 )) min ago"
        else log "token $token: $(( left / 3600 )) h $(( left % 3600 / 60 )) min left"; fi
    else
        log "token $token present (lifetime unknown: not a JWT)"
    fi
else
    log "token: none (OIDC_AUTH_TOKEN/PANDA_AUTH_TOKEN unset)"
fi

# --- the pilot code -------------------------------------------------------------------------------------------
fetch_and_unpack() {  # $1 = URL or path of a tarball -> sets PILOT_DIR
    local src=$1 tarball="$PRIVATE/pilot.tar.gz" dest="$PRIVATE/pilot-code" found
    case "$src" in
        http://*|https://*)
            log "downloading the pilot from $src"
            if command -v curl >/dev/null 2>&1; then
                interruptible curl -sSfL --connect-timeout 30 --max-time 300 --retry 2 -o "$tarball" "$src" || return 1
            else
                local py
                py=${PILOT_PYTHON:-$(command -v python3)} || return 1
                interruptible "$py" -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as reply, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(reply, out)' "$src" "$tarball" || return 1
            fi ;;
        file://*) cp "${src#file://}" "$tarball" || return 1 ;;
        *) cp "$(anchor "$src")" "$tarball" || return 1 ;;
    esac
    if ! { mkdir -p "$dest" && tar -xf "$tarball" -C "$dest"; }; then
        log "cannot unpack $src"
        return 1
    fi
    rm -f "$tarball"
    PILOT_DIR=$dest
    if [ ! -f "$dest/pilot.py" ]; then  # a tarball with one top directory (pilot3/pilot.py)
        found=$(find "$dest" -mindepth 2 -maxdepth 2 -name pilot.py -type f | head -n 1)
        [ -z "$found" ] || PILOT_DIR=$(dirname "$found")
    fi
    return 0
}
PILOT_DIR=""
case "$PILOT_URL" in
    local)
        if [ -f "$LAUNCH_DIR/pilot.py" ]; then PILOT_DIR=$LAUNCH_DIR
        elif [ -f "$LAUNCH_DIR/pilot3/pilot.py" ]; then PILOT_DIR=$LAUNCH_DIR/pilot3
        elif [ -f "$LAUNCH_DIR/pilot3.tar.gz" ]; then
            fetch_and_unpack "$LAUNCH_DIR/pilot3.tar.gz" || die 64 "cannot unpack $LAUNCH_DIR/pilot3.tar.gz"
        elif [ -f "$LAUNCH_DIR/pilot.tar.gz" ]; then
            fetch_and_unpack "$LAUNCH_DIR/pilot.tar.gz" || die 64 "cannot unpack $LAUNCH_DIR/pilot.tar.gz"
        elif [ -f "$SELF_DIR/../pilot.py" ]; then PILOT_DIR=$(cd "$SELF_DIR/.." && pwd)
        else
            die 64 "--piloturl local: no pilot.py, pilot3/, pilot3.tar.gz or pilot.tar.gz in $LAUNCH_DIR," \
                   "and no pilot.py next to $SELF_DIR"
        fi ;;
    *)
        if [ -d "$(anchor "$PILOT_URL")" ]; then PILOT_DIR=$(cd "$(anchor "$PILOT_URL")" && pwd)
        else fetch_and_unpack "$PILOT_URL" || die 64 "cannot get the pilot from $PILOT_URL"; fi ;;
esac
[ -f "$PILOT_DIR/pilot.py" ] || die 64 "no pilot.py in the pilot code from $PILOT_URL ($PILOT_DIR)"
[ -d "$PILOT_DIR/pilot" ] || die 64 "incomplete pilot code from $PILOT_URL: no pilot/ package in $PILOT_DIR"
if [ -f "$PILOT_DIR/PILOTVERSION" ]; then version=$(head -n 1 "$PILOT_DIR/PILOTVERSION")
else version=$(sed -n 's/^__version__ *= *["'\'']\(.*\)["'\'']/\1/p' "$PILOT_DIR/pilot/__init__.py" 2>/dev/null); fi
log "pilot code in $PILOT_DIR, version ${version:-unknown}"

# --- Python ---------------------------------------------------------------------------------------------------
if [ -n "$PYTHON_OPT" ]; then candidate=$PYTHON_OPT; from="--python"
elif [ "$LOCALPY" = 1 ]; then candidate=python3; from="--localpy"
elif [ -n "${PILOT_PYTHON:-}" ]; then candidate=$PILOT_PYTHON; from="PILOT_PYTHON"
elif [ -x "$PILOT_DIR/.venv/bin/python" ]; then candidate=$PILOT_DIR/.venv/bin/python; from="the pilot's .venv"
else candidate=python3; from="PATH"; fi
if ! PYTHON=$(command -v "$candidate" 2>/dev/null); then
    die 1 "no Python: '$candidate' (from $from) not found; set PILOT_PYTHON or --python"
fi
# one run of the candidate, in the background so that a signal is acted on at once
interruptible --out "$PRIVATE/python-check.txt" "$PYTHON" -c '
import sys
print("%d.%d.%d" % sys.version_info[:3])
try:
    import psutil, requests
except Exception as exc:
    print("%s: %s" % (type(exc).__name__, exc))
    sys.exit(3)
'
checked=$?
pyversion=$(head -n 1 "$PRIVATE/python-check.txt")
case "$pyversion" in
    [0-9]*.[0-9]*.[0-9]*) ;;
    *) die 1 "Python $PYTHON (from $from) does not run: $(tail -n 1 "$PRIVATE/python-check.txt")" ;;
esac
IFS=. read -r major minor _ <<< "$pyversion"
if [ "$major" -lt 3 ] || { [ "$major" -eq 3 ] && [ "$minor" -lt 9 ]; }; then
    die 1 "Python $PYTHON (from $from) is $pyversion; the pilot needs Python >= 3.9"
fi
if [ "$checked" -ne 0 ]; then
    die 1 "Python $PYTHON (from $from) cannot import the pilot's dependencies psutil and requests" \
          "($(tail -n 1 "$PRIVATE/python-check.txt")); install them (pip install psutil requests)" \
          "or choose another Python"
fi
rm -f "$PRIVATE/python-check.txt"
log "python $pyversion: $PYTHON (from $from)"

# a job definition pre-placed in the launch dir goes with the pilot
if [ "$RUN_DIR" != "$LAUNCH_DIR" ] && [ -f "$LAUNCH_DIR/pandaJobData.out" ]; then
    cp "$LAUNCH_DIR/pandaJobData.out" "$RUN_DIR/" && log "copied pandaJobData.out into $RUN_DIR"
fi

# --- run and supervise ----------------------------------------------------------------------------------------
cd "$RUN_DIR" || die 1 "cannot enter $RUN_DIR"
log "pilot command: $(printf '%q ' "$PYTHON" "$PILOT_DIR/pilot.py" "${PILOT_ARGS[@]}")"
log "==== pilot output BEGIN ===="
LAUNCHING=1
"$PYTHON" "$PILOT_DIR/pilot.py" "${PILOT_ARGS[@]}" 9>&- &
PILOT_PID=$!
LAUNCHING=0
log "pilot started, pid $PILOT_PID"
# shellcheck disable=SC2086
[ -n "$PENDING_SIG" ] && on_signal $PENDING_SIG

wait_for "$PILOT_PID"
rc=$WAIT_RC
PILOT_DONE=1
log "==== pilot output END ===="
log "pilot exit code $rc"
if [ "$rc" -ge 128 ] && [ -f "$PILOT_DIR/pilot/recovery.py" ]; then
    # died of a signal (SIGKILL: it could not clean up): sweep the payload processes its records name
    sweep_dirs=("$RUN_DIR")
    if [ -n "${PILOT_WORKDIR:-}" ]; then
        for d in "$PILOT_WORKDIR"/PanDA_Pilot3_"$PILOT_PID"_*; do [ -d "$d" ] && sweep_dirs+=("$d"); done
    fi
    while IFS= read -r line; do log "$line"; done < <(PYTHONPATH="$PILOT_DIR${PYTHONPATH:+:$PYTHONPATH}" \
        "$PYTHON" -m pilot.recovery "${sweep_dirs[@]}" 2>&1)
fi
exit "$rc"
