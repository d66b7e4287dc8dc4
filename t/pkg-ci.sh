#!/bin/sh
# t/pkg-ci.sh: the Debian package for real, on a disposable Debian 12
# machine, as root (.ci/run runs it; it installs into the system, so
# `make check` does not: t/90-package.t checks the .deb without installing).
#
#   sh t/pkg-ci.sh            (after ./configure && make; about a minute
#                              plus the build of the second package)
#
# 1. make deb; apt-get install ./hamlyn_V1.deb, twice (postinst idempotent);
#    the user, /var/log/hamlyn, the certificate; hamlyn -t passes.
# 2. hamlyn runs (the unit under systemd, else `hamlyn -d`): the demo site
#    answers curl --cacert /etc/hamlyn/certs/demo.pem with its text, the
#    workers run as hamlyn; logrotate's file rotates and reopens the logs.
# 3. /etc/hamlyn/hamlyn.json is edited (its answer text), and a second
#    package V2 is built from a clone of HEAD with HAMLYN_VERSION
#    "<version>+ci2" and a changed packaged configuration.  It is installed
#    while a bounded curl loop runs (300 requests): zero failed requests,
#    the master pid changed (hot upgrade, not a restart), the new master runs
#    the V2 binary and logged "hamlyn <V2> started ... (binary upgrade)",
#    under systemd the unit's MainPID follows it; dpkg kept the edited
#    configuration (-o Dpkg::Options::=--force-confold: CI has no terminal
#    for dpkg's conffile question; confold keeps the operator's file and
#    puts the package's as hamlyn.json.dpkg-dist), and the new master serves
#    the edited text.
# 4. An upgrade that fails (a listen address added to the configuration is
#    taken by another process, so the new master cannot bind it): the
#    postinst says it rolled back, the old master keeps serving.
# 5. apt-get remove: the master stopped, /etc/hamlyn and the user kept;
#    install again; apt-get purge: /etc/hamlyn, /var/log/hamlyn, the user
#    and group gone.
# On exit (pass or fail) the package is purged and what it started stopped.
set -eu

cd "$(dirname "$0")/.."
top=$(pwd)
export DEBIAN_FRONTEND=noninteractive
t0=$(date +%s)
step() { printf '\n--- pkg-ci: %s (at %ds)\n' "$*" "$(( $(date +%s) - t0 ))"; }
fail() { echo "pkg-ci: FAILED: $*" >&2; exit 1; }
ok() { echo "pkg-ci: ok: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root (it installs the package)"
[ -x ./hamlyn ] || fail "build ./hamlyn first"
# dpkg's idea of the package: installed, config-files, half-... or nothing
pkg_state() {
    dpkg-query -W -f='${db:Status-Status}' hamlyn 2>/dev/null || true
}
# Whether something accepts on 127.0.0.1:$1
port_open() {
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null
}
case "$(pkg_state)" in
''|not-installed) ;;
*) fail "the package hamlyn is on this machine ($(pkg_state)): purge it first" ;;
esac
[ ! -e /etc/hamlyn ] || fail "/etc/hamlyn exists (not from the package?): refusing to touch it"
if port_open 8443; then
    fail "port 8443 is taken: the packaged configuration listens there"
fi

systemd=0
[ -d /run/systemd/system ] && systemd=1
work=$top/build/pkg-ci
rm -rf "$work"
mkdir -p "$work"
apt_opts="-y -q -o Dpkg::Use-Pty=0 -o Dpkg::Options::=--force-confold"
started=""       # masters this script started with -d
blocker=""       # the process that takes a port in step 4
loop=""

cleanup() {
    rc=$?
    set +e
    [ -n "$loop" ] && kill "$loop" 2>/dev/null
    [ -n "$blocker" ] && kill "$blocker" 2>/dev/null
    if [ $rc != 0 ] && [ -f /var/log/hamlyn/error.log ]; then
        echo "--- last lines of /var/log/hamlyn/error.log" >&2
        tail -n 30 /var/log/hamlyn/error.log >&2
    fi
    if [ -n "$(pkg_state)" ] && [ "$(pkg_state)" != not-installed ]; then
        apt-get purge $apt_opts hamlyn >"$work/purge-at-exit.log" 2>&1 \
            || cat "$work/purge-at-exit.log" >&2
    fi
    # a master this script started that the purge did not stop
    for p in $started; do
        if [ "$(cat /proc/"$p"/comm 2>/dev/null)" = hamlyn ]; then
            kill -TERM "$p" 2>/dev/null
        fi
    done
    exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

master_pid() {
    p=$(cat /run/hamlyn.pid 2>/dev/null || true)
    case "$p" in ''|*[!0-9]*) return 0 ;; esac
    [ "$(cat /proc/"$p"/comm 2>/dev/null || true)" = hamlyn ] && echo "$p"
    return 0
}
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -qs '^State:[[:space:]]*Z' /proc/"$1"/status
}
demo() {
    curl -sS --max-time 5 --cacert /etc/hamlyn/certs/demo.pem https://localhost:8443/
}
installed_version() {
    dpkg-query -W -f='${Status} ${Version}' hamlyn 2>/dev/null || true
}

