#!/usr/bin/env bash
# Tests the Debian package end to end (`make test-deb`; root, Debian 12):
#   build it (`make deb`), inspect contents and metadata, keep the conffile in
#   step with `singyeong --help` and debian/control with the Makefile, lint it,
#   install it, verify the unit, check the binary carries no Swift runtime
#   library, run it the way singyeong.service does (as user singyeong, the
#   conffile's environment, a stand-in for systemd's notify socket), query it,
#   reload and stop it, then remove and purge the package.
#
# systemd is not PID 1 in these containers, so the unit itself is not started:
# the run below reproduces ExecStart (user, environment, no capabilities, no
# new privileges, UMask) and `systemd-analyze verify/security` check the unit.
#
# Finally the package is installed with apt into a fresh debootstrap'ed
# Debian 12 (no Swift there) and run.
#
# Environment: SKIP_BUILD=1 reuses dist/*.deb; KEEP_INSTALLED=1 leaves the
# package installed; REQUIRE_SD_NOTIFY=0 turns the sd_notify checks into
# warnings; CLEAN_DEBIAN=0 skips the debootstrap stage; DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIST=$ROOT/dist
STARTED=$SECONDS
REQUIRE_SD_NOTIFY=${REQUIRE_SD_NOTIFY:-1}

WORK=$(mktemp -d /tmp/singyeong-test-deb.XXXXXX)
chmod 0755 "$WORK"
DAEMON_PID=""
NOTIFY_PID=""
INSTALLED_BY_US=0

log() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
pass() { printf 'ok: %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

cleanup() {
    local status=$?
    if [ -n "$DAEMON_PID" ]; then kill -KILL "$DAEMON_PID" 2>/dev/null || true; fi
    if [ -n "$NOTIFY_PID" ]; then kill "$NOTIFY_PID" 2>/dev/null || true; fi
    if [ "$INSTALLED_BY_US" = 1 ] && [ "${KEEP_INSTALLED:-0}" != 1 ]; then
        dpkg -P singyeong >/dev/null 2>&1 || true
    fi
    if [ $status -ne 0 ] && [ -f "$WORK/daemon.log" ]; then
        echo "--- daemon log" >&2; tail -n 30 "$WORK/daemon.log" >&2
    fi
    if [ -n "${CHROOT:-}" ] && mountpoint -q "$CHROOT/proc" 2>/dev/null; then umount "$CHROOT/proc" || true; fi
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || fail "run as root (installs the package)"

# --- Consistency checks (source tree / built package) ------------------------

# Every `--lower-dashed` option of `singyeong --help` (except --config, --help,
# --version) is a setting UPPER_SNAKE; the conffile has exactly one `#NAME=`
# line per setting, and nothing else. $1: the binary, $2: the conffile.
check_conffile_matches_help() {
    local binary=$1 conffile=$2
    local from_help from_conf dupes
    from_help=$("$binary" --help | grep -oE '^[[:space:]]+--[a-z0-9][a-z0-9-]*' \
        | sed -E 's/^[[:space:]]+--//' | grep -vxE 'config|help|version' \
        | tr 'a-z-' 'A-Z_' | sort -u)
    [ -n "$from_help" ] || fail "no settings found in $binary --help"
    from_conf=$(grep -oE '^#[A-Z][A-Z0-9_]*=' "$conffile" | sed -E 's/^#//; s/=$//' | sort)
    dupes=$(uniq -d <<<"$from_conf")
    [ -z "$dupes" ] || fail "conffile lists these settings more than once: $dupes"
    if [ "$from_help" != "$(sort -u <<<"$from_conf")" ]; then
        echo "settings in --help but not in $conffile:"; comm -23 <(echo "$from_help") <(sort -u <<<"$from_conf") | sed 's/^/  /'
        echo "settings in $conffile but not in --help:"; comm -13 <(echo "$from_help") <(sort -u <<<"$from_conf") | sed 's/^/  /'
        fail "debian/singyeong.conf and singyeong --help disagree: add/remove the #NAME=default line"
    fi
    # Each #NAME=value shows the default --help prints ("default unset": empty).
    local help_defaults conf_defaults
    help_defaults=$("$binary" --help | tr '\n' ' ' | tr -s ' ' \
        | grep -oE '\[env [A-Z0-9_]+; default [^]]*\]' \
        | sed -E 's/^\[env ([A-Z0-9_]+); default (.*)\]$/\1=\2/; s/=unset$/=/' | sort)
    conf_defaults=$(grep -E '^#[A-Z][A-Z0-9_]*=' "$conffile" | sed 's/^#//' | sort)
    if [ "$help_defaults" != "$conf_defaults" ]; then
        diff <(echo "$help_defaults") <(echo "$conf_defaults") | sed 's/^/  /'
        fail "conffile defaults (>) differ from singyeong --help (<)"
    fi
    # All lines are comments or blank: the shipped file changes no default.
    if grep -vE '^[[:space:]]*(#|$)' "$conffile"; then
        fail "conffile has active (uncommented) lines"
    fi
    pass "conffile lists exactly the $(wc -l <<<"$from_help") settings of --help with their defaults, all commented out"
}

# debian/control Build-Depends names every package of the Makefile's
# BUILD_PACKAGES (the source of truth for building from the tree).
check_build_depends() {
    local wanted have missing=""
    wanted=$(sed -nE 's/^BUILD_PACKAGES[[:space:]]*:?=[[:space:]]*//p' Makefile)
    [ -n "$wanted" ] || fail "BUILD_PACKAGES not found in Makefile"
    have=$(sed -n '/^Build-Depends:/,/^[A-Z][A-Za-z-]*:/p' debian/control | grep -v '^#' \
        | sed -E 's/^Build-Depends://; /^[A-Z][A-Za-z-]*:/d' | tr ',' '\n' \
        | sed -E 's/\(.*\)//; s/\[.*\]//; s/[[:space:]]//g' | grep -v '^$' || true)
    for p in $wanted; do grep -qx "$p" <<<"$have" || missing="$missing $p"; done
    [ -z "$missing" ] || fail "debian/control Build-Depends lacks Makefile BUILD_PACKAGES:$missing"
    grep -q 'debhelper-compat (= 13)' debian/control || fail "Build-Depends lacks debhelper-compat (= 13)"
    pass "Build-Depends covers BUILD_PACKAGES ($wanted) + debhelper-compat 13"
}

# --- Build ---------------------------------------------------------------------

check_build_depends

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "make deb"
    build_started=$SECONDS
    make --no-print-directory deb
    echo "make deb took $((SECONDS - build_started)) s"
fi
VERSION=$(dpkg-parsechangelog -S Version)
ARCH=$(dpkg --print-architecture)
DEB=$DIST/singyeong_${VERSION}_${ARCH}.deb
[ -f "$DEB" ] || fail "$DEB was not built"
ls -l "$DIST"

# --- Contents and metadata -------------------------------------------------------

log "contents (dpkg-deb -c)"
dpkg-deb -c "$DEB" | tee "$WORK/contents"
has_entry() { grep -qE "[[:space:]]\./$1\$" "$WORK/contents"; }
has_entry 'usr/bin/singyeong' || fail "no /usr/bin/singyeong"
grep -E '[[:space:]]\./usr/bin/singyeong$' "$WORK/contents" | grep -q '^-rwxr-xr-x root/root' \
    || fail "/usr/bin/singyeong is not 0755 root:root"
has_entry '(usr/)?lib/systemd/system/singyeong\.service' || fail "no singyeong.service in /lib/systemd/system"
has_entry 'etc/singyeong/singyeong\.conf' || fail "no /etc/singyeong/singyeong.conf"
grep -E '[[:space:]]\./etc/singyeong/singyeong\.conf$' "$WORK/contents" | grep -q '^-rw-r----- root/root' \
    || fail "conffile is not shipped 0640 root:root"
has_entry 'usr/lib/sysusers\.d/singyeong\.conf' || fail "no sysusers.d entry"
has_entry 'usr/share/doc/singyeong/copyright' || fail "no copyright file"
has_entry 'usr/share/man/man1/singyeong\.1\.gz' || fail "no man page"
pass "binary, unit, conffile, sysusers.d, man page, copyright present"

log "metadata (dpkg-deb -I)"
dpkg-deb -I "$DEB" | tee "$WORK/info"
[ "$(dpkg-deb -f "$DEB" Package)" = singyeong ] || fail "Package is not singyeong"
DEPENDS=$(dpkg-deb -f "$DEB" Depends)
for lib in libev4 libhiredis0.14 libssl3 'libsimdjson[0-9]+' libc6; do
    grep -qE "(^|, )$lib( |,|$)" <<<"$DEPENDS" || fail "Depends lacks $lib: $DEPENDS"
done
grep -q 'systemd' <<<"$DEPENDS" || fail "Depends lacks systemd(-sysusers): $DEPENDS"
grep -qiE 'swift|foundation|dispatch' <<<"$DEPENDS" && fail "Depends names a Swift runtime: $DEPENDS"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles > "$WORK/conffiles"
grep -qx /etc/singyeong/singyeong.conf "$WORK/conffiles" || fail "conffile not in conffiles"
pass "Depends: $DEPENDS"

dpkg-deb -x "$DEB" "$WORK/root"
# libcurl: required once the binary links it (the HTTP proxy adds it).
if readelf -d "$WORK/root/usr/bin/singyeong" | grep -q 'NEEDED.*libcurl'; then
    grep -qE '(^|, )libcurl4( |,|$)' <<<"$DEPENDS" || fail "binary links libcurl but Depends lacks libcurl4"
    pass "libcurl4 in Depends"
else
    echo "note: binary does not link libcurl (yet)"
fi
check_conffile_matches_help "$WORK/root/usr/bin/singyeong" "$WORK/root/etc/singyeong/singyeong.conf"

# --- lintian ------------------------------------------------------------------------

log "lintian"
lintian_status=0
lintian --fail-on error --display-info "$DEB" >"$WORK/lintian" 2>&1 || lintian_status=$?
cat "$WORK/lintian"
echo "lintian summary: $(grep -c '^E:' "$WORK/lintian" || true) errors, $(grep -c '^W:' "$WORK/lintian" || true) warnings, $(grep -c '^I:' "$WORK/lintian" || true) info"
[ $lintian_status -eq 0 ] || fail "lintian reported errors"
pass "lintian: no errors"

# --- Install ----------------------------------------------------------------------------

log "install"
if dpkg -s singyeong >/dev/null 2>&1; then
    echo "removing a singyeong package left installed"; dpkg -P singyeong
fi
INSTALLED_BY_US=1
if ! dpkg -i "$DEB"; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq
fi
[ "$(dpkg-query -W -f '${Status}' singyeong)" = "install ok installed" ] || fail "not installed"
getent passwd singyeong >/dev/null || fail "no singyeong user"
getent group singyeong >/dev/null || fail "no singyeong group"
[ "$(getent passwd singyeong | cut -d: -f7)" = /usr/sbin/nologin ] || fail "singyeong has a login shell"
[ "$(stat -c '%a %U:%G' /etc/singyeong/singyeong.conf)" = "640 root:singyeong" ] \
    || fail "conffile is $(stat -c '%a %U:%G' /etc/singyeong/singyeong.conf), expected 640 root:singyeong"
pass "installed; user singyeong (nologin); conffile 0640 root:singyeong"

UNIT=$(dpkg -L singyeong | grep -E '/systemd/system/singyeong\.service$')
log "systemd-analyze verify $UNIT"
verify_out=$(systemd-analyze verify "$UNIT" 2>&1) || { echo "$verify_out"; fail "systemd-analyze verify failed"; }
# verify exits 0 on some unit problems, printing them: any output is a finding.
if [ -n "$verify_out" ]; then echo "$verify_out"; fail "systemd-analyze verify printed warnings"; fi
pass "systemd-analyze verify: clean"

log "systemd-analyze security"
systemd-analyze security --offline=true "$UNIT" >"$WORK/security" 2>&1 || true
grep -E '^(✓|✗)' "$WORK/security" | grep '✗' | sed 's/^/  /' || true
SCORE_LINE=$(grep -E 'Overall exposure level' "$WORK/security" || true)
echo "$SCORE_LINE"
SCORE=$(sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p' <<<"$SCORE_LINE")
[ -n "$SCORE" ] || { cat "$WORK/security"; fail "no exposure score"; }
# 1.x is systemd's OK band; fail if a change weakens the sandbox noticeably.
awk -v s="$SCORE" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure $SCORE is above 2.0"
pass "exposure score $SCORE"

log "ldd /usr/bin/singyeong"
ldd /usr/bin/singyeong | tee "$WORK/ldd"
if grep -qiE 'libswift|libFoundation|lib_Foundation|libdispatch|libBlocksRuntime|not found' "$WORK/ldd"; then
    fail "binary needs a Swift runtime library or a missing one"
fi
pass "no Swift runtime, Foundation or dispatch library is loaded"

# --- Run it the way singyeong.service does ------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)

# A stand-in for systemd's notification socket: records every datagram.
NOTIFY_SOCKET_PATH=$WORK/notify.sock
python3 - "$NOTIFY_SOCKET_PATH" "$WORK/notify.log" <<'PY' &
import os, socket, sys
path, out = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
with open(out, "a", buffering=1) as f:
    f.write("#bound\n")
    while True:
        data = s.recv(4096).decode("utf-8", "replace")
        f.write(data.replace("\n", "|") + "\n")
PY
NOTIFY_PID=$!
for _ in $(seq 50); do grep -q '#bound' "$WORK/notify.log" 2>/dev/null && break; sleep 0.1; done

# Starts /usr/bin/singyeong like ExecStart (no arguments): clean
# environment + EnvironmentFile, user/group singyeong, no capabilities, no new
# privileges, UMask 0077, cwd /, NOTIFY_SOCKET and a 2 s watchdog.
# shellcheck disable=SC2016 # the bash -c script is expanded by the inner shell
start_like_unit() {
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/var/lib/singyeong USER=singyeong LOGNAME=singyeong SHELL=/usr/sbin/nologin \
        TEST_PORT="$PORT" NOTIFY_SOCKET="$NOTIFY_SOCKET_PATH" WATCHDOG_USEC=2000000 \
        bash -c '
            set -a; . /etc/singyeong/singyeong.conf; set +a
            export PORT=$TEST_PORT; unset TEST_PORT
            cd / && umask 0077
            # WATCHDOG_PID is the pid of the exec-ed daemon (this shell).
            export WATCHDOG_PID=$$
            exec setpriv --reuid=singyeong --regid=singyeong --init-groups \
                --no-new-privs --inh-caps=-all --bounding-set=-all -- /usr/bin/singyeong
        ' >"$WORK/daemon.log" 2>&1 &
    DAEMON_PID=$!
}

log "start /usr/bin/singyeong as singyeong (PORT=$PORT, conffile environment)"
start_like_unit
up=0
for _ in $(seq 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/version" 2>/dev/null; then up=1; break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log"; fail "daemon exited at start-up"; }
    sleep 0.1
done
[ $up = 1 ] || fail "daemon did not answer on port $PORT within 10 s"
[ "$(ps -o user= -p "$DAEMON_PID" | tr -d ' ')" = singyeong ] || fail "daemon does not run as singyeong"
grep -q '^NoNewPrivs:[[:space:]]*1' "/proc/$DAEMON_PID/status" || fail "NoNewPrivs not set"
grep -q '^CapEff:[[:space:]]*0*$' "/proc/$DAEMON_PID/status" || fail "daemon has capabilities"
pass "running as singyeong, no capabilities, no new privileges"

# The HTTP endpoints a load balancer or monitor would use.
check_health_endpoints() {
    local code body
    code=$(curl -sS -o "$WORK/version.json" -w '%{http_code}' "http://127.0.0.1:$PORT/api/version")
    body=$(cat "$WORK/version.json")
    [ "$code" = 200 ] || fail "/api/version answered $code"
    grep -q "\"singyeong\":\"$VERSION\"" <<<"$body" || fail "/api/version body $body lacks version $VERSION"
    pass "/api/version: 200 $body"
    code=$(curl -sS -o "$WORK/healthz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")
    [ "$code" = 200 ] || fail "/healthz answered $code"
    code=$(curl -sS -o "$WORK/readyz.json" -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")
    [ "$code" = 200 ] && grep -q '"ready"' "$WORK/readyz.json" || fail "/readyz answered $code $(cat "$WORK/readyz.json")"
    pass "/healthz and /readyz: 200"
    code=$(curl -sS -o "$WORK/metrics.txt" -w '%{http_code}' "http://127.0.0.1:$PORT/metrics")
    [ "$code" = 200 ] || fail "/metrics answered $code"
    grep -q '^# TYPE singyeong_messages_routed_total counter$' "$WORK/metrics.txt" || fail "/metrics lacks singyeong_messages_routed_total"
    grep -q '^singyeong_ready 1$' "$WORK/metrics.txt" || fail "/metrics: singyeong_ready is not 1"
    pass "/metrics: $(grep -c '^singyeong_' "$WORK/metrics.txt") samples"
}
check_health_endpoints

# The sd_notify datagrams systemd would get (Type=notify, WatchdogSec): a
# node that never says READY=1 fails to start under the unit, one that stops
# pinging is killed after WatchdogSec.
check_sd_notify() {
    local what=$1 pattern=$2 seconds=$3
    for _ in $(seq $((seconds * 10))); do
        grep -qE "$pattern" "$WORK/notify.log" && { pass "sd_notify: $what"; return 0; }
        sleep 0.1
    done
    if [ "$REQUIRE_SD_NOTIFY" = 1 ]; then fail "sd_notify: no $what within $seconds s"; fi
    warn "sd_notify: no $what within $seconds s (REQUIRE_SD_NOTIFY=0)"
}
check_sd_notify "READY=1" '(^|\|)READY=1(\||$)' 2
check_sd_notify "WATCHDOG=1 (WATCHDOG_USEC=2 s)" '(^|\|)WATCHDOG=1(\||$)' 3

log "SIGHUP (ExecReload)"
kill -HUP "$DAEMON_PID"
sleep 0.3
kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon died on SIGHUP"
curl -fsS -o /dev/null "http://127.0.0.1:$PORT/api/version" || fail "not serving after SIGHUP"
pass "still serving after SIGHUP"
check_sd_notify "RELOADING=1 with MONOTONIC_USEC" 'RELOADING=1.*MONOTONIC_USEC=[0-9]+' 1

# GOODBYE on SIGTERM: an identified WebSocket client (stdlib-only client
# below) must get op 7 and then a close frame with 1001 before the exit.
start_goodbye_client() {
    python3 - "$PORT" "$WORK/goodbye.result" "$WORK/goodbye.ready" <<'PY' &
import base64, json, os, socket, struct, sys
port, result, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(f"GET /gateway/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
buf = buf.split(b"\r\n\r\n", 1)[1]
def frame():
    global buf
    while True:
        if len(buf) >= 2:
            n, off = buf[1] & 0x7F, 2
            if n == 126 and len(buf) >= 4: n, off = struct.unpack("!H", buf[2:4])[0], 4
            if len(buf) >= off + n:
                op, data, buf = buf[0] & 0x0F, buf[off:off + n], buf[off + n:]
                return op, data
        chunk = s.recv(4096)
        if not chunk: return None, b""
        buf += chunk
def send(obj):
    data = json.dumps(obj).encode()
    mask = os.urandom(4)
    head = bytes([0x81, 0x80 | len(data)]) if len(data) < 126 else bytes([0x81, 0xFE]) + struct.pack("!H", len(data))
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
assert json.loads(frame()[1])["op"] == 0
send({"op": 1, "d": {"client_id": "deb-test", "application_id": "deb-test"}})
assert json.loads(frame()[1])["op"] == 2
open(ready, "w").close()
op, data = frame()
goodbye = json.loads(data) if op == 1 else None
op, data = frame()
code = struct.unpack("!H", data[:2])[0] if op == 8 and len(data) >= 2 else None
open(result, "w").write(json.dumps({"goodbye": goodbye, "close": code}))
PY
    GOODBYE_CLIENT=$!
    for _ in $(seq 50); do [ -e "$WORK/goodbye.ready" ] && return 0; sleep 0.1; done
    fail "the WebSocket client did not get READY"
}
check_goodbye_on_sigterm() {
    wait "$GOODBYE_CLIENT" || fail "the WebSocket client failed"
    python3 - "$WORK/goodbye.result" <<'PY' || fail "no GOODBYE + close 1001 on SIGTERM: $(cat "$WORK/goodbye.result")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["goodbye"]["op"] == 7 and r["goodbye"]["d"] == {"reason": "server shutting down"}, r
assert r["close"] == 1001, r
PY
    pass "SIGTERM: the client got GOODBYE and close 1001"
}
start_goodbye_client

log "SIGTERM (KillSignal)"
kill -TERM "$DAEMON_PID"
status=0
wait "$DAEMON_PID" || status=$?
DAEMON_PID=""
[ $status -eq 0 ] || fail "exit status after SIGTERM was $status, expected 0"
pass "exit status 0 after SIGTERM"
check_goodbye_on_sigterm
check_sd_notify "STOPPING=1" '(^|\|)STOPPING=1(\||$)' 1
echo "--- daemon log"; cat "$WORK/daemon.log"

# singyeong --config reads the same file (group singyeong may read it).
log "singyeong --config /etc/singyeong/singyeong.conf as singyeong"
config_status=0
timeout --preserve-status -s TERM 2 setpriv --reuid=singyeong --regid=singyeong --init-groups --no-new-privs -- \
    env -i /usr/bin/singyeong --config /etc/singyeong/singyeong.conf --port 0 --bind 127.0.0.1 \
    >"$WORK/config-run.log" 2>&1 || config_status=$?
if ! grep -q 'listening' "$WORK/config-run.log" || [ $config_status -ne 0 ]; then
    cat "$WORK/config-run.log"; fail "--config run failed (status $config_status)"
fi
pass "--config accepts the shipped file"

kill "$NOTIFY_PID" 2>/dev/null || true; wait "$NOTIFY_PID" 2>/dev/null || true; NOTIFY_PID=""

# --- Remove and purge -------------------------------------------------------------------

log "dpkg -r / dpkg -P"
dpkg -r singyeong
[ ! -e /usr/bin/singyeong ] || fail "/usr/bin/singyeong left after remove"
[ ! -e "$UNIT" ] || fail "$UNIT left after remove"
[ -f /etc/singyeong/singyeong.conf ] || fail "remove deleted the conffile (only purge may)"
[ "$(dpkg-query -W -f '${Status}' singyeong)" = "deinstall ok config-files" ] || fail "not in config-files state"
dpkg -P singyeong
INSTALLED_BY_US=0
[ ! -e /etc/singyeong ] || fail "/etc/singyeong left after purge"
[ ! -e /var/lib/singyeong ] || fail "/var/lib/singyeong left after purge"
if dpkg-query -W -f '${Status}' singyeong 2>/dev/null | grep -q installed; then fail "still known to dpkg after purge"; fi
pass "removed (conffile kept), purged (conffile and state gone; user singyeong stays)"

# --- A clean Debian 12 without Swift ------------------------------------------------------

# This machine has the Swift toolchain; a fresh `debootstrap --variant=minbase
# bookworm` has nothing but Debian. Install the package there with apt (its
# Depends must be enough) and run it. CLEAN_DEBIAN=0 skips this (no mirror).
CHROOT=""
check_clean_debian() {
    CHROOT=$WORK/bookworm
    log "clean Debian 12 (debootstrap minbase, no Swift): install and run"
    debootstrap --variant=minbase bookworm "$CHROOT" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$WORK/debootstrap.log" 2>&1 || { tail -5 "$WORK/debootstrap.log"; fail "debootstrap failed"; }
    [ ! -e "$CHROOT/opt/swift" ] && ! chroot "$CHROOT" sh -c 'command -v swift' >/dev/null || fail "Swift in the chroot?"
    cp /etc/resolv.conf "$CHROOT/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$CHROOT/usr/sbin/policy-rc.d"  # no service starts inside
    chmod +x "$CHROOT/usr/sbin/policy-rc.d"
    cp "$DEB" "$CHROOT/tmp/"
    mount -t proc proc "$CHROOT/proc"
    chroot "$CHROOT" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /tmp/$(basename "$DEB")" \
        >"$WORK/chroot-apt.log" 2>&1 || { tail -20 "$WORK/chroot-apt.log"; fail "apt-get install of the package in a clean Debian 12 failed"; }
    chroot "$CHROOT" id singyeong >/dev/null || fail "no singyeong user in the chroot"
    local port
    port=$(free_port)
    chroot "$CHROOT" sh -c "set -a; . /etc/singyeong/singyeong.conf; set +a; exec setpriv --reuid=singyeong --regid=singyeong --clear-groups /usr/bin/singyeong --port $port --bind 127.0.0.1" \
        >"$WORK/chroot-daemon.log" 2>&1 &
    DAEMON_PID=$!
    local code=""
    for _ in $(seq 50); do
        code=$(curl -s -o "$WORK/chroot-version.json" -w '%{http_code}' "http://127.0.0.1:$port/api/version" || true)
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { cat "$WORK/chroot-daemon.log"; fail "the installed binary does not serve in a clean Debian 12"; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics")" = 200 ] || fail "/metrics in the chroot"
    kill -TERM "$DAEMON_PID"
    local status=0
    wait "$DAEMON_PID" || status=$?
    DAEMON_PID=""
    [ $status -eq 0 ] || fail "exit status $status after SIGTERM in the chroot"
    umount "$CHROOT/proc"
    pass "clean Debian 12 without Swift: apt installed it with its Depends, it served $(cat "$WORK/chroot-version.json") and exited 0"
}
if [ "${CLEAN_DEBIAN:-1}" = 1 ]; then check_clean_debian; fi

echo
echo "test_deb.sh: all checks passed in $((SECONDS - STARTED)) s"
