#!/usr/bin/env python3
"""t/diff/diff.py: differential audit of Hamlyn's terminating HTTP/1.1 proxy.

README. Starts Hamlyn (./hamlyn of this checkout), nginx and HAProxy (from
$PATH; private configs, prefixes and logs under --dir, default /tmp/diff,
never the system services) as TLS-terminating reverse proxies, each in
front of its own recording plaintext backend run by this script, then sends
the same corpus of raw client requests (methods, request-target forms, Host
variants, header edge cases, Connection/TE/Upgrade/Expect, Content-Length
and chunked bodies, pipelining, HTTP/1.0, long lines, many headers) and the
same corpus of canned backend responses (1xx/204/304, HEAD, bad or
duplicate Content-Length, chunked variants, close-delimited, hop-by-hop
headers, 101 without Upgrade, trailers) through all three.  For every case
it compares (a) what the client got (status, headers that matter, body
bytes, whether the connection stayed open) and (b) what the backend
received (request line, headers, framing, body bytes, number of requests),
after dropping what legitimately differs between products (Date, Server,
Connection/Keep-Alive, X-Forwarded-*/Forwarded/X-Real-IP/Via, error page
bodies).  Run from the top of the checkout after `make`:

    python3 t/diff/diff.py [--dir /tmp/diff] [--only REGEX] [--show all]

It writes DIR/report.txt (one block per case where the products differ,
with a pattern such as "H|NA" = Hamlyn alone against nginx and HAProxy
agreeing) and DIR/results.json, and prints a summary.  Ports are picked
free on 127.0.0.1; every wait is bounded; the processes it started are
stopped by PID at the end.  Loopback only.  Classification of the
differences is a human job: see the audit report in git log.
"""

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROXIES = ("hamlyn", "nginx", "haproxy")
IDLE = 0.35            # client: seconds of silence that end a read
CASE_TIMEOUT = 6.0     # client: hard cap per read phase
DROP_BE = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
           "x-forwarded-port", "forwarded", "x-real-ip", "via", "connection",
           "keep-alive"}