step "1. make deb (V1)"
upstream=$(sed -n 's/^#define HAMLYN_VERSION "\(.*\)"$/\1/p' src/core/hm_core.h)
v1=$upstream-1
v2=$upstream+ci2-1
make --no-print-directory deb DEB_OUT="$work" | tail -n 1
deb1=$work/hamlyn_${v1}_$(dpkg --print-architecture).deb
[ -f "$deb1" ] || fail "no $deb1"
ls -l "$deb1"

step "1. apt-get install ./$(basename "$deb1"), then again (--reinstall)"
apt-get install $apt_opts "$deb1" > "$work/install1.log" 2>&1 || { cat "$work/install1.log"; fail "install V1"; }
apt-get install $apt_opts --reinstall "$deb1" > "$work/install1b.log" 2>&1 || { cat "$work/install1b.log"; fail "reinstall V1"; }
[ "$(installed_version)" = "install ok installed $v1" ] || fail "dpkg status: $(installed_version)"
ok "installed twice: $(installed_version)"
getent passwd hamlyn | grep -q ':/nonexistent:' || fail "no system user hamlyn with home /nonexistent"
getent group hamlyn >/dev/null || fail "no group hamlyn"
[ "$(stat -c '%U:%G %a' /var/log/hamlyn)" = "root:adm 750" ] || fail "/var/log/hamlyn: $(stat -c '%U:%G %a' /var/log/hamlyn)"
[ -s /etc/hamlyn/certs/demo.pem ] && [ -s /etc/hamlyn/certs/demo.key ] || fail "no demo certificate"
[ "$(stat -c '%a' /etc/hamlyn/certs/demo.key)" = 600 ] || fail "demo.key is not 0600"
ok "user hamlyn, /var/log/hamlyn root:adm 0750, certificate (key 0600)"
hamlyn -t -c /etc/hamlyn/hamlyn.json || fail "hamlyn -t"
man -w hamlyn >/dev/null 2>&1 || [ -f /usr/share/man/man8/hamlyn.8.gz ] || fail "no man page"

step "2. run it and ask the demo site"
if [ $systemd = 1 ]; then
    if ! systemctl is-active --quiet hamlyn.service; then
        systemctl status hamlyn.service || true
        [ -x /usr/sbin/policy-rc.d ] && echo "pkg-ci: /usr/sbin/policy-rc.d exists: it may forbid starting services" >&2
        fail "the unit is not active after install"
    fi
    ok "systemd started hamlyn.service"
else
    grep -q 'not started (systemd is not running)' "$work/install1.log" || fail "postinst did not say it did not start hamlyn"
    hamlyn -c /etc/hamlyn/hamlyn.json -d || fail "hamlyn -d"
fi
m1=$(master_pid)
[ -n "$m1" ] || fail "no master in /run/hamlyn.pid"
started="$started $m1"
if [ $systemd = 1 ]; then
    [ "$(systemctl show -p MainPID --value hamlyn.service)" = "$m1" ] || fail "MainPID is not the pid file's $m1"
fi
demo > "$work/body1" || fail "curl https://localhost:8443/"
grep -q '^Hamlyn is running' "$work/body1" || fail "not the demo text: $(head -n 2 "$work/body1")"
ok "https://localhost:8443/ answers: $(head -n 1 "$work/body1")"
users=$(ps -o user= --ppid "$m1" | sort -u | tr '\n' ' ')
[ "$users" = "hamlyn " ] || fail "workers run as: $users"
ok "master $m1 (root), workers as: $users"

if command -v logrotate >/dev/null 2>&1; then
    logrotate -f /etc/logrotate.d/hamlyn || fail "logrotate"
    [ -f /var/log/hamlyn/error.log.1 ] || fail "logrotate did not rotate error.log"
    i=0
    until grep -q 'log files reopened' /var/log/hamlyn/error.log 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 50 ] || fail "no 'log files reopened' in the new error.log"
        sleep 0.1
    done
    [ "$(master_pid)" = "$m1" ] || fail "logrotate changed the master"
    ok "logrotate -f: error.log.1 and a new error.log ('log files reopened')"
