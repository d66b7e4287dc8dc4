#!/usr/bin/env bash
# bench/run.sh: compare Hamlyn with nginx and HAProxy on this machine,
# using public tools only (nginx as the backend, curl and h2load as
# clients).  See bench/README.
#
#   bench/run.sh [SCENARIO|all [PROXY ...]]
#
#   SCENARIO  passthrough-rps passthrough-bulk term-plain handshake (all)
#   PROXY     hamlyn nginx haproxy                 (default: hamlyn nginx)
#
# Knobs: DURATION [10] WARMUP [2] CONNS [64] ROUNDS [1] CPU_PROXY [1]
# CPU_LOAD [0] PORT_BASE [29000] HAMLYN_BIN [./hamlyn] NETNS [1] KEEP [0]
set -u
DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$DIR/lib.sh"

ALL="passthrough-rps passthrough-bulk term-plain handshake"
SCEN=${1:-all}; [ $# -gt 0 ] && shift
[ "$SCEN" = all ] && SCEN=$ALL
for s in $SCEN; do
  case " $ALL " in *" $s "*) ;; *) die "unknown scenario $s (one of: $ALL)" ;; esac
done
PROXIES=("$@"); [ ${#PROXIES[@]} -gt 0 ] || PROXIES=(hamlyn nginx)
for p in "${PROXIES[@]}"; do
  declare -F "px_$p" >/dev/null || die "unknown proxy $p (hamlyn nginx haproxy)"
done

# A private network namespace (root only): its own loopback, no port
# clashes with anything else on the machine.
if [ "${NETNS:-1}" = 1 ] && [ -z "${IN_NETNS:-}" ] && [ "$(id -u)" = 0 ] &&
   command -v unshare >/dev/null && command -v ip >/dev/null; then
  export IN_NETNS=1
  exec unshare --net -- bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$SCEN" "${PROXIES[@]}"
fi

: "${DURATION:=10}" "${WARMUP:=2}" "${CONNS:=64}" "${ROUNDS:=1}"
: "${CPU_PROXY:=1}" "${CPU_LOAD:=0}" "${PORT_BASE:=29000}"
: "${HAMLYN_BIN:=$DIR/../hamlyn}"
need nginx curl h2load openssl taskset ss awk sha256sum timeout
CLK_TCK=$(getconf CLK_TCK)
ulimit -n "$(ulimit -Hn)" 2>/dev/null

BE_HTTP=$((PORT_BASE + 80)) BE_TLS=$((PORT_BASE + 443)) PX_PORT=$((PORT_BASE + 444))
for port in $BE_HTTP $BE_TLS $PX_PORT; do
  ss -Hltn "sport = :$port" | grep -q . && die "port $port in use (set PORT_BASE)"
done

TMP=$(mktemp -d -t hamlyn-bench.XXXXXX) || die "mktemp"
chmod 755 "$TMP"
cleanup() { stop_all; [ "${KEEP:-0}" = 1 ] && log "kept $TMP" || rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
CERTS=$TMP/certs DATA=$TMP/data
make_certs "$CERTS"
case " $SCEN " in *" passthrough-bulk "*) make_bulk "$DATA" ;; esac
backend_start
RESULTS=$TMP/results

run_one() {  # SCENARIO PROXY: prints one RESULT line
  local scen=$1 px=$2 mode=term sni=proxy.test load t0 t1 c0 c1 want got st=ok
  case $scen in passthrough-*) mode=pass sni=backend.test ;; esac
  case $scen in
    passthrough-rps|handshake) load=load_handshakes ;;
    term-plain) load=load_keepalive ;;
    passthrough-bulk) load=load_bulk ;;
  esac

  if ! "px_$px" "$mode"; then
    echo "RESULT scenario=$scen proxy=$px status=start-failed" | tee -a "$RESULTS"
    stop_all; backend_start; return
  fi

  # sanity: one verified request through the proxy, body checked
  if [ "$scen" = passthrough-bulk ]; then
    want=$(cat "$DATA/bulk.sha256") path=/bulk.bin
  else
    want=$(printf '%s' "$BODY" | sha256sum | cut -d' ' -f1) path=/
  fi
  got=$(curl -s --max-time 30 --cacert "$CERTS/ca.pem" --resolve "$sni:$PX_PORT:$LOOP" \
          "https://$sni:$PX_PORT$path" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$want" ] || { st=sanity-fail; log "$scen/$px: wrong or no response"; }

  if [ "$st" = ok ]; then
    $load "$WARMUP" "$CONNS" "$sni"
    c0=$(tree_ticks "$PX_PID") t0=$(date +%s.%N)
    $load "$DURATION" "$CONNS" "$sni"
    c1=$(tree_ticks "$PX_PID") t1=$(date +%s.%N)
    kill -0 "$PX_PID" 2>/dev/null || st=proxy-died
    [ "${ERRS:-0}" = 0 ] || st=errors
    awk -v s="$scen" -v p="$px" -v st="$st" -v n="$REQS" -v e="$ERRS" -v b="${BYTES:-0}" \
        -v dt=$((c1 - c0)) -v hz="$CLK_TCK" -v w="$(awk "BEGIN{print $t1 - $t0}")" 'BEGIN {
      cpu = dt * 1e6 / hz; pct = 100 * dt / hz / w
      if (s == "passthrough-bulk") { mib = b / 1048576
        printf "RESULT scenario=%s proxy=%s status=%s mibps=%.1f cpu_us_per_mib=%.1f proxy_cpu_pct=%.1f mib=%.0f errors=%d\n",
               s, p, st, mib / w, (mib > 0 ? cpu / mib : 0), pct, mib, e
      } else
        printf "RESULT scenario=%s proxy=%s status=%s rps=%.1f cpu_us_per_req=%.1f proxy_cpu_pct=%.1f requests=%d errors=%d\n",
               s, p, st, n / w, (n > 0 ? cpu / n : 0), pct, n, e }' | tee -a "$RESULTS"
  else
    echo "RESULT scenario=$scen proxy=$px status=$st" | tee -a "$RESULTS"
  fi
  stop_pid "$PX_PID"
}

