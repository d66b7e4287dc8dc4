#!/usr/bin/env python3
"""hm_backend.py: the real backends Hamlyn's integration tests proxy to.

Where it sits: started by t/lib/Hamlyn/Test.pm ($t->backend(...)); Hamlyn
(passthrough or terminate) connects to it.  Python stdlib only.

Modes:
  tls-echo  TLS server.  Per connection it first sends one line
              backend=NAME sni=SNI|- client=CN|- proxy=SRC|-\\n
            then echoes every byte back until EOF, then half-closes.
  sink      TLS server.  Sends --send-bytes N deterministic bytes first
            (hm_pattern), then reads until EOF (TLS close_notify or a TCP
            FIN) and replies "sha256=HEX bytes=N\\n", then closes.
  http      plaintext HTTP/1.1 keep-alive server (see Http below).
  https     the same over TLS.
  hostile   plaintext HTTP/1.1 server that misbehaves on purpose: the first
            path segment of each request names a case of HOSTILE below
            (bytes to send, then what to do with the connection); "ok"
            answers JSON {"conn_requests": N, "backend": NAME}.
  hostile-tls  the same over TLS.

Options: --port N (0 = pick; "PORT n" is printed on stdout once listening),
--host, --certs DIR, --cert NAME (NAME.pem/NAME.key in DIR; default
backend.test), --client-ca FILE (require a client certificate),
--proxy-protocol (accept an optional PROXY v1/v2 header first),
--send-bytes N, --name NAME, --log FILE (HTTP request lines, one per line).
"""

import argparse
import hashlib
import json
import os
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import urllib.parse

PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
LOG_LOCK = threading.Lock()