else
    echo "pkg-ci: logrotate is not installed: its file is not exercised"
fi

step "3. edit /etc/hamlyn/hamlyn.json; build V2 ($v2) from a clone of HEAD"
sed -i 's/Hamlyn is running\./Hamlyn is running (edited by pkg-ci)./' /etc/hamlyn/hamlyn.json
grep -q 'edited by pkg-ci' /etc/hamlyn/hamlyn.json || fail "could not edit the configuration"
hamlyn -t -c /etc/hamlyn/hamlyn.json || fail "the edited configuration"
b0=$(date +%s)
git clone -q "$top" "$work/src2"
(
    cd "$work/src2"
    sed -i 's/^#define HAMLYN_VERSION "\(.*\)"$/#define HAMLYN_VERSION "\1+ci2"/' src/core/hm_core.h
    sed -i 's/Hamlyn is running\./Hamlyn is running (package V2)./' conf/hamlyn.deb.json
    ./configure > "$work/src2-configure.log" 2>&1
    make -j"$(nproc 2>/dev/null || echo 2)" hamlyn > "$work/src2-make.log" 2>&1
    make --no-print-directory deb DEB_OUT="$work" | tail -n 1
) || { tail -n 30 "$work/src2-make.log"; fail "building V2"; }
deb2=$work/hamlyn_${v2}_$(dpkg --print-architecture).deb
[ -f "$deb2" ] || fail "no $deb2"
ok "V2 built in $(( $(date +%s) - b0 )) s"

step "3. install V2 while 300 requests run"
n=300
( okc=0; bad=0; i=0
  while [ $i -lt $n ]; do
      i=$((i + 1))
      if curl -s -o /dev/null --max-time 5 -w '%{http_code}\n' \
              --cacert /etc/hamlyn/certs/demo.pem https://localhost:8443/ \
              | grep -q '^200$'; then
          okc=$((okc + 1))
      else
          bad=$((bad + 1)); echo "request $i failed at $(date +%T.%N)"
      fi
      sleep 0.02
  done
  echo "requests: $okc ok, $bad failed"
) > "$work/loop.out" 2>&1 &
loop=$!
sleep 2
u0=$(date +%s.%N)
apt-get install $apt_opts "$deb2" > "$work/install2.log" 2>&1 || { cat "$work/install2.log"; fail "install V2"; }
u1=$(date +%s.%N)
# the requests must span the whole upgrade, not end before it
kill -0 "$loop" 2>/dev/null || fail "the request loop ended before the upgrade did"
wait "$loop" || true
loop=""
cat "$work/install2.log" | grep '^hamlyn:' || true
cat "$work/loop.out"
grep -q "^requests: $n ok, 0 failed$" "$work/loop.out" || fail "requests failed during the upgrade"
ok "$n requests during the upgrade, 0 failed (apt-get install took $(awk "BEGIN { printf \"%.1f\", $u1 - $u0 }") s)"
[ "$(installed_version)" = "install ok installed $v2" ] || fail "dpkg status: $(installed_version)"
m2=$(master_pid)
[ -n "$m2" ] || fail "no master after the upgrade"
started="$started $m2"
[ "$m2" != "$m1" ] || fail "the master pid did not change: no binary upgrade happened"
alive "$m1" && fail "the old master $m1 still runs"
[ "$(readlink /proc/"$m2"/exe)" = /usr/sbin/hamlyn ] || fail "the new master runs $(readlink /proc/"$m2"/exe)"
hamlyn -V | head -n 1 | grep -qx "hamlyn version $upstream+ci2" || fail "installed binary: $(hamlyn -V | head -n 1)"
grep -q "\[info\] $m2: hamlyn $upstream+ci2 started, .*(binary upgrade)" /var/log/hamlyn/error.log \
    || fail "no 'hamlyn $upstream+ci2 started ... (binary upgrade)' from $m2 in the error log"
grep -q 'binary upgrade done' "$work/install2.log" || fail "postinst did not report the upgrade"
ok "hot upgrade: master $m1 -> $m2, running hamlyn $upstream+ci2 (logged as a binary upgrade)"
if [ $systemd = 1 ]; then
    sleep 1
    [ "$(systemctl show -p MainPID --value hamlyn.service)" = "$m2" ] || fail "systemd's MainPID did not follow to $m2"
    systemctl is-active --quiet hamlyn.service || fail "the unit is not active after the upgrade"
    ok "systemd's MainPID followed the upgrade to $m2"
