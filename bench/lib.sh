# shellcheck shell=bash
# bench/lib.sh: helpers for bench/run.sh (sourced).  Loopback only.

LOOP=127.0.0.1

log()  { echo "[bench] $*" >&2; }
die()  { echo "[bench] ERROR: $*" >&2; exit 1; }
need() { for b in "$@"; do command -v "$b" >/dev/null 2>&1 || die "missing tool: $b"; done; }

# Processes we started (killed by PID on exit, never by name).
PIDS=()
spawn() {  # spawn CPU LOGFILE CMD...  -> $SPAWNED
  local cpu=$1 logf=$2; shift 2
  taskset -c "$cpu" "$@" >>"$logf" 2>&1 &
  SPAWNED=$!
  PIDS+=("$SPAWNED")
}
stop_pid() {
  local p=$1 i
  kill -TERM "$p" 2>/dev/null || return 0
  for i in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}
stop_all() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; PIDS=(); }

wait_port() {  # wait_port PORT PID: until something listens on PORT
  local i
  for i in $(seq 100); do
    ss -Hltn "sport = :$1" | grep -q . && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# utime+stime (clock ticks, /proc/PID/stat fields 14+15) of PID $1 and all
# its descendants (a master and its workers).
tree_ticks() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk -v root="$1" '
    { l = $0; pid = l + 0; sub(/^.*\) /, "", l); split(l, f, " ")
      pp[pid] = f[2]; t[pid] = f[12] + f[13] }
    END { m[root] = 1; ch = 1
          while (ch) { ch = 0; for (p in pp) if (!(p in m) && (pp[p] in m)) { m[p] = 1; ch = 1 } }
          s = 0; for (p in m) s += t[p]; print s }'
}

# ------------------------------------------------------------------ setup
make_certs() {  # throwaway CA and ECDSA P-256 certs for proxy.test, backend.test
  local d=$1 n
  [ -s "$d/ca.pem" ] && return 0
  mkdir -p "$d"
  (
    set -e; cd "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 7 -subj "/CN=Hamlyn bench CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign -out ca.pem
    for n in proxy backend; do
      openssl ecparam -name prime256v1 -genkey -noout -out $n.key
      openssl req -new -key $n.key -subj "/CN=$n.test" -out $n.csr
      printf 'subjectAltName=DNS:%s.test\nextendedKeyUsage=serverAuth\n' $n > $n.ext
      openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
        -sha256 -extfile $n.ext -out $n.crt
      cat $n.crt $n.key > $n.pem
    done
  ) >/dev/null 2>&1 || die "certificate generation failed"
}

BODY=$(printf 'hamlyn-bench-%.0s' $(seq 80) | head -c 1024)

make_bulk() {  # 64 MiB random file + its sha256
  [ -s "$1/bulk.sha256" ] && return 0
  mkdir -p "$1"
  head -c $((64 << 20)) /dev/urandom > "$1/bulk.bin"
  sha256sum < "$1/bulk.bin" | cut -d' ' -f1 > "$1/bulk.sha256"
}

# Backend: its own nginx, 1 worker on the load CPU; HTTP on BE_HTTP, TLS
# (backend.test) on BE_TLS; 1 KiB body on /, /bulk.bin = 64 MiB file.
backend_start() {
  local d=$TMP/backend; mkdir -p "$d"
  cat > "$d/nginx.conf" <<CONF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d;
    uwsgi_temp_path $d; scgi_temp_path $d;
    sendfile on;
    keepalive_requests 10000000;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen $LOOP:$BE_HTTP backlog=4096;
        listen $LOOP:$BE_TLS ssl backlog=4096;
        ssl_certificate $CERTS/backend.crt;
        ssl_certificate_key $CERTS/backend.key;
        location = /bulk.bin { root $DATA; }
        location / { return 200 "$BODY"; }
    }
}
CONF
  spawn "$CPU_LOAD" "$d/stderr" nginx -c "$d/nginx.conf" -p "$d" -e "$d/error.log" -g 'daemon off;'
  BE_PID=$SPAWNED
  wait_port "$BE_TLS" "$BE_PID" && wait_port "$BE_HTTP" "$BE_PID" ||
    { cat "$d/error.log" >&2; die "backend nginx did not start"; }
}

# ---------------------------------------------------------------- proxies
# px_NAME MODE(pass|term): write a config, start the proxy pinned to
# CPU_PROXY, listening on PX_PORT; sets PX_PID.

px_hamlyn() {
  local d=$TMP/hamlyn site up; mkdir -p "$d"
  [ -x "$HAMLYN_BIN" ] || die "no hamlyn binary at $HAMLYN_BIN (make, or set HAMLYN_BIN)"
  if [ "$1" = pass ]; then
    site='"s": {"server_names": ["backend.test"], "mode": "passthrough", "upstream": "be"}'
    up="\"be\": {\"servers\": [\"$LOOP:$BE_TLS\"]}"
  else
    site='"s": {"server_names": ["proxy.test"], "mode": "terminate",
                "tls": {"certificates": ["proxy"], "alpn": ["http/1.1"]},
                "routes": [{"match": {"path_prefix": "/"}, "upstream": "be"}]}'
    up="\"be\": {\"servers\": [\"$LOOP:$BE_HTTP\"],
                 \"plaintext\": {\"accepted_risk\": \"benchmark on loopback\"},
                 \"pool\": {\"max_idle_per_worker\": 128}}"
  fi
  cat > "$d/hamlyn.json" <<JSON
{
  "runtime": {"workers": 1, "cpu_affinity": "off", "pid_file": "$d/hamlyn.pid",
              "error_log": {"path": "$d/error.log", "level": "warn"},
              "access_log": {"path": "off"}, "max_connections": 16384},
  "certificates": {"proxy": {"cert": "$CERTS/proxy.crt", "key": "$CERTS/proxy.key"}},
  "upstreams": {$up},
  "listeners": [{"name": "l", "listen": ["$LOOP:$PX_PORT"], "sites": ["s"]}],
  "sites": {$site}
}
JSON
  spawn "$CPU_PROXY" "$d/stderr" "$HAMLYN_BIN" -c "$d/hamlyn.json"
  PX_PID=$SPAWNED
  wait_port "$PX_PORT" "$PX_PID" || { cat "$d/stderr" "$d/error.log" >&2 2>/dev/null; return 1; }
}