def hm_pattern(n, seed=b"hamlyn"):
    """Deterministic pseudo-random bytes: sha256 counter stream (same in
    Test.pm's pattern() and hm_client.py)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(8, "big")).digest() * 64
        i += 1
    return bytes(out[:n])


def pattern_chunks(n):
    """Yield hm_pattern(n) in 2 KiB pieces without holding it all."""
    i = 0
    sent = 0
    while sent < n:
        d = hashlib.sha256(b"hamlyn" + i.to_bytes(8, "big")).digest() * 64
        i += 1
        take = min(len(d), n - sent)
        yield d[:take]
        sent += take


def recv_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.time()))
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("EOF inside PROXY header")
        buf += chunk
    return buf


def read_proxy_header(sock):
    """Parse an optional PROXY v1/v2 header without reading past it.
    Returns "src_ip:port", "local", "unknown" or None (no header)."""
    deadline = time.time() + 5
    head = b""
    while len(head) < 12 and time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        head = sock.recv(12, socket.MSG_PEEK)
        if not head:
            return None
        if not (PP2_SIG.startswith(head[:12]) or b"PROXY "[:len(head)] == head[:6]):
            return None
        if head.startswith(b"PROXY ") or len(head) >= 12:
            break
        time.sleep(0.01)
    if head.startswith(b"PROXY "):
        line = b""
        while not line.endswith(b"\r\n"):
            if len(line) > 107:
                raise ValueError("PROXY v1 line too long")
            line += recv_exact(sock, 1, deadline)
        parts = line.decode("ascii").split()
        if parts[1] == "UNKNOWN":
            return "unknown"
        src = parts[2]
        if parts[1] == "TCP6":
            return "[%s]:%s" % (src, parts[4])
        return "%s:%s" % (src, parts[4])
    if head[:12] == PP2_SIG:
        hdr = recv_exact(sock, 16, deadline)
        ver_cmd, fam, length = hdr[12], hdr[13], struct.unpack("!H", hdr[14:16])[0]
        body = recv_exact(sock, length, deadline) if length else b""
        if ver_cmd >> 4 != 2:
            raise ValueError("bad PROXY v2 version")
        if ver_cmd & 0xF == 0:
            return "local"
        if fam >> 4 == 1 and len(body) >= 12:
            src = socket.inet_ntop(socket.AF_INET, body[0:4])
            return "%s:%d" % (src, struct.unpack("!H", body[8:10])[0])
        if fam >> 4 == 2 and len(body) >= 36:
            src = socket.inet_ntop(socket.AF_INET6, body[0:16])
            return "[%s]:%d" % (src, struct.unpack("!H", body[32:34])[0])
        return "unknown"
    return None


def peer_cn(ssock):
    try:
        cert = ssock.getpeercert()
    except Exception:
        return None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def _hostile_cases():
    ok2 = b"Content-Length: 2\r\n\r\nok"
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    return {
        # invalid heads: 502, nothing forwarded (SMUGGLED never shows),
        # the connection is kept open so that a reuse would be seen
        "badstatus": (b"HTTP/1.1 2x0 OK\r\n" + ok2, "keep"),
        "status704": (b"HTTP/1.1 704 SMUGGLED\r\n" + ok2, "keep"),
        "nul": (b"HTTP/1.1 200 OK\r\nX-A: a\x00SMUGGLED\r\n" + ok2, "keep"),
        "barecr": (b"HTTP/1.1 200 OK\r\nX-A: a\rSMUGGLED: 1\r\n" + ok2, "keep"),
        "fold": (b"HTTP/1.1 200 OK\r\nX-A: a\r\n SMUGGLED\r\n" + ok2, "keep"),
        "badname": (b"HTTP/1.1 200 OK\r\nSMUGGLED X: a\r\n" + ok2, "keep"),
        "clte": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
                 "keep"),
        "twocl": (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nContent-Length: 2\r\n"
                  b"\r\nSMUGGLED", "keep"),
        "badchunk": (chunked + b"8x\r\nSMUGGLED\r\n0\r\n\r\n", "keep"),
        "bighead": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 40000 + b"\r\n" + ok2,
                    "keep"),
        "manyhdrs": (b"HTTP/1.1 200 OK\r\n" + many + ok2, "keep"),
        # a valid head of 12 KB (under the 16 KiB bound on response heads)
        "head12k": (b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * 12000 + b"\r\n" + ok2,
                    "keep"),
        # truncated bodies
        "midcl": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten..",
                  "close"),
        "midchunk": (chunked + b"5\r\nhello\r\n", "close"),
        # a body delimited by the close: with (notify) and without
        # (close, over TLS a truncation) a TLS close_notify
        "eof": (b"HTTP/1.1 200 OK\r\n\r\nbody until close", "notify"),
        "trunc": (b"HTTP/1.1 200 OK\r\n\r\nbody until close", "close"),
        # framing violations after a complete response
        "junk": (b"HTTP/1.1 200 OK\r\n" + ok2
                 + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED", "keep"),
        "body204": (b"HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\nSMUGGLED",
                    "keep"),
        # a complete response, then the server closes at once: the next
        # request may still find the connection in the pool (its FIN not
        # yet seen) and fail on it
        "close204": (b"HTTP/1.1 204 No Content\r\n\r\n", "close"),
        # reads the request, closes without a byte of response
        "closenow": (b"", "close"),
        # an interim response, then the close: the request was acted on
        "interimclose": (b"HTTP/1.1 100 Continue\r\n\r\n", "close"),
        # a head dripped a byte at a time, or behind a stream of interim
        # responses ("paced": one piece every 50 ms, about 3 s in all)
        "drip": ([bytes([c]) for c in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * 20
                  + b"\r\n" + ok2], "paced"),
        "flood1xx": ([b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"] * 60
                     + [b"HTTP/1.1 200 OK\r\n" + ok2], "paced"),
        # interim responses before the final one, for health checks: in
        # one piece, and cut inside the interim head ("paced")
        "hint200": (b"HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n" + ok2,
                    "keep"),
        "hintcut": ([b"HTTP/1.1 103 Early Hints\r\nLi", b"nk: </a>\r\n\r",
                     b"\nHTTP/1.1 204 No Content\r\n\r\n"], "paced"),
        "hint503": (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                    b"HTTP/1.1 503 Unavailable\r\n" + ok2, "keep"),
    }


HOSTILE = _hostile_cases()


class Handler(socketserver.BaseRequestHandler):
    def setup(self):
        self.opt = self.server.opt
        self.proxy_src = None
        self.sni = None
        self.sock = self.request

    def handle(self):
        opt = self.opt
        try:
            if opt.proxy_protocol:
                self.proxy_src = read_proxy_header(self.sock)
            self.sock.settimeout(60)
            if opt.mode not in ("http", "hostile"):
                ctx = self.server.ssl_ctx
                self.sock = ctx.wrap_socket(self.sock, server_side=True,
                                            do_handshake_on_connect=False)
                self.sock.do_handshake()
                self.sni = getattr(self.sock, "hm_sni", None)
            getattr(self, "mode_" + opt.mode.replace("-", "_"))()
        except (ssl.SSLError, OSError, ValueError, ConnectionError) as e:
            sys.stderr.write("hm_backend: %s: %s\n" % (type(e).__name__, e))
        finally:
            try:
                self.sock.close()
            except OSError:
                pass

    def half_close(self):
        s = self.sock
        if isinstance(s, ssl.SSLSocket):
            try:
                s.settimeout(2)
                s = s.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
        try:
            socket.socket.shutdown(s, socket.SHUT_WR)
        except OSError:
            pass
        try:
            s.settimeout(2)
            while s.recv(65536):
                pass
        except (OSError, ValueError):
            pass

    def mode_tls_echo(self):
        line = "backend=%s sni=%s client=%s proxy=%s\n" % (
            self.opt.name, self.sni or "-", peer_cn(self.sock) or "-",
            self.proxy_src or "-")
        self.sock.sendall(line.encode())
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            self.sock.sendall(data)
        self.half_close()

    def mode_sink(self):
        if self.opt.send_bytes:
            for piece in pattern_chunks(self.opt.send_bytes):
                self.sock.sendall(piece)
        h = hashlib.sha256()
        n = 0
        while True:
            data = self.sock.recv(65536)
            if not data:
                break
            h.update(data)
            n += len(data)
        self.sock.sendall(("sha256=%s bytes=%d\n" % (h.hexdigest(), n)).encode())
        self.half_close()

    def mode_https(self):
        self.mode_http()

    # ---- hostile HTTP/1.1 (see HOSTILE) ----
    def mode_hostile(self):
        buf = b""
        count = 0
        while True:
            while b"\r\n\r\n" not in buf:
                d = self.sock.recv(65536)
                if not d:
                    return
                buf += d
            end = buf.index(b"\r\n\r\n") + 4
            head, buf = buf[:end], buf[end:]
            count += 1
            clen = 0
            for h in head.split(b"\r\n")[1:]:
                if h.lower().startswith(b"content-length:"):
                    clen = int(h.split(b":", 1)[1])
            while len(buf) < clen:
                d = self.sock.recv(65536)
                if not d:
                    return
                buf += d
            buf = buf[clen:]
            line = head.split(b"\r\n", 1)[0]
            with LOG_LOCK:
                if self.opt.log:
                    with open(self.opt.log, "ab") as f:
                        f.write(line + b"\n")
            case = line.split(b" ")[1].decode("latin-1").strip("/").split("/")[0]
            if case not in HOSTILE:
                j = json.dumps({"conn_requests": count,
                                "backend": self.opt.name}).encode()
                self.sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
                                  b"\r\n%s" % (len(j), j))
                continue
            data, then = HOSTILE[case]
            if then == "paced":
                for piece in data:
                    self.sock.sendall(piece)
                    time.sleep(0.05)
                continue
            self.sock.sendall(data)
            if then == "notify":
                self.half_close()
                return
            if then == "close":
                if isinstance(self.sock, ssl.SSLSocket):
                    # a TCP FIN without TLS close_notify
                    socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
                return

    def mode_hostile_tls(self):
        self.mode_hostile()

    # ---- HTTP/1.1 ----
    def mode_http(self):
        rf = self.rfile = self.sock.makefile("rb")
        count = 0
        while True:
            line = rf.readline(65537)
            if not line:
                return
            if line in (b"\r\n", b"\n") and count == 0:
                continue
            count += 1
            if getattr(self, "drop_next", False):
                # /drop-next (added by the http work): this connection's
                # next request is dropped unanswered, as a server closing a
                # keep-alive connection just as it is reused.
                return
            with LOG_LOCK:
                if self.opt.log:
                    with open(self.opt.log, "ab") as f:
                        f.write(line.rstrip(b"\r\n") + b"\n")
            try:
                method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            except ValueError:
                self.send(400, b"bad request line\n", close=True)
                return
            headers = []
            total = 0
            while True:
                h = rf.readline(65537)
                total += len(h)
                if not h or total > 65536:
                    self.send(431 if h else 400, b"bad headers\n", close=True)
                    return
                if h in (b"\r\n", b"\n"):
                    break
                name, _, value = h.decode("latin-1").rstrip("\r\n").partition(":")
                headers.append([name, value.strip(" \t")])
            hl = {}
            for n_, v in headers:
                hl.setdefault(n_.lower(), []).append(v)
            body = b""
            if "100-continue" in ",".join(hl.get("expect", [])).lower():
                self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            te = ",".join(hl.get("transfer-encoding", [])).lower()
            if "chunked" in te:
                while True:
                    sz = rf.readline(1024)
                    if not sz:
                        return
                    size = int(sz.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while True:  # trailers
                            t = rf.readline(65537)
                            if t in (b"\r\n", b"\n", b""):
                                break
                        break
                    body += rf.read(size)
                    rf.readline(3)
            elif "content-length" in hl:
                n = int(hl["content-length"][0])
                body = rf.read(n)
            keep = version.upper() == "HTTP/1.1"
            conn_tokens = ",".join(hl.get("connection", [])).lower()
            if "close" in conn_tokens:
                keep = False
            elif "keep-alive" in conn_tokens:
                keep = True
            if not self.respond(method, target, version, headers, body, count, keep):
                return
            if not keep:
                return

    def send(self, status, body, ctype="text/plain", close=False, extra=(),
             chunked=False, head=False):
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                  431: "Request Header Fields Too Large"}.get(status, "Status")
        h = ["HTTP/1.1 %d %s" % (status, reason), "Content-Type: " + ctype,
             "Server: hm_backend"]
        h += list(extra)
        if chunked:
            h.append("Transfer-Encoding: chunked")
        else:
            h.append("Content-Length: %d" % len(body))
        if close:
            h.append("Connection: close")
        out = ("\r\n".join(h) + "\r\n\r\n").encode("latin-1")
        if head:
            self.sock.sendall(out)
            return
        if chunked:
            self.sock.sendall(out)
            step = max(1, len(body) // 3)
            for i in range(0, len(body), step):
                part = body[i:i + step]
                self.sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
            self.sock.sendall(b"0\r\n\r\n")
        else:
            self.sock.sendall(out + body)

    def respond(self, method, target, version, headers, body, count, keep):
        u = urllib.parse.urlsplit(target)
        q = urllib.parse.parse_qs(u.query)
        path = u.path
        info = {
            "method": method, "path": target, "version": version,
            "headers": headers,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "body_len": len(body), "conn_requests": count,
            "backend": self.opt.name,
            "sni": self.sni, "client_cert": peer_cn(self.sock) if self.opt.mode == "https" else None,
            "proxy": self.proxy_src,
            # added by the tls work: was this TLS connection resumed?
            "tls_resumed": self.sock.session_reused if self.opt.mode == "https" else None,
        }
        j = (json.dumps(info) + "\n").encode()
        head = method.upper() == "HEAD"
        close = not keep
        parts = path.split("/")
        if path.startswith("/status/") and len(parts) > 2 and parts[2].isdigit():
            st = int(parts[2])
            self.send(st, b"" if st in (204, 304) else j, "application/json",
                      close=close, head=head)
        elif path.startswith("/bytes/") and len(parts) > 2 and parts[2].isdigit():
            n = int(parts[2])
            data = b"".join(pattern_chunks(n))
            self.send(200, data, "application/octet-stream", close=close, head=head)
        elif path == "/chunked":
            self.send(200, j, "application/json", close=close, chunked=True, head=head)
        elif path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000.0)
            self.send(200, j, "application/json", close=close, head=head)
        elif path == "/close":
            self.send(200, j, "application/json", close=True, head=head)
            return False
        elif path == "/drop-next":
            self.drop_next = True
            self.send(200, j, "application/json", close=close, head=head)
        elif path == "/echo":
            self.send(200, body, "application/octet-stream", close=close, head=head)
        elif path == "/ws" and any(n.lower() == "upgrade" for n, _ in headers):
            # Upgrade echo (added by the http work): 101, then every byte
            # back until EOF; the first line says what the backend saw.
            proto = [v for n, v in headers if n.lower() == "upgrade"][0]
            self.sock.sendall(("HTTP/1.1 101 Switching Protocols\r\n"
                               "Upgrade: %s\r\nConnection: Upgrade\r\n\r\n"
                               % proto).encode("latin-1"))
            self.sock.sendall(b"ws-backend=" + self.opt.name.encode() + b"\n")
            rf = self.rfile
            while True:
                d = rf.read1(65536)
                if not d:
                    break
                self.sock.sendall(d)
            return False
        else:
            self.send(200, j, "application/json", close=close, head=head)
        return True


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Server6(Server):
    address_family = socket.AF_INET6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", required=True, choices=["tls-echo", "sink", "http", "https",
                                          "hostile", "hostile-tls"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--certs", default=os.path.join(os.path.dirname(__file__), "..", "tmp", "certs"))
    ap.add_argument("--cert", default="backend.test")
    ap.add_argument("--client-ca")
    ap.add_argument("--proxy-protocol", action="store_true")
    ap.add_argument("--send-bytes", type=int, default=0)
    ap.add_argument("--name")
    ap.add_argument("--log")
    opt = ap.parse_args()
    if not opt.name:
        opt.name = opt.cert
    cls = Server6 if ":" in opt.host else Server
    srv = cls((opt.host, opt.port), Handler)
    srv.opt = opt
    if opt.mode not in ("http", "hostile"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert = opt.cert if "/" in opt.cert else os.path.join(opt.certs, opt.cert)
        ctx.load_cert_chain(cert + ".pem", cert + ".key")
        ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
        if opt.client_ca:
            ca = opt.client_ca if "/" in opt.client_ca else os.path.join(opt.certs, opt.client_ca)
            ctx.load_verify_locations(ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        if opt.mode in ("https", "hostile-tls"):
            ctx.set_alpn_protocols(["http/1.1"])
        def sni_cb(sslsock, name, _ctx):
            sslsock.hm_sni = name
        ctx.sni_callback = sni_cb
        srv.ssl_ctx = ctx
    sys.stdout.write("PORT %d\n" % srv.server_address[1])
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    srv.serve_forever()


if __name__ == "__main__":
    main()