DROP_CL = {"date", "server", "connection", "keep-alive", "content-length",
           "transfer-encoding", "via"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---- recording backend ----------------------------------------------------

RESPONSES = {}          # name -> (bytes, close_after)


def canned(name, raw, close=False):
    RESPONSES[name] = (raw if isinstance(raw, bytes) else raw.encode("latin-1"), close)


class Backend:
    """A plaintext HTTP/1.1 server that records every request it parses.

    Each connection loops: read a head (to CRLFCRLF), read the body by
    Content-Length or chunked (raw framing kept), record it, answer.  The
    target /r/NAME selects a canned raw response from RESPONSES (sent as
    is, optionally followed by a close); any other target gets a 200 with
    X-Be: 1 and a short body.  Expect: 100-continue gets an interim 100.
    """

    def __init__(self):
        self.port = free_port()
        self.lock = threading.Lock()
        self.records = []
        self.conns = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(128)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def reset(self):
        with self.lock:
            self.records = []
            self.conns = 0

    def take(self):
        with self.lock:
            r, c = self.records, self.conns
            self.records, self.conns = [], 0
        return r, c

    def accept_loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(5)
        buf = b""
        try:
            for _ in range(50):
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        if buf:
                            self.record({"partial": buf.decode("latin-1")})
                        return
                    buf += d
                    if len(buf) > 1 << 20:
                        return
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                hdrs = []
                for ln in lines[1:]:
                    n, _, v = ln.partition(":")
                    hdrs.append([n, v.strip()])
                low = [(n.lower(), v) for n, v in hdrs]
                te = ",".join(v for n, v in low if n == "transfer-encoding").lower()
                cls = [v for n, v in low if n == "content-length"]
                if any(n == "expect" and v.lower() == "100-continue" for n, v in low):
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                rec = {"line": lines[0], "headers": hdrs, "framing": "none",
                       "body": "", "trailers": []}
                if "chunked" in te:
                    rec["framing"] = "chunked"
                    body, trailers, buf, ok = read_chunked(c, buf)
                    rec["body"], rec["trailers"] = body.decode("latin-1"), trailers
                    if not ok:
                        rec["framing"] = "chunked-incomplete"
                        self.record(rec)
                        return
                elif cls:
                    rec["framing"] = "cl"
                    try:
                        n = int(cls[0])
                    except ValueError:
                        n = 0
                    while len(buf) < n:
                        d = c.recv(65536)
                        if not d:
                            break
                        buf += d
                    rec["body"], buf = buf[:n].decode("latin-1"), buf[n:]
                self.record(rec)
                target = lines[0].split(" ")[1] if " " in lines[0] else ""
                m = re.match(r"^/r/([A-Za-z0-9_.-]+)", target)
                if m and m.group(1) in RESPONSES:
                    raw, close = RESPONSES[m.group(1)]
                    c.sendall(raw)
                    if close:
                        return
                    continue
                body = b"ok\n"
                c.sendall(b"HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 3\r\n\r\n" + body)
        except OSError:
            return
        finally:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def record(self, rec):
        with self.lock:
            self.records.append(rec)


def read_chunked(c, buf):
    body = b""
    trailers = []
    for _ in range(10000):
        while b"\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return body, trailers, buf, False
            buf += d
        line, buf = buf.split(b"\r\n", 1)
        try:
            n = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            return body, trailers, buf, False
        if n == 0:
            for _ in range(100):
                while b"\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return body, trailers, buf, False
                    buf += d
                line, buf = buf.split(b"\r\n", 1)
                if not line:
                    return body, trailers, buf, True
                trailers.append(line.decode("latin-1"))
            return body, trailers, buf, False
        while len(buf) < n + 2:
            d = c.recv(65536)
            if not d:
                return body, trailers, buf, False
            buf += d
        body += buf[:n]
        buf = buf[n + 2:]
    return body, trailers, buf, False


# ---- proxies ---------------------------------------------------------------

class Proxy:
    def __init__(self, name, d, certs, be):
        self.name, self.dir, self.certs, self.be = name, d, certs, be
        self.port = free_port()
        self.proc = None
        os.makedirs(d, exist_ok=True)

    def start(self):
        getattr(self, "start_" + self.name)()
        t0 = time.time()
        while time.time() - t0 < 10:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(self.name + " did not start; see " + self.dir)

    def spawn(self, argv):
        self.proc = subprocess.Popen(argv, stdout=open(self.dir + "/stdout", "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def start_hamlyn(self):
        c = self.certs
        conf = {
            "runtime": {"workers": 1, "cpu_affinity": "off", "pid_file": self.dir + "/hamlyn.pid",
                        "error_log": {"path": self.dir + "/error.log", "level": "info"},
                        "access_log": {"path": self.dir + "/access.log"}},
            "certificates": {"a": {"cert": c + "/a.test.pem", "key": c + "/a.test.key"}},
            "upstreams": {"be": {"servers": ["127.0.0.1:%d" % self.be.port],
                                 "plaintext": {"accepted_risk": "differential audit on loopback"},
                                 "read_timeout_ms": 2000, "connect_timeout_ms": 1000}},
            "listeners": [{"name": "l", "listen": ["127.0.0.1:%d" % self.port],
                           "sites": ["a"], "default_site": "a"}],
            "sites": {"a": {"server_names": ["a.test"], "mode": "terminate",
                            "tls": {"certificates": ["a"]},
                            "limits": {"header_timeout_ms": 2000, "idle_timeout_ms": 3000},
                            "headers": {"forwarded": "replace"},
                            "routes": [{"match": {"path_prefix": "/"}, "upstream": "be"}]}},
        }
        with open(self.dir + "/hamlyn.json", "w") as f:
            json.dump(conf, f, indent=1)
        self.spawn([os.path.join(TOP, "hamlyn"), "-c", self.dir + "/hamlyn.json"])

    def start_nginx(self):
        d, c = self.dir, self.certs
        os.makedirs(d + "/tmp", exist_ok=True)
        with open(d + "/nginx.conf", "w") as f:
            f.write("""
worker_processes 1;
%(user)s
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log info;
events { worker_connections 512; }
http {
    access_log %(d)s/access.log;
    client_body_temp_path %(d)s/tmp/body;
    proxy_temp_path %(d)s/tmp/proxy;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
    client_header_timeout 2s;
    client_body_timeout 2s;
    keepalive_timeout 3s;
    map $http_upgrade $connection_upgrade { default upgrade; '' ''; }
    upstream be { server 127.0.0.1:%(bp)d; keepalive 8; }
    server {
        listen 127.0.0.1:%(p)d ssl;
        server_name a.test;
        ssl_certificate %(c)s/a.test.pem;
        ssl_certificate_key %(c)s/a.test.key;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 2s;
            proxy_connect_timeout 1s;
        }
    }
}
""" % {"d": d, "c": c, "p": self.port, "bp": self.be.port,
       "user": "user root;" if os.geteuid() == 0 else ""})
        self.spawn(["nginx", "-p", d, "-c", d + "/nginx.conf"])

    def start_haproxy(self):
        d, c = self.dir, self.certs
        with open(d + "/a.test.both.pem", "w") as f:
            f.write(open(c + "/a.test.pem").read() + open(c + "/a.test.key").read())
        with open(d + "/haproxy.cfg", "w") as f:
            f.write("""
global
    log stdout format raw local0 info
defaults
    mode http
    log global
    option httplog
    timeout connect 1s
    timeout client 3s
    timeout server 2s
    timeout http-request 2s
    timeout http-keep-alive 3s
frontend fe
    bind 127.0.0.1:%(p)d ssl crt %(d)s/a.test.both.pem
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend be
backend be
    server s1 127.0.0.1:%(bp)d
""" % {"d": d, "p": self.port, "bp": self.be.port})
        self.spawn(["haproxy", "-db", "-f", d + "/haproxy.cfg"])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM if self.name != "nginx" else signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---- client ----------------------------------------------------------------

CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def read_phase(s):
    """Reads until EOF, a reset, IDLE seconds of silence or CASE_TIMEOUT."""
    out = b""
    t0 = time.time()
    s.settimeout(IDLE)
    while time.time() - t0 < CASE_TIMEOUT:
        try:
            d = s.recv(65536)
        except socket.timeout:
            return out, "open"
        except (ssl.SSLError, OSError) as e:
            return out, "reset" if "RESET" in str(e).upper() or isinstance(e, ConnectionResetError) else "eof"
        if not d:
            return out, "eof"
        out += d
    return out, "open"


def run_client(port, parts):
    """parts: list of bytes to send; b"" between them = read a phase.

    Returns the list of (bytes, state) per read phase; sending after a
    close is recorded as state "send-failed"."""
    phases = []
    try:
        raw = socket.create_connection(("127.0.0.1", port), 3)
        s = CTX.wrap_socket(raw, server_hostname="a.test")
    except OSError as e:
        return [(b"", "connect-failed:" + str(e))]
    try:
        for p in parts:
            if p == b"":
                phases.append(read_phase(s))
                if phases[-1][1] != "open":
                    break
                continue
            if p.startswith(b"<<SLEEP"):
                time.sleep(float(p[7:-2]))
                continue
            try:
                s.sendall(p)
            except (ssl.SSLError, OSError):
                phases.append((b"", "send-failed"))
                break
        else:
            phases.append(read_phase(s))
    finally:
        s.close()
    return phases


def parse_responses(data, methods):
    """Splits a client byte stream into responses; methods = request methods
    in order (HEAD has no body).  Returns a list of dicts."""
    out = []
    mi = 0
    for _ in range(64):
        if not data:
            break
        if b"\r\n\r\n" not in data:
            out.append({"junk": data[:200].decode("latin-1")})
            break
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/(\d\.\d) (\d{3})", lines[0])
        if not m:
            out.append({"junk": head[:200].decode("latin-1")})
            break
        st = int(m.group(2))
        hdrs = []
        for ln in lines[1:]:
            n, _, v = ln.partition(":")
            hdrs.append((n.lower(), v.strip()))
        r = {"status": st, "headers": hdrs, "body": b"", "framing": "none"}
        out.append(r)
        if 100 <= st < 200 and st != 101:
            continue
        method = methods[mi] if mi < len(methods) else "GET"
        mi += 1
        te = ",".join(v for n, v in hdrs if n == "transfer-encoding").lower()
        cl = [v for n, v in hdrs if n == "content-length"]
        if method == "HEAD" or st in (204, 304) or st == 101:
            if st == 101:
                r["body"], data = data, b""
            continue
        if "chunked" in te:
            r["framing"] = "chunked"
            body = b""
            ok = False
            for _ in range(10000):
                if b"\r\n" not in data:
                    break
                line, rest = data.split(b"\r\n", 1)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    break
                if n == 0:
                    data = rest
                    tr = []
                    while b"\r\n" in data:
                        line, data = data.split(b"\r\n", 1)
                        if not line:
                            ok = True
                            break
                        tr.append(line.decode("latin-1"))
                    r["trailers"] = tr
                    break
                body += rest[:n]
                data = rest[n + 2:]
            r["body"] = body
            if not ok:
                r["framing"] = "chunked-incomplete"
        elif cl:
            r["framing"] = "cl"
            try:
                n = int(cl[0].split(",")[0])
            except ValueError:
                n = len(data)
            r["body"], data = data[:n], data[n:]
        else:
            r["framing"] = "close"
            r["body"], data = data, b""
    return out


def norm_client(phases, methods):
    res = []
    states = []
    alldata = b"".join(p[0] for p in phases)
    for r in parse_responses(alldata, methods):
        if "junk" in r:
            res.append(("junk", r["junk"][:60]))
            continue
        hd = r["headers"]
        from_be = any(n == "x-be" for n, v in hd) or r["status"] < 200 or r["status"] == 101
        keep = sorted((n, v) for n, v in hd if n not in DROP_CL) if from_be else []
        body = r["body"]
        bsum = body.decode("latin-1") if len(body) < 48 else "sha:" + hashlib.sha256(body).hexdigest()[:12] + "/%d" % len(body)
        res.append((r["status"], "be" if from_be else "proxy", keep,
                    bsum if from_be else "", r.get("trailers", [])))
    states = [p[1] for p in phases]
    return {"responses": res, "end": states[-1] if states else "none"}


def norm_backend(records, conns):
    reqs = []
    for r in records:
        if "partial" in r:
            reqs.append({"partial": r["partial"][:80]})
            continue
        hd = [(n.lower(), v) for n, v in r["headers"] if n.lower() not in DROP_BE]
        reqs.append({"line": r["line"], "headers": hd, "framing": r["framing"],
                     "body": r["body"] if len(r["body"]) < 64 else
                     "sha:" + hashlib.sha256(r["body"].encode("latin-1")).hexdigest()[:12] + "/%d" % len(r["body"]),
                     "trailers": r["trailers"]})
    return {"requests": reqs}


# ---- corpus ----------------------------------------------------------------

def req(method="GET", target="/", version="HTTP/1.1", headers=None, body=b"", host="a.test"):
    h = ""
    if host is not None:
        h += "Host: %s\r\n" % host
    for k, v in (headers or []):
        h += "%s: %s\r\n" % (k, v)
    return ("%s %s %s\r\n%s\r\n" % (method, target, version, h)).encode("latin-1") + (body if isinstance(body, bytes) else body.encode("latin-1"))


def request_corpus():
    C = []

    def add(name, parts, methods=None):
        if isinstance(parts, bytes):
            parts = [parts]
        C.append((name, parts, methods or []))

    # methods x simple
    for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
              "PROPFIND", "MKCOL", "LOCK", "FOO", "get", "G-T", "G_T", "G.T"]:
        body = b""
        hs = []
        if m in ("POST", "PUT", "PATCH", "PROPFIND"):
            body, hs = b"abc", [("Content-Length", "3")]
        add("method-" + m, req(m, "/m", headers=hs, body=body), [m])
    add("method-CONNECT", b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", ["CONNECT"])
    add("method-OPTIONS-star", b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", ["OPTIONS"])
    add("method-long", req("X" * 100, "/"), ["X"])
    # request-target forms
    targets = ["/", "/a/b/c", "/a//b", "/a/./b", "/a/../b", "/../etc", "/a/%2e%2e/b", "/%2E%2e/x",
               "/a%2Fb", "/a%2fb", "/%7euser", "/~user", "/a?x=1&y=2", "/a?", "/a?x=/../b", "/a#frag",
               "/a;p=1", "/sp%20ace", "/%00", "/%zz", "/%", "/a%", "/ü", "/a\tb", "/a b",
               "/a\"b", "/a<b>", "/a{b}", "/a|b", "/a\\b", "/a^b", "/a`b", "//double", "/a/.",
               "/a/..", "/.", "/..", "/a?q=%00", "*", "a/b", "?x", "/" + "a" * 4000,
               "/" + "a" * 9000]
    for i, tg in enumerate(targets):
        add("target-%02d" % i + "-" + re.sub(r"[^A-Za-z0-9]", "_", tg[:20]), req("GET", tg))
    for i, tg in enumerate(["http://a.test/abs", "http://a.test:%PORT%/abs", "https://a.test/abs",
                            "http://b.test/abs", "http://A.TEST/abs", "http://a.test", "http://a.test?x",
                            "http://user@a.test/abs", "ftp://a.test/abs", "HTTP://a.test/abs",
                            "http://a.test/a/../b", "http://[::1]/abs", "http:///abs"]):
        add("absform-%02d" % i, req("GET", tg))
        add("absform-nohost-%02d" % i, req("GET", tg, host=None))
    # Host variants
    for i, h in enumerate(["a.test", "A.TEST", "a.test:%PORT%", "a.test:443", "a.test.", "b.test",
                           "a.test:", "a.test:abc", "a.test:99999", "[::1]", "127.0.0.1", "",
                           "a test", "a.test, b.test", "a_b.test", "a.test/x", "a.test@b", " a.test",
                           "a.test ", "x" * 300, "ü.test", "-a.test", "a..test"]):
        add("host-%02d" % i, req("GET", "/h", host=h))
    add("host-missing", req("GET", "/h", host=None))
    add("host-dup-same", req("GET", "/h", headers=[("Host", "a.test")]))
    add("host-dup-diff", req("GET", "/h", headers=[("Host", "b.test")]))
    add("host-10-missing", req("GET", "/h", "HTTP/1.0", host=None))
    add("host-space-before-colon", b"GET /h HTTP/1.1\r\nHost : a.test\r\n\r\n")
    # versions / request line
    for i, ln in enumerate(["GET / HTTP/1.0", "GET / HTTP/1.1", "GET / HTTP/1.2", "GET / HTTP/2.0",
                            "GET / HTTP/0.9", "GET / http/1.1", "GET / HTTP/1.1 ", "GET  / HTTP/1.1",
                            "GET /  HTTP/1.1", "GET\t/\tHTTP/1.1", "GET / HTTP/1.01", "GET / HTTP/10.1",
                            "GET / HTTP/1", "GET /", " GET / HTTP/1.1", "GET / XTTP/1.1", "GET / HTTP/1.1\r"]):
        add("line-%02d" % i, (ln + "\r\nHost: a.test\r\n\r\n").encode("latin-1"))
    add("line-lf-only", b"GET /lf HTTP/1.1\nHost: a.test\n\n")
    add("line-leading-crlf", b"\r\nGET /lead HTTP/1.1\r\nHost: a.test\r\n\r\n")
    add("line-leading-2crlf", b"\r\n\r\nGET /lead HTTP/1.1\r\nHost: a.test\r\n\r\n")
    # header name/value edge cases
    hcases = [("X-A", "1"), ("x-lower", "v"), ("X-Empty", ""), ("X-Sp", "  padded  "),
              ("X-Tab", "\tt\t"), ("X-Inner", "a  b"), ("X-Utf8", "ü"), ("X-Obs", "\x80\xff"),
              ("X-Ctl", "a\x01b"), ("X-Nul", "a\x00b"), ("X-Del", "a\x7fb"), ("X_Under", "1"),
              ("X.Dot", "1"), ("X@At", "1"), ("X(Par)", "1"), ("X/Sl", "1"), ("X{B}", "1"),
              ("X\"Q", "1"), ("X-Long", "v" * 6000), ("X-Comma", "a, b"), ("X-Colon", "a:b"),
              ("Cookie", "a=1; b=2"), ("Authorization", "Basic Zm9vOmJhcg=="),
              ("Proxy-Authorization", "Basic Zm9vOmJhcg=="), ("Proxy-Connection", "keep-alive"),
              ("TE", "trailers"), ("TE", "gzip"), ("Trailer", "X-T"), ("Upgrade", "h2c"),
              ("Keep-Alive", "timeout=5"), ("X-Forwarded-For", "6.6.6.6"), ("Max-Forwards", "0"),
              ("Expect", "foo"), ("Accept-Encoding", "gzip"), ("Range", "bytes=0-1"),
              ("If-None-Match", "\"x\""), ("Content-Type", "text/plain"), ("Via", "1.1 evil"),
              ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")]
    for i, (n, v) in enumerate(hcases):
        add("hdr-%02d-%s" % (i, re.sub(r"[^A-Za-z0-9]", "_", n)), req("GET", "/hd", headers=[(n, v)]))
    add("hdr-dup-xa", req("GET", "/hd", headers=[("X-A", "1"), ("X-A", "2")]))
    add("hdr-dup-cookie", req("GET", "/hd", headers=[("Cookie", "a=1"), ("Cookie", "b=2")]))
    add("hdr-order", req("GET", "/hd", headers=[("X-B", "2"), ("X-A", "1"), ("x-b", "3")]))
    add("hdr-space-before-colon", b"GET /hd HTTP/1.1\r\nHost: a.test\r\nX-A : 1\r\n\r\n")
    add("hdr-no-colon", b"GET /hd HTTP/1.1\r\nHost: a.test\r\nX-A\r\n\r\n")
    add("hdr-empty-name", b"GET /hd HTTP/1.1\r\nHost: a.test\r\n: 1\r\n\r\n")
    add("hdr-obs-fold", b"GET /hd HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n  folded\r\n\r\n")
    add("hdr-obs-fold-first", b"GET /hd HTTP/1.1\r\n X-A: 1\r\nHost: a.test\r\n\r\n")
    add("hdr-no-space", b"GET /hd HTTP/1.1\r\nHost:a.test\r\nX-A:1\r\n\r\n")
    add("hdr-lf-mixed", b"GET /hd HTTP/1.1\r\nHost: a.test\nX-A: 1\r\n\r\n")
    add("hdr-bare-cr", b"GET /hd HTTP/1.1\r\nHost: a.test\r\nX-A: 1\rX-B: 2\r\n\r\n")
    for n in (50, 99, 100, 101, 200):
        add("hdr-many-%d" % n, req("GET", "/many", headers=[("X-H%d" % i, "v%d" % i) for i in range(n)]))
    for n in (4000, 8000, 8190, 16000, 40000):
        add("hdr-big-%d" % n, req("GET", "/big", headers=[("X-Big", "b" * n)]))
    add("hdr-total-24k", req("GET", "/big", headers=[("X-B%d" % i, "b" * 4000) for i in range(6)]))
    # Connection / TE / Upgrade / Expect combinations
    conns = ["close", "keep-alive", "Close", "close, x-hop", "x-hop", "upgrade", "te", "keep-alive, close",
             "content-length", "host", "x-forwarded-for", "transfer-encoding", "", "CLOSE ,", "foo bar"]
    for i, cv in enumerate(conns):
        add("conn-%02d" % i, [req("GET", "/c1", headers=[("Connection", cv), ("X-Hop", "1"),
                                                         ("X-Forwarded-For", "7.7.7.7")]), b"",
                              req("GET", "/c2"), b""])
    add("conn-10-ka", [req("GET", "/k1", "HTTP/1.0", headers=[("Connection", "keep-alive")]), b"",
                       req("GET", "/k2", "HTTP/1.0", headers=[("Connection", "keep-alive")]), b""])
    add("conn-10-plain", [req("GET", "/k1", "HTTP/1.0"), b"", req("GET", "/k2", "HTTP/1.0"), b""])
    add("conn-10-ka-post", [req("POST", "/k1", "HTTP/1.0", headers=[("Connection", "keep-alive"),
                                                                      ("Content-Length", "2")], body=b"hi"), b"",
                            req("GET", "/k2", "HTTP/1.0", headers=[("Connection", "keep-alive")]), b""],
        ["POST", "GET"])
    for i, (up, cv) in enumerate([("websocket", "Upgrade"), ("websocket", "keep-alive"), ("h2c", "Upgrade, HTTP2-Settings"),
                                  ("websocket", "upgrade, close"), ("", "Upgrade"), ("foo/1, websocket", "Upgrade")]):
        hs = [("Connection", cv), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
        if up:
            hs.append(("Upgrade", up))
        if "HTTP2" in cv:
            hs.append(("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"))
        add("upgrade-%02d" % i, [req("GET", "/ws", headers=hs), b"", req("GET", "/after"), b""])
    add("upgrade-10", [req("GET", "/ws", "HTTP/1.0", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")]), b""])
    add("upgrade-post", [req("POST", "/ws", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket"),
                                                     ("Content-Length", "2")], body=b"hi"), b""], ["POST"])
    for i, ev in enumerate(["100-continue", "100-Continue", "200-ok", "100-continue, foo"]):
        add("expect-%02d" % i, [req("POST", "/e", headers=[("Expect", ev), ("Content-Length", "5")]), b"",
                                b"hello", b""], ["POST"])
    add("expect-10", [req("POST", "/e", "HTTP/1.0", headers=[("Expect", "100-continue"), ("Content-Length", "5")]), b"",
                      b"hello", b""], ["POST"])
    add("expect-get", [req("GET", "/e", headers=[("Expect", "100-continue")]), b""])
    add("expect-chunked", [req("POST", "/e", headers=[("Expect", "100-continue"), ("Transfer-Encoding", "chunked")]), b"",
                           b"5\r\nhello\r\n0\r\n\r\n", b""], ["POST"])
    add("expect-cl0", [req("POST", "/e", headers=[("Expect", "100-continue"), ("Content-Length", "0")]), b""], ["POST"])
    # TE variants on requests
    tes = [("chunked", b"5\r\nhello\r\n0\r\n\r\n"), ("Chunked", b"5\r\nhello\r\n0\r\n\r\n"),
           ("CHUNKED", b"5\r\nhello\r\n0\r\n\r\n"), ("gzip, chunked", b"5\r\nhello\r\n0\r\n\r\n"),
           ("chunked, gzip", b"5\r\nhello\r\n0\r\n\r\n"), ("identity", b"hello"),
           ("chunked ", b"5\r\nhello\r\n0\r\n\r\n"), (" chunked", b"5\r\nhello\r\n0\r\n\r\n"),
           ("chunked,", b"5\r\nhello\r\n0\r\n\r\n"), ("xchunked", b"5\r\nhello\r\n0\r\n\r\n"),
           ("chunked;q=1", b"5\r\nhello\r\n0\r\n\r\n"), ("\tchunked", b"5\r\nhello\r\n0\r\n\r\n")]
    for i, (te, b) in enumerate(tes):
        add("te-%02d" % i, [req("POST", "/te", headers=[("Transfer-Encoding", te)], body=b), b"",
                            req("GET", "/after"), b""], ["POST", "GET"])
    add("te-dup", [req("POST", "/te", headers=[("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
                       body=b"5\r\nhello\r\n0\r\n\r\n"), b""], ["POST"])
    add("te-and-cl", [req("POST", "/te", headers=[("Transfer-Encoding", "chunked"), ("Content-Length", "5")],
                          body=b"5\r\nhello\r\n0\r\n\r\n"), b"", req("GET", "/after"), b""], ["POST", "GET"])
    add("te-10", [req("POST", "/te", "HTTP/1.0", headers=[("Transfer-Encoding", "chunked")],
                      body=b"5\r\nhello\r\n0\r\n\r\n"), b""], ["POST"])
    # chunked bodies
    chs = [b"5;ext=1\r\nhello\r\n0\r\n\r\n", b"5;ext=\"q\"\r\nhello\r\n0;x\r\n\r\n",
           b"5 ;ext\r\nhello\r\n0\r\n\r\n", b"5\t\r\nhello\r\n0\r\n\r\n",
           b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n", b"5\r\nhello\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n",
           b"5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n", b"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n",
           b"005\r\nhello\r\n000\r\n\r\n", b"0000000000000005\r\nhello\r\n0\r\n\r\n",
           b"A\r\n0123456789\r\n0\r\n\r\n", b"a\r\n0123456789\r\n0\r\n\r\n",
           b"5\r\nhello\n0\r\n\r\n", b"5\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n",
           b"5\r\nhello\r\n0\r\n", b"-5\r\nhello\r\n0\r\n\r\n", b"0x5\r\nhello\r\n0\r\n\r\n",
           b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n", b"5\r\nhel", b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n",
           b"0\r\n\r\n", b"5\r\nhello\r\n0\r\nX-T: 1\n\r\n", b"5\r\nhello\r\n0\r\n: x\r\n\r\n",
           b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n", b"5\r\nhello\r\n0\r\nX-T:" + b"t" * 9000 + b"\r\n\r\n",
           b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", b"5\r\nhello\r\n0\r\nX-T: a\x01b\r\n\r\n"]
    for i, b in enumerate(chs):
        add("chunk-%02d" % i, [req("POST", "/ch", headers=[("Transfer-Encoding", "chunked")], body=b), b"",
                               req("GET", "/after"), b""], ["POST", "GET"])
    add("chunk-big", [req("POST", "/ch", headers=[("Transfer-Encoding", "chunked")],
                          body=b"".join(b"%x\r\n" % 1000 + b"z" * 1000 + b"\r\n" for _ in range(300)) + b"0\r\n\r\n"), b"",
                      req("GET", "/after"), b""], ["POST", "GET"])
    # Content-Length variants
    cls = [("5", b"hello"), ("0", b""), ("05", b"hello"), ("+5", b"hello"), ("5 ", b"hello"), (" 5", b"hello"),
           ("5, 5", b"hello"), ("5,5", b"hello"), ("5, 6", b"hello!"), ("-1", b""), ("abc", b""),
           ("0x5", b"hello"), ("5.0", b"hello"), ("99999999999999999999", b""), ("", b""),
           ("3", b"hello"), ("4294967301", b"hello")]
    for i, (cv, b) in enumerate(cls):
        add("cl-%02d" % i, [req("POST", "/cl", headers=[("Content-Length", cv)], body=b), b"",
                            req("GET", "/after"), b""], ["POST", "GET"])
    add("cl-dup-same", [req("POST", "/cl", headers=[("Content-Length", "5"), ("Content-Length", "5")], body=b"hello"), b"",
                        req("GET", "/after"), b""], ["POST", "GET"])
    add("cl-dup-diff", [req("POST", "/cl", headers=[("Content-Length", "5"), ("Content-Length", "6")], body=b"hello!"), b""],
        ["POST"])
    add("cl-get-body", [req("GET", "/cl", headers=[("Content-Length", "5")], body=b"hello"), b"",
                        req("GET", "/after"), b""])
    add("cl-head-body", [req("HEAD", "/cl", headers=[("Content-Length", "5")], body=b"hello"), b"",
                         req("GET", "/after"), b""], ["HEAD", "GET"])
    add("cl-big", [req("POST", "/cl", headers=[("Content-Length", "300000")], body=b"y" * 300000), b"",
                   req("GET", "/after"), b""], ["POST", "GET"])
    add("post-nobody", [req("POST", "/nb"), b"", req("GET", "/after"), b""], ["POST", "GET"])
    add("post-nobody-10", [req("POST", "/nb", "HTTP/1.0"), b""], ["POST"])
    add("cl-split", [req("POST", "/cl", headers=[("Content-Length", "10")], body=b"hello"), b"<<SLEEP0.2>>",
                     b"world", b""], ["POST"])
    # pipelining
    add("pipe-3", req("GET", "/p1") + req("GET", "/p2") + req("GET", "/p3"), ["GET"] * 3)
    add("pipe-post", req("POST", "/p1", headers=[("Content-Length", "5")], body=b"hello") + req("GET", "/p2"),
        ["POST", "GET"])
    add("pipe-chunk", req("POST", "/p1", headers=[("Transfer-Encoding", "chunked")], body=b"5\r\nhello\r\n0\r\n\r\n") +
        req("GET", "/p2"), ["POST", "GET"])
    add("pipe-head", req("HEAD", "/p1") + req("GET", "/p2"), ["HEAD", "GET"])
    add("pipe-close", req("GET", "/p1", headers=[("Connection", "close")]) + req("GET", "/p2"), ["GET", "GET"])
    add("pipe-10", req("GET", "/p1", "HTTP/1.0") + req("GET", "/p2"), ["GET", "GET"])
    add("pipe-bad2", req("GET", "/p1") + b"BAD\r\n\r\n", ["GET", "GET"])
    add("pipe-20", b"".join(req("GET", "/p%d" % i) for i in range(20)), ["GET"] * 20)
    add("pipe-cl-smuggle", req("POST", "/p1", headers=[("Content-Length", "0")]) + b"GET /p2 HTTP/1.1\r\nHost: a.test\r\n\r\n",
        ["POST", "GET"])
    # bodies on methods that rarely carry one, Expect with the body inline
    for m in ("GET", "HEAD", "DELETE", "OPTIONS"):
        add("body-cl-" + m, [req(m, "/b", headers=[("Content-Length", "5")], body=b"hello"), b"",
                             req("GET", "/after"), b""], [m, "GET"])
        add("body-ch-" + m, [req(m, "/b", headers=[("Transfer-Encoding", "chunked")],
                                 body=b"5\r\nhello\r\n0\r\n\r\n"), b"", req("GET", "/after"), b""], [m, "GET"])
    add("expect-inline", [req("POST", "/e", headers=[("Expect", "100-continue"), ("Content-Length", "5")],
                              body=b"hello"), b"", req("GET", "/after"), b""], ["POST", "GET"])
    add("expect-partial", [req("POST", "/e", headers=[("Expect", "100-continue"), ("Content-Length", "10")],
                               body=b"hello"), b"", b"world", b""], ["POST"])
    add("expect-pipelined", [req("POST", "/e", headers=[("Expect", "100-continue"), ("Content-Length", "0")]) +
                             req("GET", "/p2"), b""], ["POST", "GET"])
    # heads and bodies dribbled a few bytes at a time (TLS record per piece)
    def dribble(data, n=7):
        out = []
        for i in range(0, len(data), n):
            out += [data[i:i + n], b"<<SLEEP0.01>>"]
        return out
    add("dribble-get", dribble(req("GET", "/d", headers=[("X-A", "1")])) + [b""])
    add("dribble-chunked", dribble(req("POST", "/d", headers=[("Transfer-Encoding", "chunked")],
                                       body=b"5;e=1\r\nhello\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")) +
        [b""] + dribble(req("GET", "/after")) + [b""], ["POST", "GET"])
    add("dribble-cl-pipe", dribble(req("POST", "/d", headers=[("Content-Length", "5")], body=b"hello") +
                                   req("GET", "/after"), 3) + [b""], ["POST", "GET"])
    # response-driving requests for canned responses are added in response_corpus
    return C


def response_corpus():
    R = []

    def add(name, raw, close=False, method="GET", extra=None):
        canned(name, raw, close)
        first = req(method, "/r/" + name)
        R.append(("resp-" + name, [first, b"", req("GET", "/after"), b""], [method, "GET"]))
        # the same through an HTTP/1.0 client, plain and keep-alive
        R.append(("resp10-" + name, [req(method, "/r/" + name, "HTTP/1.0"), b""], [method]))
        ka = [("Connection", "keep-alive")]
        R.append(("resp10ka-" + name, [req(method, "/r/" + name, "HTTP/1.0", headers=ka), b"",
                                       req("GET", "/after", "HTTP/1.0", headers=ka), b""], [method, "GET"]))

    add("200-cl", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-chunked", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    add("200-chunked-ext", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0;z\r\n\r\n")
    add("200-chunked-trailer", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
    add("200-chunked-upper", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    add("200-chunked-bws", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5 ;a=b\r\nhello\r\n0\t;z\r\n\r\n")
    add("200-chunked-hex", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n")
    add("200-chunked-zeros", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n005\r\nhello\r\n000\r\n\r\n")
    add("200-chunked-gzip", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    add("200-chunked-bad", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
    add("200-chunked-trunc", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", close=True)
    add("200-chunked-noterm", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", close=True)
    add("200-chunked-lf", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n")
    add("200-te-identity", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: identity\r\n\r\nhello", close=True)
    add("200-te-cl", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    add("200-close-delim", "HTTP/1.1 200 OK\r\nX-Be: 1\r\n\r\nhello close", close=True)
    add("200-close-delim-10", "HTTP/1.0 200 OK\r\nX-Be: 1\r\n\r\nhello 1.0", close=True)
    add("200-10-cl-ka", "HTTP/1.0 200 OK\r\nX-Be: 1\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello")
    add("200-10-cl", "HTTP/1.0 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello", close=True)
    add("200-cl-dup-same", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
    add("200-cl-list-same", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5, 5\r\n\r\nhello")
    add("200-cl-dup-diff", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    add("200-cl-invalid", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: abc\r\n\r\nhello", close=True)
    add("200-cl-neg", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: -1\r\n\r\nhello", close=True)
    add("200-cl-plus", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: +5\r\n\r\nhello")
    add("200-cl-short", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 10\r\n\r\nhello", close=True)
    add("200-cl-long", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 3\r\n\r\nhello")
    add("200-cl-zero", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 0\r\n\r\n")
    add("200-cl-huge", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 99999999999999999999\r\n\r\nhello", close=True)
    add("200-conn-close", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", close=True)
    add("200-conn-close-noclose", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello")
    add("200-conn-tokens", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nConnection: X-Hop, Keep-Alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nX-Keep: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hop-headers", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authenticate: Basic\r\nContent-Length: 5\r\n\r\nhello")
    add("200-upgrade-hdr", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello")
    add("200-many-hdrs", "HTTP/1.1 200 OK\r\nX-Be: 1\r\n" + "".join("X-R%d: %d\r\n" % (i, i) for i in range(90)) + "Content-Length: 5\r\n\r\nhello")
    add("200-big-hdr", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-Big: " + "b" * 3000 + "\r\nContent-Length: 5\r\n\r\nhello")
    add("200-huge-hdr", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-Big: " + "b" * 20000 + "\r\nContent-Length: 5\r\n\r\nhello")
    add("200-dup-hdrs", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-D: 1\r\nX-D: 2\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-space-colon", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A : 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-obs-fold", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A: 1\r\n folded\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-nocolon", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-ctl", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A: a\x01b\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-utf8", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A: \xc3\xbc\r\nContent-Length: 5\r\n\r\nhello")
    add("200-hdr-empty", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nX-A:\r\nContent-Length: 5\r\n\r\nhello")
    add("200-lf-only", "HTTP/1.1 200 OK\nX-Be: 1\nContent-Length: 5\n\nhello")
    add("200-no-reason", "HTTP/1.1 200\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-no-reason-nosp", "HTTP/1.1 200\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-odd-reason", "HTTP/1.1 200 Fine And Dandy\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-http11-lower", "http/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-http12", "HTTP/1.2 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("200-http09", "hello without head", close=True)
    add("200-big-body", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 200000\r\n\r\n" + "q" * 200000)
    add("200-te-dup", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
    add("200-date-server", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nServer: be/1\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 5\r\n\r\nhello")
    for st in (100, 102, 103):
        add("1xx-%d" % st, "HTTP/1.1 %d Info\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello" % st)
    add("1xx-two", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("1xx-100-cl", "HTTP/1.1 100 Continue\r\nContent-Length: 3\r\n\r\nHTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("1xx-only-close", "HTTP/1.1 100 Continue\r\n\r\n", close=True)
    for i, extra in enumerate(["", "early-bytes"]):
        canned("101-ws%d" % i, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" + extra)
        ws = [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
              ("Sec-WebSocket-Version", "13")]
        # after the 101 the backend parses what comes as HTTP: a request
        # sent through the tunnel is answered through it
        R.append(("resp-101-ws%d" % i, [req("GET", "/r/101-ws%d" % i, headers=ws), b"",
                                       req("GET", "/in-tunnel"), b""], ["GET", "GET"]))
        R.append(("resp10-101-ws%d" % i, [req("GET", "/r/101-ws%d" % i, "HTTP/1.0", headers=ws), b""], ["GET"]))
        R.append(("resp-101-ws%d-noupg" % i, [req("GET", "/r/101-ws%d" % i), b"", req("GET", "/after"), b""],
                  ["GET", "GET"]))
    add("101-no-upgrade", "HTTP/1.1 101 Switching Protocols\r\nX-Be: 1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw after 101", close=True)
    for st in (201, 202, 203, 206, 299, 300, 301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 407, 413, 417, 418,
               421, 426, 429, 451, 499, 500, 501, 502, 503, 504, 505, 599):
        add("st-%d" % st, "HTTP/1.1 %d X\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello" % st)
    add("st-600", "HTTP/1.1 600 X\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("st-099", "HTTP/1.1 099 X\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("st-2digit", "HTTP/1.1 20 X\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello")
    add("204-plain", "HTTP/1.1 204 No Content\r\nX-Be: 1\r\n\r\n")
    add("204-cl", "HTTP/1.1 204 No Content\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\n")
    add("204-cl0", "HTTP/1.1 204 No Content\r\nX-Be: 1\r\nContent-Length: 0\r\n\r\n")
    add("204-chunked", "HTTP/1.1 204 No Content\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    add("204-body", "HTTP/1.1 204 No Content\r\nX-Be: 1\r\n\r\nhello")
    add("304-plain", "HTTP/1.1 304 Not Modified\r\nX-Be: 1\r\nETag: \"x\"\r\n\r\n")
    add("304-cl", "HTTP/1.1 304 Not Modified\r\nX-Be: 1\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n")
    add("304-chunked", "HTTP/1.1 304 Not Modified\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n")
    add("head-cl", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\n", method="HEAD")
    add("head-chunked", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n", method="HEAD")
    add("head-nolen", "HTTP/1.1 200 OK\r\nX-Be: 1\r\n\r\n", method="HEAD")
    add("head-body-sent", "HTTP/1.1 200 OK\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\nhello", method="HEAD")
    add("head-404", "HTTP/1.1 404 Nope\r\nX-Be: 1\r\nContent-Length: 5\r\n\r\n", method="HEAD")
    add("post-resp-chunked", "HTTP/1.1 201 Created\r\nX-Be: 1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", method="POST")
    # pipelined pairs of canned responses, HEAD where the name says so
    for a, b in (("200-big-body", "200-chunked"), ("head-chunked", "200-chunked"), ("200-close-delim", "200-cl"),
                 ("204-plain", "304-plain"), ("200-chunked-trailer", "head-cl"), ("head-nolen", "200-cl")):
        ma = "HEAD" if a.startswith("head") else "GET"
        mb = "HEAD" if b.startswith("head") else "GET"
        R.append(("pipe-%s+%s" % (a, b), [req(ma, "/r/" + a) + req(mb, "/r/" + b) + req("GET", "/after"), b""],
                  [ma, mb, "GET"]))
    return R


# ---- classification ----------------------------------------------------------
# Where Hamlyn stands alone (or all three differ) in either view, the case
# is looked up here: class 1 = stricter or different by design (documented
# in hamlyn.8, status and log checked), 2 = Hamlyn wrong (each fixed, with
# a test: the case then agrees), 3 = unclear, decided against RFC 9110/9112
# (see the audit's report).  A difference not listed is "unclassified":
# look at it.  Cases where Hamlyn agrees with nginx or with HAProxy are
# "peer" differences (the other product's behaviour).

KNOWN = [
    (r"^method-(FOO|get|G-T|G_T|G\.T|long)$", 1, "method unknown to http-parser: 501, closed"),
    (r"^method-OPTIONS-star$", 1, "OPTIONS * answered by the proxy"),
    (r"^absform-0[14]$", 1, "absolute-form authority replaces Host (RFC 9112 3.2.2)"),
    (r"^absform-(03|11)$", 1, "authority not a name of the SNI's site: 421"),
    (r"^absform-08$", 1, "absolute-form other than http/https: 400"),
    (r"^host-(05|09|10|14|21|22)$", 1, "Host not a name of the SNI's site: 421"),
    (r"^host-(07|08|16|19|20)$", 1, "invalid Host: 400"),
    (r"^host-10-missing$", 1, "HTTP/1.0 without Host: the upstream HTTP/1.1 request gets the site name"),
    (r"^line-04$", 1, "HTTP/0.9: 505"),
    (r"^(line-0[78]|line-lf-only|hdr-lf-mixed)$", 1, "strict request line / bare LF: 400"),
    (r"^hdr-(08|10)-", 1, "control byte in a header value: 400"),
    (r"^(hdr-(23|24|27|28|38)-.*|conn-0[34])$", 1, "hop-by-hop request header removed"),
    (r"^(hdr-32-.*|expect-0[23])$", 1, "Expect other than 100-continue: 417"),
    (r"^expect-(get|cl0|inline|partial|pipelined)$", 1, "no 100 when no body is awaited (RFC 9110 10.1.1 MAY)"),
    (r"^(hdr-many-.*|hdr-total-24k|hdr-big-.*)$", 1, "100 header fields / max_header_bytes: 431"),
    (r"^upgrade-(01|02|05|10|post)$", 1, "only Upgrade: websocket with Connection: upgrade on HTTP/1.1"),
    (r"^te-0[12]$", 1, "chunked re-framed"),
    (r"^te-0[38]$", 3, "Transfer-Encoding 'gzip, chunked' / 'chunked,': 400"),
    (r"^chunk-(03|12|13|22|24|25|27)$", 1, "invalid chunked framing or over the line/trailer bounds: 400"),
    (r"^chunk-(0[4-7]|26)$", 1, "request trailers dropped"),
    (r"^cl-1[56]$", 1, "body shorter than said: the rest is a bad next request / over max_body_bytes: 413"),
    (r"^(resp(10|10ka)?-200-chunked-trailer|pipe-200-chunked-trailer.*)$", 1, "response trailers dropped"),
    (r"^resp(10|10ka)?-200-(chunked-lf|lf-only)$", 3, "bare LF in a response head or chunk line: 502"),
    (r"^resp(10|10ka)?-200-(te-cl|hdr-ctl)$", 1, "TE with CL / control byte in a response: 502"),
    (r"^resp(10|10ka)?-200-cl-(dup|list)-same$", 3, "repeated identical Content-Length in a response: 502"),
    (r"^resp(10|10ka)?-200-(conn-tokens|hop-headers|upgrade-hdr)$", 1, "hop-by-hop response headers removed"),
    (r"^resp(10|10ka)?-1xx-", 3, "interim 1xx responses dropped"),
    (r"^resp10ka-200-(te-identity|chunked-gzip|chunked-bad|cl-invalid|cl-neg|cl-plus|cl-huge|http11-lower|te-dup)$",
     1, "invalid response: 502, client connection kept"),
    (r"^resp-101-ws[01]$", 1, "Upgrade header re-added last (order only)"),
    (r"^resp10-101-ws[01]$", 1, "HTTP/1.0 Upgrade not forwarded; the 101 is then invalid: 502"),
    (r"^resp(10|10ka)?-st-(600|099|2digit)$", 1, "status outside 100..599: 502"),
]


def classify(name, pc, pb):
    if "H|" not in pc and "H|" not in pb:
        return "peer" if (pc, pb) != ("same", "same") else "same"
    for rx, cls, why in KNOWN:
        if re.search(rx, name):
            return cls
    return "unclassified"


# ---- run -------------------------------------------------------------------

def run_case(px, case):
    name, parts, methods = case
    parts = [p.replace(b"%PORT%", str(px.port).encode()) for p in parts]
    if not methods:
        methods = []
        for p in parts:
            for m in re.findall(rb"(?:^|\r\n\r\n|\n\n)([A-Za-z_.\-]+) \S", p):
                methods.append(m.decode().upper())
    px.be.reset()
    phases = run_client(px.port, parts)
    time.sleep(0.05)
    recs, conns = px.be.take()
    cl = norm_client(phases, methods)
    be = norm_backend(recs, conns)
    raw = b"".join(p[0] for p in phases)
    # the proxies listen on different ports: a Host naming it is the same
    be = json.loads(json.dumps(be).replace(":%d" % px.port, ":%PORT%"))
    return {"client": cl, "backend": be,
            "raw": raw[:600].decode("latin-1") + ("...[%d]" % len(raw) if len(raw) > 600 else "")}


def main():
    ap = argparse.ArgumentParser(description="differential audit: hamlyn vs nginx vs haproxy")
    ap.add_argument("--dir", default="/tmp/diff")
    ap.add_argument("--only", default=None, help="regex on case names")
    ap.add_argument("--show", default="diff", choices=["diff", "all"])
    opt = ap.parse_args()
    os.makedirs(opt.dir, exist_ok=True)
    certs = opt.dir + "/certs"
    subprocess.run(["sh", os.path.join(TOP, "t/certs/mkcerts.sh"), certs], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cases = request_corpus()
    ncreq = len(cases)
    resp = response_corpus()
    cases += resp
    if opt.only:
        cases = [c for c in cases if re.search(opt.only, c[0])]
    pxs = [Proxy(n, opt.dir + "/" + n, certs, Backend()) for n in PROXIES]
    results = {n: {} for n in PROXIES}
    try:
        for p in pxs:
            p.start()

        def worker(p):
            for c in cases:
                results[p.name][c[0]] = run_case(p, c)

        ths = [threading.Thread(target=worker, args=(p,)) for p in pxs]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
    finally:
        for p in pxs:
            p.stop()
    stats = {}
    out = []
    for name, _, _ in cases:
        r = {n: results[n][name] for n in PROXIES}
        for view in ("client", "backend"):
            k = {n: json.dumps(r[n][view], sort_keys=True) for n in PROXIES}
            h, ng, ha = k["hamlyn"], k["nginx"], k["haproxy"]
            if h == ng == ha:
                pat = "same"
            elif ng == ha:
                pat = "H|NA"
            elif h == ng:
                pat = "HN|A"
            elif h == ha:
                pat = "HA|N"
            else:
                pat = "H|N|A"
            stats.setdefault(view, {}).setdefault(pat, 0)
            stats[view][pat] += 1
            r[view + "_pattern"] = pat
        cls = classify(name, r["client_pattern"], r["backend_pattern"])
        stats.setdefault("class", {}).setdefault(str(cls), 0)
        stats["class"][str(cls)] += 1
        if opt.show == "all" or r["client_pattern"] != "same" or r["backend_pattern"] != "same":
            out.append("=== %s  client:%s backend:%s class:%s" % (name, r["client_pattern"],
                                                                r["backend_pattern"], cls))
            for n in PROXIES:
                out.append("  [%s] client %s" % (n, json.dumps(r[n]["client"])))
                out.append("  [%s] backend %s" % (n, json.dumps(r[n]["backend"])))
                out.append("  [%s] raw %r" % (n, r[n]["raw"][:300]))
    with open(opt.dir + "/report.txt", "w") as f:
        f.write("\n".join(out) + "\n")
    with open(opt.dir + "/results.json", "w") as f:
        json.dump(results, f, indent=1)
    print("cases: %d (requests %d, responses %d)" % (len(cases), ncreq, len(resp)))
    for view in stats:
        print(view, json.dumps(stats[view], sort_keys=True))
    print("report:", opt.dir + "/report.txt")


if __name__ == "__main__":
    main()