for r in $(seq "$ROUNDS"); do
  for s in $SCEN; do
    for p in "${PROXIES[@]}"; do
      log "round $r: $s / $p"
      run_one "$s" "$p"
    done
  done
done

# Summary: median over rounds; CPU per unit relative to nginx when measured.
echo
awk '{ delete kv; for (i = 2; i <= NF; i++) { split($i, a, "="); kv[a[1]] = a[2] }
       if (kv["status"] != "ok") next
       k = kv["scenario"] " " kv["proxy"]
       c = ("cpu_us_per_mib" in kv) ? kv["cpu_us_per_mib"] : kv["cpu_us_per_req"]
       r = ("mibps" in kv) ? kv["mibps"] : kv["rps"]
       n[k]++; cpu[k, n[k]] = c; rate[k, n[k]] = r; if (!(k in seen)) { seen[k] = 1; order[++m] = k } }
     function med(arr, k, cnt,   i, j, t, v) {
       for (i = 1; i <= cnt; i++) v[i] = arr[k, i] + 0
       for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
       return cnt % 2 ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2 }
     END {
       printf "%-18s %-8s %4s %12s %14s %10s\n", "scenario", "proxy", "runs", "rate", "cpu_us/unit", "cpu/nginx"
       for (i = 1; i <= m; i++) { k = order[i]; split(k, sp, " ")
         mc[k] = med(cpu, k, n[k]); mr[k] = med(rate, k, n[k]) }
       for (i = 1; i <= m; i++) { k = order[i]; split(k, sp, " "); ng = sp[1] " nginx"
         unit = sp[1] == "passthrough-bulk" ? "MiB" : "req"
         printf "%-18s %-8s %4d %12.1f %10.1f/%-3s %10s\n", sp[1], sp[2], n[k], mr[k], mc[k], unit,
                (ng in mc && mc[ng] > 0) ? sprintf("%.2f", mc[k] / mc[ng]) : "-" } }' "$RESULTS"