px_nginx() {
  local d=$TMP/nginx mod=""; mkdir -p "$d"
  [ "$1" = pass ] && mod="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
  {
    echo "$mod"
    echo "worker_processes 1; pid $d/nginx.pid; error_log $d/error.log warn;"
    echo "events { worker_connections 16384; }"
    if [ "$1" = pass ]; then cat <<CONF
stream {
    map \$ssl_preread_server_name \$be { backend.test $LOOP:$BE_TLS; default $LOOP:9; }
    server { listen $LOOP:$PX_PORT backlog=4096; ssl_preread on; proxy_pass \$be; }
}
CONF
    else cat <<CONF
http {
    access_log off;
    client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d;
    uwsgi_temp_path $d; scgi_temp_path $d;
    keepalive_requests 100000;
    ssl_protocols TLSv1.2 TLSv1.3;
    upstream be { server $LOOP:$BE_HTTP; keepalive 128; }
    server {
        listen $LOOP:$PX_PORT ssl backlog=4096;
        server_name proxy.test;
        ssl_certificate $CERTS/proxy.crt;
        ssl_certificate_key $CERTS/proxy.key;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
        }
    }
}
CONF
    fi
  } > "$d/nginx.conf"
  spawn "$CPU_PROXY" "$d/stderr" nginx -c "$d/nginx.conf" -p "$d" -e "$d/error.log" -g 'daemon off;'
  PX_PID=$SPAWNED
  wait_port "$PX_PORT" "$PX_PID" || { cat "$d/error.log" >&2; return 1; }
}

px_haproxy() {
  local d=$TMP/haproxy; mkdir -p "$d"
  {
    cat <<CONF
global
    nbthread 1
    maxconn 8000
defaults
    timeout connect 5s
    timeout client 60s
    timeout server 60s
CONF
    if [ "$1" = pass ]; then cat <<CONF
frontend fe
    mode tcp
    bind $LOOP:$PX_PORT
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend be if { req_ssl_sni -i backend.test }
backend be
    mode tcp
    server s1 $LOOP:$BE_TLS
CONF
    else cat <<CONF
frontend fe
    mode http
    option forwardfor
    bind $LOOP:$PX_PORT ssl crt $CERTS/proxy.pem alpn http/1.1
    default_backend be
backend be
    mode http
    http-reuse always
    server s1 $LOOP:$BE_HTTP
CONF
    fi
  } > "$d/haproxy.cfg"
  spawn "$CPU_PROXY" "$d/stderr" haproxy -db -f "$d/haproxy.cfg"
  PX_PID=$SPAWNED
  wait_port "$PX_PORT" "$PX_PID" || { cat "$d/stderr" >&2; return 1; }
}

# ------------------------------------------------------------ load tools
# Full TLS handshake per request: curl in parallel mode, no session cache
# (--no-sessionid) and "Connection: close", for DUR seconds.  Sets REQS ERRS.
load_handshakes() {  # DUR CONNS SNI
  local out=$TMP/curl.out
  timeout -s INT "$1" taskset -c "$CPU_LOAD" curl -sk --no-progress-meter --no-sessionid -Z \
    --parallel-max "$2" --resolve "$3:$PX_PORT:$LOOP" \
    -H "Connection: close" -w "%{stderr}%{http_code} %{errormsg}\n" \
    "https://$3:$PX_PORT/[1-100000000]" >/dev/null 2>"$out"
  REQS=$(grep -c '^200 ' "$out")
  ERRS=$(grep -vc '^200 ' "$out")
}

# Keep-alive HTTPS requests: h2load --h1, CONNS connections.  Sets REQS ERRS.
load_keepalive() {  # DUR CONNS SNI
  local out=$TMP/h2load.out
  taskset -c "$CPU_LOAD" h2load --h1 -t1 -c"$2" -D "$1" \
    --connect-to="$LOOP:$PX_PORT" "https://$3:$PX_PORT/" >"$out" 2>&1
  REQS=$(awk '/^requests:/{print $8}' "$out")
  ERRS=$(awk '/^requests:/{e=$10} /^status codes:/{e+=$5+$7+$9} END{print e+0}' "$out")
  [ -n "$REQS" ] || { cat "$out" >&2; die "cannot parse h2load output"; }
}

# Bulk: h2load --h1 -c1 GETs of the 64 MiB file.  Sets REQS ERRS BYTES.
load_bulk() {  # DUR
  local out=$TMP/h2load.out
  taskset -c "$CPU_LOAD" h2load --h1 -t1 -c1 -D "$1" \
    --connect-to="$LOOP:$PX_PORT" "https://backend.test:$PX_PORT/bulk.bin" >"$out" 2>&1
  REQS=$(awk '/^requests:/{print $8}' "$out")
  ERRS=$(awk '/^requests:/{print $10+0}' "$out")
  BYTES=$(awk '/^traffic:/{gsub(/[()]/, "", $3); print $3}' "$out")
  [ -n "$BYTES" ] || { cat "$out" >&2; die "cannot parse h2load output"; }
}