fi
grep -q 'edited by pkg-ci' /etc/hamlyn/hamlyn.json || fail "dpkg replaced the edited configuration"
grep -q 'package V2' /etc/hamlyn/hamlyn.json.dpkg-dist || fail "no hamlyn.json.dpkg-dist with V2's configuration"
demo > "$work/body2" || fail "curl after the upgrade"
grep -q '^Hamlyn is running (edited by pkg-ci)' "$work/body2" || fail "after the upgrade: $(head -n 1 "$work/body2")"
ok "the edited configuration was kept (V2's is hamlyn.json.dpkg-dist) and is served"

step "4. a failed upgrade rolls back"
bport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -c "import socket,time; s=socket.socket(); s.bind(('127.0.0.1', $bport)); s.listen(); time.sleep(120)" &
blocker=$!
i=0
until port_open "$bport"; do
    i=$((i + 1)); [ $i -lt 50 ] || fail "the blocking listener did not start"; sleep 0.1
done
cp /etc/hamlyn/hamlyn.json "$work/hamlyn.json.saved"
sed -i "s/\"listen\": \[\"127.0.0.1:8443\"/\"listen\": [\"127.0.0.1:$bport\", \"127.0.0.1:8443\"/" /etc/hamlyn/hamlyn.json
grep -q "127.0.0.1:$bport" /etc/hamlyn/hamlyn.json || fail "could not add the listen address"
apt-get install $apt_opts --reinstall "$deb2" > "$work/install3.log" 2>&1 || { cat "$work/install3.log"; fail "reinstall V2"; }
grep '^hamlyn:' "$work/install3.log" || true
grep -q 'BINARY UPGRADE ROLLED BACK' "$work/install3.log" || fail "the postinst did not report the roll-back"
grep -q 'binary upgrade failed' "$work/install3.log" || fail "the postinst did not give the reason"
[ "$(master_pid)" = "$m2" ] || fail "the master changed: $(master_pid)"
demo | grep -q '^Hamlyn is running' || fail "not serving after the roll-back"
ok "roll-back reported, master $m2 keeps serving"
kill "$blocker"; wait "$blocker" 2>/dev/null || true; blocker=""
cp "$work/hamlyn.json.saved" /etc/hamlyn/hamlyn.json

step "5. apt-get remove, install again, purge"
apt-get remove $apt_opts hamlyn > "$work/remove.log" 2>&1 || { cat "$work/remove.log"; fail "remove"; }
alive "$m2" && fail "master $m2 still runs after remove"
[ "$(installed_version)" = "deinstall ok config-files $v2" ] || fail "dpkg status: $(installed_version)"
[ -f /etc/hamlyn/hamlyn.json ] && grep -q 'edited by pkg-ci' /etc/hamlyn/hamlyn.json || fail "remove lost /etc/hamlyn/hamlyn.json"
getent passwd hamlyn >/dev/null || fail "remove deleted the user"
[ ! -e /usr/sbin/hamlyn ] || fail "remove left /usr/sbin/hamlyn"
ok "removed: master stopped, /etc/hamlyn and the user kept"
apt-get install $apt_opts "$deb2" > "$work/install4.log" 2>&1 || { cat "$work/install4.log"; fail "install after remove"; }
hamlyn -t -c /etc/hamlyn/hamlyn.json || fail "hamlyn -t after reinstall"
ok "installed again after remove: $(installed_version)"
if [ $systemd = 1 ]; then
    m3=$(master_pid); started="$started $m3"
fi
apt-get purge $apt_opts hamlyn > "$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "purge"; }
case "$(pkg_state)" in
''|not-installed) ;;
*) fail "dpkg status after purge: $(installed_version)" ;;
esac
[ ! -e /etc/hamlyn ] || fail "purge left /etc/hamlyn: $(find /etc/hamlyn)"
[ ! -e /var/log/hamlyn ] || fail "purge left /var/log/hamlyn"
getent passwd hamlyn >/dev/null && fail "purge left the user hamlyn"
getent group hamlyn >/dev/null && fail "purge left the group hamlyn"
[ ! -e /etc/logrotate.d/hamlyn ] || fail "purge left /etc/logrotate.d/hamlyn"
ok "purged: /etc/hamlyn, /var/log/hamlyn, user and group gone"

step "pkg-ci passed"
