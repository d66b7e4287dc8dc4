#!/usr/bin/env python3
"""chaos.py: a seeded, bounded hostile-network campaign against a hamlyn binary.

Where it sits: outside the product, next to the integration tests.  It starts
the given hamlyn binary (meant for build/asan/hamlyn, the ASan+UBSan build of
`make check-asan-integration`, but any build works) with a configuration of
its own, its own backends, and then throws many concurrent mutated exchanges
at every kind of listener over real loopback sockets while a few "canary"
clients keep doing correct requests and check the answers byte for byte.

Usage:
    make build/asan/hamlyn
    nice -n 19 python3 t/chaos/chaos.py --seed 1 --minutes 10 build/asan/hamlyn
    python3 t/chaos/chaos.py --seed 1 --case 1234 build/asan/hamlyn   # replay one
Options: --seed N (default 1), --minutes M (storm length, default 1; or
--seconds S), --clients N (concurrent storm clients, default 16), --workers N
(hamlyn workers, default 2), --latency S (canary bound, default 10),
--fd-slack N (default 2), --certs DIR (reuse a t/certs/mkcerts.sh folder),
--dir D (scratch folder, default a new one under /tmp; kept when something
failed), --case K (replay storm connection K of --seed alone; repeatable),
--serve S (start everything, write the ports to D/ports.json, wait S
seconds: for hand-made reproducers), --quiet.
Exit status 0 when every oracle held, 1 otherwise (the failures are printed,
with the case numbers of the storm connections that were open around them).

What hamlyn gets (one configuration, all on 127.0.0.1, ports 20000+random):
  main listener ("pub"), default site a.test:
    backend.test  passthrough -> TLS echo backend
    a.test        terminate (a.test cert) -> plaintext HTTP echo backend;
                  route /fixed -> fixed 418 "fixed\\n"
    b.test        terminate -> TLS (re-encrypted) HTTP echo backend
    h.wild.test   terminate -> hostile plaintext backend (below)
    t.wild.test   terminate -> the same hostile backend over TLS
  "pp" listener: proxy_protocol true, sites a.test and backend.test
  (canaries: a.test with a PROXY v1 header, whose address must show in
  X-Forwarded-For, and backend.test with a v2 header)
  "redir" listener: redirect_to_https
  admin listener
Backends (in a forked child process, threads): HTTP echo (plain and TLS):
the answer body is "METHOD TARGET len=N sha=SHA256(body) xff=X-Forwarded-For\\n",
followed by N pattern bytes for /bytes/N, chunked when the target has
"chunked"; "Upgrade: websocket" gets a 101 and a raw echo.  Hostile: for
target /h/K it takes a valid response and mutates it with random.Random(K)
(bit flips, truncation, wrong chunk sizes, huge lengths, CR/LF/NUL insertion,
byte dribbling, resets, close mid-body, no answer).

Storm connection K of seed S uses random.Random("S:K") for everything it
chooses: the target (listener, site), the valid exchange (ClientHello, TLS
records, HTTP requests with bodies, chunked, pipelined, Expect:
100-continue, Upgrade, PROXY v1/v2 headers, redirect and admin requests),
the mutations (bit flips, truncation, duplication, deletion, insertion of
CR/LF/NUL/space, huge or negative lengths; in the plaintext inside TLS or in
the raw TLS records), how it is written (random write sizes and delays) and
how it ends (read to EOF, slow reads, half-close, reset, plain close at a
random point).  Timing makes the proxy's answers vary, not what is sent.

Oracles (all checked, each failure printed):
  - no sanitizer report (ASAN/UBSAN log_path files, stderr, error log);
  - no worker death (the master's "worker ... restarting" lines, and the
    worker pids at the end are the ones at the start);
  - every canary answer correct (status, body byte-exact, XFF) and within
    --latency seconds (default 10: a loaded 2-core machine and ASan);
  - no descriptor growth: the workers' open sockets (/proc/PID/fd) after
    the storm (once timeouts and the 1 s upstream pool idle timeout have
    passed) are back to the counts before it, plus --fd-slack (default 2);
    splice pipes, which each worker keeps on a free list of up to 256, are
    only checked against that bound;
  - the proxy still serves every kind of site at the end;
  - /metrics: hamlyn_connections_active back to 0 after the storm,
    hamlyn_worker_restarts_total 0;
  - every access-log line is valid JSON.
Every loop has a count and a time bound; every socket a timeout.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PP2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pattern(n):
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"chaos" + i.to_bytes(8, "big")).digest() * 32
        i += 1
    return bytes(out[:n])


PAT = pattern(1 << 20)


def free_port(rng_ports, used):
    for _ in range(200):
        p = 20000 + rng_ports.randrange(30000)
        if p in used:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            s.close()
            continue
        s.close()
        used.add(p)
        return p
    raise RuntimeError("no free port")


# ---------------------------------------------------------------- backends

def read_head(f, limit=65536):
    """Reads a request head from file f: (line, [(name, value)]) or None."""
    line = f.readline(limit)
    while line in (b"\r\n", b"\n"):
        line = f.readline(limit)
    if not line:
        return None
    hdrs = []
    total = 0
    while True:
        h = f.readline(limit)
        total += len(h)
        if not h or total > limit:
            return None
        if h in (b"\r\n", b"\n"):
            break
        n, _, v = h.decode("latin-1").rstrip("\r\n").partition(":")
        hdrs.append((n.strip().lower(), v.strip()))
    return line.decode("latin-1").rstrip("\r\n"), hdrs


def read_body(f, hd):
    te = ",".join(v for n, v in hd if n == "transfer-encoding").lower()
    if "chunked" in te:
        body = b""
        for _ in range(100000):
            sz = f.readline(1024)
            if not sz:
                return None
            size = int(sz.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                for _ in range(1000):
                    t = f.readline(65536)
                    if t in (b"\r\n", b"\n", b""):
                        break
                return body
            body += f.read(size)
            f.readline(3)
        return None
    cl = [v for n, v in hd if n == "content-length"]
    if cl:
        return f.read(int(cl[0]))
    return b""


def echo_answer(method, target, body, xff):
    """The echo backend's answer body (also the canary's expectation)."""
    out = ("%s %s len=%d sha=%s xff=%s\n" % (
        method, target, len(body), hashlib.sha256(body).hexdigest(), xff)).encode()
    m = re.match(r"/bytes/(\d+)", target)
    if m:
        out += PAT[:min(int(m.group(1)), len(PAT))]
    return out


def serve_echo(sock):
    f = sock.makefile("rb")
    for _ in range(1000):
        r = read_head(f)
        if r is None:
            return
        line, hd = r
        parts = line.split(" ")
        if len(parts) != 3:
            sock.sendall(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        method, target, version = parts
        hv = lambda n: ",".join(v for k, v in hd if k == n)
        if "100-continue" in hv("expect").lower():
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = read_body(f, hd)
        if body is None:
            return
        if hv("upgrade").lower() == "websocket":
            sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\n\r\n")
            for _ in range(10000):
                d = f.read1(65536)
                if not d:
                    return
                sock.sendall(d)
            return
        payload = echo_answer(method, target, body, hv("x-forwarded-for"))
        keep = version == "HTTP/1.1" and "close" not in hv("connection").lower()
        h = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        if not keep:
            h += b"Connection: close\r\n"
        if "chunked" in target:
            sock.sendall(h + b"Transfer-Encoding: chunked\r\n\r\n")
            if method != "HEAD":
                step = max(1, len(payload) // 3)
                for i in range(0, len(payload), step):
                    part = payload[i:i + step]
                    sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
        else:
            sock.sendall(h + b"Content-Length: %d\r\n\r\n" % len(payload)
                         + (b"" if method == "HEAD" else payload))
        if not keep:
            return


def hostile_answer(k):
    """The hostile backend's script for /h/K: a list of (bytes, delay) and
    the ending ("keep", "close", "reset")."""
    r = random.Random("hostile:%d" % k)
    body = PAT[:r.choice([0, 1, 10, 100, 5000, 70000])]
    if r.random() < 0.5:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        resp = head + body
    else:
        out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        i = 0
        while i < len(body):
            n = r.randint(1, 9000)
            out += b"%x\r\n" % len(body[i:i + n]) + body[i:i + n] + b"\r\n"
            i += n
        resp = out + b"0\r\n\r\n"
    if r.random() < 0.2:
        resp = b"HTTP/1.1 100 Continue\r\n\r\n" * r.randint(1, 5) + resp
    resp = mutate(r, resp, http=True)
    pieces = split_writes(r, resp)
    ending = r.choice(["keep", "close", "reset", "close", "keep"])
    return pieces, ending


def serve_hostile(sock):
    f = sock.makefile("rb")
    for _ in range(100):
        r = read_head(f)
        if r is None:
            return
        line, hd = r
        if read_body(f, hd) is None:
            return
        m = re.search(r"/h/(\d+)", line)
        k = int(m.group(1)) if m else 0
        pieces, ending = hostile_answer(k)
        for data, delay in pieces:
            if delay:
                time.sleep(delay)
            sock.sendall(data)
        if ending == "reset":
            reset(sock)
            return
        if ending == "close":
            return


def serve_raw_echo(sock):
    for _ in range(100000):
        d = sock.recv(65536)
        if not d:
            return
        sock.sendall(d)


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def backend_loop(lsock, handler, tls_ctx):
    def one(c):
        try:
            c.settimeout(30)
            if tls_ctx is not None:
                c = tls_ctx.wrap_socket(c, server_side=True)
            handler(c)
        except Exception:
            pass
        finally:
            try:
                c.close()
            except Exception:
                pass
    while True:
        try:
            c, _ = lsock.accept()
        except OSError:
            continue
        threading.Thread(target=one, args=(c,), daemon=True).start()


def start_backends(ports, certs):
    """Binds the backends' sockets, forks the child serving them; returns its pid."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(os.path.join(certs, "backend.test.pem"),
                        os.path.join(certs, "backend.test.key"))
    specs = [("echo", serve_echo, None), ("echo_tls", serve_echo, tls),
             ("raw_tls", serve_raw_echo, tls), ("hostile", serve_hostile, None),
             ("hostile_tls", serve_hostile, tls)]
    socks = []
    for name, h, ctx in specs:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", ports[name]))
        s.listen(512)
        socks.append((s, h, ctx))
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        for s, h, ctx in socks:
            threading.Thread(target=backend_loop, args=(s, h, ctx), daemon=True).start()
        # bounded: the parent kills us; in any case stop after a day
        time.sleep(86400)
        os._exit(0)
    for s, _, _ in socks:
        s.close()
    return pid


# ---------------------------------------------------------------- mutations

INSERTS = [b"\r", b"\n", b"\0", b"\r\n", b" ", b"\t", b":", b"\r\n\r\n", b"\xff",
           b"0", b";", b",", b"\x16\x03\x01"]
HUGE = [b"99999999999999999999", b"-1", b"ffffffffffffffff", b"4294967296", b"0",
        b"18446744073709551616", b" 1", b"1 1", b"+5", b"0x10", b"2147483648"]


MUTATIONS = [0]     # mutations applied in this process (the storm's, not the backends')


def mutate(r, data, http=False, count=None):
    """Returns data with 0..3 random mutations (count forces their number)."""
    n = count if count is not None else r.choice([0, 1, 1, 1, 2, 3])
    MUTATIONS[0] += n
    b = bytearray(data)
    for _ in range(n):
        op = r.randrange(8 if http else 6)
        if not b:
            b += bytes([r.randrange(256)])
            continue
        i = r.randrange(len(b))
        if op == 0:                      # bit flips
            for _ in range(r.randint(1, 4)):
                j = r.randrange(len(b))
                b[j] ^= 1 << r.randrange(8)
        elif op == 1:                    # truncation
            del b[i:]
        elif op == 2:                    # duplication of a slice
            j = min(len(b), i + r.randint(1, 64))
            b[i:i] = b[i:j] * r.randint(1, 3)
        elif op == 3:                    # deletion
            del b[i:i + r.randint(1, 16)]
        elif op == 4:                    # insertion
            b[i:i] = r.choice(INSERTS)
        elif op == 5:                    # random byte overwrite
            b[i] = r.randrange(256)
        else:                            # huge lengths / number swaps (HTTP)
            nums = [m.span() for m in re.finditer(rb"[0-9a-fA-F]+", bytes(b))]
            if nums:
                s, e = r.choice(nums)
                b[s:e] = r.choice(HUGE)
    return bytes(b)


def split_writes(r, data):
    """Cuts data into random write sizes with occasional small delays."""
    out = []
    i = 0
    mode = r.choice(["whole", "small", "random", "random"])
    for _ in range(4000):
        if i >= len(data):
            break
        if mode == "whole":
            n = len(data)
        elif mode == "small":
            n = r.randint(1, 3)
        else:
            n = r.randint(1, 2048)
        delay = r.choice([0, 0, 0, 0, 0.001, 0.01, 0.05]) if mode != "whole" else 0
        out.append((data[i:i + n], delay))
        i += n
    if i < len(data):
        out.append((data[i:], 0))
    return out


# ---------------------------------------------------------------- exchanges

def client_hello(sni, alpn=None, rng=None):
    """A real ClientHello (Python's ssl), the SSLObject and its BIOs."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if rng is not None and rng.random() < 0.3:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return obj, inc, out


def http_request(r, host, kind=None, path_base="/echo"):
    """One valid HTTP/1.1 request (bytes)."""
    kind = kind or r.choice(["get", "post", "chunked", "expect", "head", "h10",
                             "bytes", "absolute", "manyhdr", "ws"])
    q = "/%d" % r.randrange(1 << 30)
    target = path_base + q
    host_h = b"Host: " + host.encode() + b"\r\n"
    if kind == "get":
        return b"GET " + target.encode() + b" HTTP/1.1\r\n" + host_h + b"\r\n"
    if kind == "head":
        return b"HEAD " + target.encode() + b" HTTP/1.1\r\n" + host_h + b"\r\n"
    if kind == "h10":
        return b"GET " + target.encode() + b" HTTP/1.0\r\n" + host_h + \
            b"Connection: keep-alive\r\n\r\n"
    if kind == "bytes":
        n = r.choice([1000, 65536, 300000])
        return b"GET /bytes/%d%s HTTP/1.1\r\n" % (n, b"/chunked" if r.random() < .5 else b"") + \
            host_h + b"\r\n"
    if kind == "absolute":
        return b"GET https://" + host.encode() + target.encode() + b" HTTP/1.1\r\n" + host_h + b"\r\n"
    if kind == "manyhdr":
        return b"GET " + target.encode() + b" HTTP/1.1\r\n" + host_h + \
            b"".join(b"X-H%d: %s\r\n" % (i, b"v" * r.randint(0, 200)) for i in range(r.randint(1, 80))) + b"\r\n"
    if kind == "ws":
        return b"GET /ws HTTP/1.1\r\n" + host_h + b"Upgrade: websocket\r\nConnection: Upgrade\r\n" \
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" + \
            PAT[:r.randint(0, 3000)]
    body = PAT[:r.choice([0, 1, 100, 5000, 70000])]
    if kind == "post":
        return b"POST " + target.encode() + b" HTTP/1.1\r\n" + host_h + \
            b"Content-Length: %d\r\n\r\n" % len(body) + body
    if kind == "expect":
        return b"PUT " + target.encode() + b" HTTP/1.1\r\n" + host_h + \
            b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    # chunked
    out = b"POST " + target.encode() + b" HTTP/1.1\r\n" + host_h + b"Transfer-Encoding: chunked\r\n\r\n"
    i = 0
    for _ in range(1000):
        if i >= len(body):
            break
        n = r.randint(1, 20000)
        ext = b";x=y" if r.random() < 0.1 else b""
        out += b"%x%s\r\n" % (len(body[i:i + n]), ext) + body[i:i + n] + b"\r\n"
        i += n
    out += b"0\r\n"
    if r.random() < 0.2:
        out += b"X-Trailer: t\r\n"
    return out + b"\r\n"


def http_requests(r, host, path_base="/echo"):
    n = r.choice([1, 1, 1, 2, 3, 5])
    return b"".join(http_request(r, host, path_base=path_base) for _ in range(n))


def proxy_v1(r):
    if r.random() < 0.5:
        return b"PROXY TCP4 10.%d.%d.%d 127.0.0.1 %d 443\r\n" % (
            r.randrange(256), r.randrange(256), r.randrange(256), r.randrange(1, 65536))
    return b"PROXY TCP6 2001:db8::%x ::1 %d 443\r\n" % (r.randrange(65536), r.randrange(1, 65536))


def proxy_v2(r, tlvs=True):
    """A PROXY v2 header (TCP4 or TCP6, PROXY or, 1 in 10, LOCAL); with
    tlvs, 0..3 TLVs of random types and contents."""
    tlv = b""
    for _ in range(r.choice([0, 0, 1, 3]) if tlvs else 0):
        v = bytes(r.randrange(256) for _ in range(r.randint(0, 40)))
        tlv += bytes([r.randrange(256)]) + struct.pack(">H", len(v)) + v
    if r.random() < 0.7:
        addr = socket.inet_aton("10.1.2.%d" % r.randrange(256)) + socket.inet_aton("127.0.0.1") + \
            struct.pack(">HH", r.randrange(1, 65536), 443)
        fam = 0x11
    else:
        addr = socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "::1") + \
            struct.pack(">HH", r.randrange(1, 65536), 443)
        fam = 0x21
    cmd = 0x21 if r.random() < 0.9 else 0x20
    return PP2_SIG + bytes([cmd, fam]) + struct.pack(">H", len(addr) + len(tlv)) + addr + tlv


class Failures(list):
    """The failures seen; each is also printed when it happens."""

    def append(self, what):
        print("chaos: %s FAIL %s" % (time.strftime("%H:%M:%S"), what), flush=True)
        list.append(self, what)


class Env:
    """Ports, names and the live process of one campaign."""
    pass


class Conn:
    """One storm connection: a raw socket with optional TLS (SSLObject over
    memory BIOs, so that the raw records can be mutated too)."""

    def __init__(self, env, r, port, deadline, log):
        self.r = r
        self.deadline = deadline
        self.log = log
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        self.tls = None
        self.got = 0
        # a read gives up after this much silence (some cases wait for
        # the proxy's own timeouts, most move on)
        self.idle = r.choice([0.3, 0.5, 1.0, 1.0, 3.0])

    def tmo(self, cap=2.0):
        return max(0.01, min(cap, self.deadline - time.time()))

    def write_raw(self, data, split=True):
        pieces = split_writes(self.r, data) if split else [(data, 0)]
        for d, delay in pieces:
            if time.time() > self.deadline:
                return False
            if delay:
                time.sleep(delay)
            self.sock.settimeout(self.tmo())
            self.sock.sendall(d)
        return True

    def _recv_pieces(self, slow, room):
        """Yields what each recv() returns until EOF, a timeout, the
        deadline, or room() is false; a slow reader takes 1..512 bytes at
        a time and pauses after each piece."""
        for _ in range(100000):
            if time.time() > self.deadline or not room():
                return
            self.sock.settimeout(self.tmo(self.idle))
            try:
                d = self.sock.recv(self.r.randint(1, 512) if slow else 65536)
            except socket.timeout:
                return
            if not d:
                return
            yield d
            if slow:
                time.sleep(self.r.choice([0, 0.001, 0.01]))

    def read_raw(self, slow=False, limit=1 << 22):
        """Reads until EOF, the deadline or limit; returns the bytes."""
        buf = b""
        for d in self._recv_pieces(slow, lambda: len(buf) <= limit):
            buf += d
        self.got += len(buf)
        return buf

    def handshake(self, sni, alpn, raw_mutate):
        """TLS handshake over the socket; raw_mutate(bytes) -> bytes applied
        to each outgoing flight.  Returns True when it completed."""
        obj, inc, out = client_hello(sni, alpn, self.r)
        self.tls = (obj, inc, out)
        for _ in range(50):
            data = out.read()
            if data:
                self.write_raw(raw_mutate(data))
            try:
                obj.do_handshake()
                data = out.read()
                if data:
                    self.write_raw(raw_mutate(data))
                return True
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ValueError):
                return False
            if time.time() > self.deadline:
                return False
            self.sock.settimeout(self.tmo())
            d = self.sock.recv(65536)
            if not d:
                return False
            inc.write(d)
        return False

    def tls_write(self, plain, raw_mutate):
        obj, inc, out = self.tls
        pieces = split_writes(self.r, plain)
        for d, delay in pieces:
            if time.time() > self.deadline:
                return
            if delay:
                time.sleep(delay)
            try:
                obj.write(d)
            except (ssl.SSLError, ValueError):
                return
            self.sock.settimeout(self.tmo())
            self.sock.sendall(raw_mutate(out.read()))

    def tls_read(self, slow=False, limit=1 << 22):
        obj, inc, out = self.tls
        buf = b""
        for d in self._recv_pieces(slow, lambda: len(buf) <= limit):
            self.got += len(d)
            inc.write(d)
            try:
                for _ in range(1000):
                    buf += obj.read(65536)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLError, ValueError):
                break
            o = out.read()
            if o:
                try:
                    self.sock.sendall(o)
                except OSError:
                    break
        return buf

    def end(self, how):
        if how == "reset":
            reset(self.sock)
            return
        if how == "half":
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            try:
                self.read_raw()
            except OSError:
                pass
        self.sock.close()


SITES = {"pass": "backend.test", "plain": "a.test", "reenc": "b.test",
         "hostile": "h.wild.test", "hostile_tls": "t.wild.test"}


def storm_case(env, seed, k, verbose=False):
    """Runs storm connection k of seed; returns a short description."""
    r = random.Random("%d:%d" % (seed, k))
    deadline = time.time() + r.choice([3, 5, 8])
    target = r.choice(["hello", "hello", "pass", "plain", "plain", "reenc", "hostile",
                       "hostile", "hostile_tls", "tlsraw", "pp", "pp", "redir", "admin",
                       "junk"])
    desc = [target]
    ending = r.choice(["read", "read", "slow", "half", "reset", "close", "midreset"])
    port = env.ports["pub"]
    prefix = b""
    if target == "pp":
        port = env.ports["pp"]
        prefix = proxy_v1(r) if r.random() < 0.5 else proxy_v2(r)
        if r.random() < 0.5:
            prefix = mutate(r, prefix)
        target = r.choice(["plain", "pass", "hello"])
        desc.append(target)
    if target == "redir" or target == "admin":
        port = env.ports[target]
    conn = Conn(env, r, port, deadline, None)
    got = b""
    try:
        if prefix:
            conn.write_raw(prefix, split=r.random() < 0.5)
        if target in ("redir", "admin", "junk"):
            if target == "admin":
                req = r.choice([b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                                b"GET /trust HTTP/1.1\r\nHost: x\r\n\r\n",
                                b"HEAD /metrics HTTP/1.1\r\n\r\n"])
                req = req * r.choice([1, 1, 2, 3])
            elif target == "redir":
                req = http_requests(r, r.choice(["a.test", "x", "[::1]", "a.test:443"]))
            else:
                req = bytes(r.randrange(256) for _ in range(r.randint(1, 3000)))
            conn.write_raw(mutate(r, req, http=True))
            if ending == "midreset":
                ending = "reset"
            if ending in ("read", "slow"):
                got = conn.read_raw(slow=ending == "slow")
            conn.end(ending)
            return desc, len(got)
        sni = SITES.get(target, r.choice(list(SITES.values()) + ["unknown.test", "", "A.TEST"]))
        if target == "hello":
            # a mutated ClientHello, raw
            obj, inc, out = client_hello(sni or None, r.choice([None, ["http/1.1"], ["h2"]]), r)
            hello = out.read()
            if r.random() < 0.2:
                # re-record it into small records
                body = hello[5:]
                recs = b""
                i = 0
                while i < len(body):
                    n = r.randint(1, 300)
                    recs += b"\x16\x03\x01" + struct.pack(">H", len(body[i:i + n])) + body[i:i + n]
                    i += n
                hello = recs
            hello = mutate(r, hello, count=r.choice([0, 1, 1, 2, 3]))
            if r.random() < 0.1:
                hello = hello[:3] + b"\xff\xff" + hello[5:]
            conn.write_raw(hello)
            if ending == "midreset":
                ending = "reset"
            if ending in ("read", "slow"):
                got = conn.read_raw(slow=ending == "slow")
            conn.end(ending)
            return desc, len(got)
        # TLS sessions: mutate the raw records (rarely) or the plaintext
        raw_p = {"tlsraw": 0.3}.get(target, 0.03)
        raw_mut = (lambda d: mutate(r, d, count=1) if d and r.random() < raw_p else d)
        if target == "tlsraw":
            target = r.choice(["plain", "reenc", "pass"])
            sni = SITES[target]
            desc.append(target)
        alpn = ["http/1.1"] if target != "pass" else None
        if not conn.handshake(sni, alpn, raw_mut):
            desc.append("nohs")
            conn.end(r.choice(["reset", "close"]))
            return desc, 0
        if target == "pass":
            plain = PAT[:r.choice([1, 100, 20000, 300000])]
        else:
            host = sni if r.random() < 0.9 else r.choice(["b.test", "x", "a.test:1", ""])
            base = "/h/%d" % r.randrange(1 << 20) if target.startswith("hostile") else \
                r.choice(["/echo", "/echo", "/fixed", "/echo/chunked"])
            plain = http_requests(r, host, path_base=base)
            plain = mutate(r, plain, http=True)
        if ending == "midreset":
            cut = r.randrange(len(plain) + 1)
            conn.tls_write(plain[:cut], raw_mut)
            if r.random() < 0.5:
                time.sleep(r.choice([0.01, 0.1, 0.5]))
            conn.end("reset")
            return desc + ["midreset"], 0
        conn.tls_write(plain, raw_mut)
        if ending == "half":
            try:
                conn.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            got = conn.tls_read()
            conn.end("close")
        elif ending in ("read", "slow"):
            got = conn.tls_read(slow=ending == "slow")
            conn.end(r.choice(["close", "reset"]))
        else:
            if r.random() < 0.5:
                got = conn.tls_read(limit=r.randint(0, 100000))
            conn.end(ending)
        desc.append(ending)
        return desc, len(got)
    except (OSError, ssl.SSLError, ValueError) as e:
        desc.append(type(e).__name__)
        try:
            conn.end("reset" if r.random() < 0.5 else "close")
        except Exception:
            pass
        return desc, len(got)


# ---------------------------------------------------------------- canaries

class CanaryFail(Exception):
    pass


def read_response(f, method="GET"):
    """Parses one HTTP/1.1 response from file f: (status, headers, body)."""
    line = f.readline(65536)
    if not line:
        raise CanaryFail("EOF before status line")
    m = re.match(rb"HTTP/1\.[01] (\d{3}) ", line)
    if not m:
        raise CanaryFail("bad status line %r" % line[:100])
    status = int(m.group(1))
    hd = []
    for _ in range(200):
        h = f.readline(65536)
        if h in (b"\r\n", b""):
            break
        n, _, v = h.decode("latin-1").rstrip("\r\n").partition(":")
        hd.append((n.strip().lower(), v.strip()))
    hv = dict(hd)
    if 100 <= status < 200 and status != 101:
        return read_response(f, method)
    if method == "HEAD" or status in (204, 304) or status == 101:
        return status, hv, b""
    if "chunked" in hv.get("transfer-encoding", "").lower():
        body = b""
        for _ in range(100000):
            sz = int(f.readline(1024).split(b";")[0].strip(), 16)
            if sz == 0:
                while f.readline(65536) not in (b"\r\n", b""):
                    pass
                return status, hv, body
            body += f.read(sz)
            f.readline(3)
        raise CanaryFail("too many chunks")
    if "content-length" in hv:
        body = f.read(int(hv["content-length"]))
        if len(body) != int(hv["content-length"]):
            raise CanaryFail("short body")
        return status, hv, body
    return status, hv, f.read()


def canary_ctx(env):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(env.certs, "ca.pem"))
    return ctx


def canary_tls(env, sni, port=None, prefix=b"", alpn=("http/1.1",)):
    s = socket.create_connection(("127.0.0.1", port or env.ports["pub"]), timeout=env.latency)
    if prefix:
        s.sendall(prefix)
    ctx = canary_ctx(env)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx.wrap_socket(s, server_hostname=sni)


def canary_once(env, r, kind):
    """One correct exchange of the given kind; raises CanaryFail."""
    if kind in ("plain", "reenc", "pp", "pipeline", "chunked", "ws", "fixed"):
        sni = "b.test" if kind == "reenc" else "a.test"
        prefix = b""
        xff = "127.0.0.1"
        port = None
        if kind == "pp":
            a = "10.9.%d.%d" % (r.randrange(256), r.randrange(256))
            prefix = b"PROXY TCP4 %s 127.0.0.1 5555 443\r\n" % a.encode()
            xff = a
            port = env.ports["pp"]
        s = canary_tls(env, sni, port, prefix)
        try:
            f = s.makefile("rb")
            if kind == "fixed":
                s.sendall(b"GET /fixed HTTP/1.1\r\nHost: a.test\r\n\r\n")
                st, hv, body = read_response(f)
                if st != 418 or body != b"fixed\n":
                    raise CanaryFail("fixed: %d %r" % (st, body[:80]))
                return
            if kind == "ws":
                s.sendall(b"GET /ws HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                          b"Sec-WebSocket-Version: 13\r\n\r\n")
                st, hv, _ = read_response(f)
                if st != 101:
                    raise CanaryFail("ws: status %d" % st)
                data = PAT[r.randrange(1000):][:r.randint(1, 50000)]
                s.sendall(data)
                back = f.read(len(data))
                if back != data:
                    raise CanaryFail("ws: echo mismatch (%d of %d)" % (len(back), len(data)))
                return
            n = 3 if kind == "pipeline" else 1
            reqs = []
            out = b""
            for i in range(n):
                body = PAT[r.randrange(5000):][:r.choice([0, 10, 3000, 100000])]
                tgt = "/echo/c%d/%d" % (i, r.randrange(1 << 30))
                if r.random() < 0.3:
                    tgt = "/bytes/%d" % r.choice([10, 70000]) + ("/chunked" if r.random() < .5 else "")
                if kind == "chunked":
                    enc = b""
                    for j in range(0, len(body), 777):
                        enc += b"%x\r\n" % len(body[j:j + 777]) + body[j:j + 777] + b"\r\n"
                    out += (b"POST %s HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                            % (tgt.encode(), sni.encode())) + enc + b"0\r\n\r\n"
                else:
                    out += (b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n"
                            % (tgt.encode(), sni.encode(), len(body))) + body
                reqs.append(echo_answer("POST", tgt, body, xff))
            s.sendall(out)
            for i, want in enumerate(reqs):
                st, hv, body = read_response(f)
                if st != 200 or body != want:
                    raise CanaryFail("%s #%d: status %d, body %r (want %r)" % (
                        kind, i, st, body[:120], want[:120]))
            return
        finally:
            s.close()
    if kind in ("pass", "pppass"):
        prefix = proxy_v2(r, tlvs=False) if kind == "pppass" else b""
        s = canary_tls(env, "backend.test", env.ports["pp"] if prefix else None, prefix,
                       alpn=None)
        try:
            data = PAT[r.randrange(1000):][:r.randint(1, 200000)]
            s.sendall(data)
            back = b""
            for _ in range(10000):
                if len(back) >= len(data):
                    break
                d = s.recv(65536)
                if not d:
                    break
                back += d
            if back != data:
                raise CanaryFail("pass: echo mismatch (%d of %d)" % (len(back), len(data)))
            return
        finally:
            s.close()
    if kind == "redir":
        st, hv, _ = plain_exchange(env, "redir", b"GET /p/q?x=1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        if st != 301 or hv.get("location") != "https://a.test/p/q?x=1":
            raise CanaryFail("redir: %d %r" % (st, hv.get("location")))
        return
    if kind == "admin":
        st, _, _ = plain_exchange(env, "admin", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                                                b"Connection: close\r\n\r\n")
        if st != 200:
            raise CanaryFail("admin healthz: %d" % st)
        return
    raise AssertionError(kind)


def plain_exchange(env, port_name, request):
    """One request over a new plaintext connection to env.ports[port_name];
    returns read_response()'s (status, headers, body)."""
    s = socket.create_connection(("127.0.0.1", env.ports[port_name]), timeout=env.latency)
    try:
        s.sendall(request)
        return read_response(s.makefile("rb"))
    finally:
        s.close()


CANARY_KINDS = ["plain", "reenc", "pp", "pipeline", "chunked", "ws", "fixed", "pass",
                "pppass", "redir", "admin"]


def canary_round(env, r, stats, failures, kinds=CANARY_KINDS):
    for kind in kinds:
        t0 = time.time()
        try:
            canary_once(env, r, kind)
            dt = time.time() - t0
            if dt > env.latency:
                failures.append("canary %s took %.1fs (bound %ss)" % (kind, dt, env.latency))
        except (CanaryFail, OSError, ssl.SSLError, ValueError) as e:
            failures.append("canary %s at %s: %s: %s" % (
                kind, time.strftime("%H:%M:%S"), type(e).__name__, e))
        stats["canary"] += 1


# ---------------------------------------------------------------- process

def worker_pids(master):
    try:
        with open("/proc/%d/task/%d/children" % (master, master)) as f:
            return sorted(int(x) for x in f.read().split())
    except OSError:
        return []


def fd_count(pid):
    """The process's open sockets (the oracle), -1 when it is gone."""
    return fd_kinds(pid).get("socket", 0) if os.path.exists("/proc/%d" % pid) else -1


def fd_kinds(pid):
    """Open descriptors by kind: socket, pipe, anon_inode:..., file."""
    out = {}
    try:
        names = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            t = os.readlink("/proc/%d/fd/%s" % (pid, n))
        except OSError:
            continue
        k = t.split(":[")[0] if ":[" in t else ("anon" if t.startswith("anon_inode") else "file")
        out[k] = out.get(k, 0) + 1
    return out


def write_conf(env):
    c = env.certs
    conf = {
        "runtime": {"workers": env.workers, "cpu_affinity": "off",
                    "pid_file": "hamlyn.pid",
                    "error_log": {"path": "error.log", "level": "info"},
                    "access_log": {"path": "access.log"},
                    "max_connections": 4000, "shutdown_timeout_s": 2},
        "admin": {"listen": "127.0.0.1:%d" % env.ports["admin"]},
        "certificates": {n: {"cert": "%s/%s.pem" % (c, n), "key": "%s/%s.key" % (c, n)}
                         for n in ("a.test", "b.test", "wild.test")},
        "upstreams": {
            "raw": {"servers": ["127.0.0.1:%d" % env.ports["raw_tls"]]},
            "echo": {"servers": ["127.0.0.1:%d" % env.ports["echo"]],
                     "plaintext": {"accepted_risk": "chaos test on loopback"},
                     "pool": {"idle_timeout_s": 1}, "read_timeout_ms": 3000,
                     "connect_timeout_ms": 2000},
            "echo_tls": {"servers": ["127.0.0.1:%d" % env.ports["echo_tls"]],
                         "tls": {"server_name": "backend.test", "ca": "%s/ca.pem" % c},
                         "pool": {"idle_timeout_s": 1}, "read_timeout_ms": 3000,
                         "connect_timeout_ms": 2000},
            "hostile_tls": {"servers": ["127.0.0.1:%d" % env.ports["hostile_tls"]],
                            "tls": {"server_name": "backend.test", "ca": "%s/ca.pem" % c},
                            "pool": {"idle_timeout_s": 1}, "read_timeout_ms": 2000,
                            "connect_timeout_ms": 1000},
            "hostile": {"servers": ["127.0.0.1:%d" % env.ports["hostile"]],
                        "plaintext": {"accepted_risk": "chaos test on loopback"},
                        "pool": {"idle_timeout_s": 1}, "read_timeout_ms": 2000,
                        "connect_timeout_ms": 1000},
        },
        "listeners": [
            {"name": "pub", "listen": ["127.0.0.1:%d" % env.ports["pub"]],
             "sites": ["pass", "plain", "reenc", "hostile", "hostile_tls"],
             "default_site": "plain",
             "client_hello_timeout_ms": 2000},
            {"name": "pp", "listen": ["127.0.0.1:%d" % env.ports["pp"]],
             "sites": ["pass", "plain"], "proxy_protocol": True,
             "client_hello_timeout_ms": 2000},
            {"name": "redir", "listen": ["127.0.0.1:%d" % env.ports["redir"]],
             "http": {"redirect_to_https": True}},
        ],
        "sites": {
            "pass": {"server_names": ["backend.test"], "mode": "passthrough", "upstream": "raw"},
            "plain": {"server_names": ["a.test"], "mode": "terminate",
                      "tls": {"certificates": ["a.test"], "alpn": ["http/1.1"]},
                      "limits": {"header_timeout_ms": 2000, "idle_timeout_ms": 3000,
                                 "max_body_bytes": 200000},
                      "routes": [{"match": {"path_prefix": "/fixed"}, "status": 418,
                                  "body": "fixed\n"},
                                 {"match": {"path_prefix": "/"}, "upstream": "echo"}]},
            "reenc": {"server_names": ["b.test"], "mode": "terminate",
                      "tls": {"certificates": ["b.test"], "alpn": ["http/1.1"]},
                      "limits": {"header_timeout_ms": 2000, "idle_timeout_ms": 3000,
                                 "max_body_bytes": 200000},
                      "routes": [{"match": {"path_prefix": "/"}, "upstream": "echo_tls"}]},
            "hostile_tls": {"server_names": ["t.wild.test"], "mode": "terminate",
                            "tls": {"certificates": ["wild.test"], "alpn": ["http/1.1"]},
                            "limits": {"header_timeout_ms": 2000, "idle_timeout_ms": 3000},
                            "routes": [{"match": {"path_prefix": "/"},
                                        "upstream": "hostile_tls"}]},
            "hostile": {"server_names": ["*.wild.test"], "mode": "terminate",
                        "tls": {"certificates": ["wild.test"], "alpn": ["http/1.1"]},
                        "limits": {"header_timeout_ms": 2000, "idle_timeout_ms": 3000},
                        "routes": [{"match": {"path_prefix": "/"}, "upstream": "hostile"}]},
        },
    }
    path = os.path.join(env.dir, "hamlyn.json")
    with open(path, "w") as f:
        json.dump(conf, f, indent=1)
    return path


def wait_listen(ports, deadline, proc):
    for p in ports:
        while proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", p), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    return False
                time.sleep(0.05)
    return proc.poll() is None


def metrics(env):
    """The admin listener's /metrics, summed by family: {name: value}."""
    s = socket.create_connection(("127.0.0.1", env.ports["admin"]), timeout=10)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, hv, body = read_response(s.makefile("rb"))
    finally:
        s.close()
    out = {}
    for line in body.decode("latin-1").splitlines():
        m = re.match(r"([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(3))
    return out


def sanitizer_reports(env):
    out = []
    for name in sorted(os.listdir(env.sanlog)):
        with open(os.path.join(env.sanlog, name), errors="replace") as f:
            out.append("%s:\n%s" % (name, f.read()[:6000]))
    for name in ("stderr", "error.log"):
        p = os.path.join(env.dir, name)
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                txt = f.read()
            for m in re.finditer(r"(ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:)", txt):
                out.append("%s: %s" % (name, txt[max(0, m.start() - 200):m.start() + 2000]))
                break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--latency", type=float, default=10.0)
    ap.add_argument("--fd-slack", type=int, default=2)
    ap.add_argument("--dir")
    ap.add_argument("--certs", help="an existing t/certs/mkcerts.sh output folder "
                    "(default: made in the scratch folder)")
    ap.add_argument("--case", type=int, action="append")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--serve", type=float,
                    help="start everything, print the ports, wait SERVE seconds "
                         "(for manual reproducers), then check the oracles")
    a = ap.parse_args()
    storm_s = a.seconds if a.seconds is not None else 60 * (a.minutes if a.minutes is not None else 1)

    env = Env()
    env.workers = a.workers
    env.latency = a.latency
    env.dir = a.dir or tempfile.mkdtemp(prefix="hamlyn-chaos-")
    os.makedirs(env.dir, exist_ok=True)
    env.certs = os.path.abspath(a.certs) if a.certs else os.path.join(env.dir, "certs")
    env.sanlog = os.path.join(env.dir, "san")
    os.makedirs(env.sanlog, exist_ok=True)
    subprocess.run(["sh", os.path.join(ROOT, "t", "certs", "mkcerts.sh"), env.certs],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    used = set()
    pr = random.Random(os.getpid() ^ int(time.time() * 1000))
    env.ports = {n: free_port(pr, used) for n in
                 ("pub", "pp", "redir", "admin", "echo", "echo_tls", "raw_tls", "hostile",
                  "hostile_tls")}
    say = (lambda *x: None) if a.quiet else (lambda *x: print(*x, flush=True))

    bpid = start_backends(env.ports, env.certs)
    conf = write_conf(env)
    senv = dict(os.environ)
    senv["ASAN_OPTIONS"] = ("detect_leaks=1:detect_stack_use_after_return=1:"
                            "log_path=%s/asan" % env.sanlog)
    senv["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % env.sanlog
    errf = open(os.path.join(env.dir, "stderr"), "wb")
    proc = subprocess.Popen([os.path.abspath(a.binary), "-c", conf], cwd=env.dir,
                            stdout=errf, stderr=errf, env=senv)
    failures = Failures()
    stats = {"conns": 0, "mutated": 0, "canary": 0, "bytes_in": 0}
    try:
        if not wait_listen([env.ports[n] for n in ("pub", "pp", "redir", "admin")],
                           time.time() + 30, proc):
            failures.append("hamlyn did not start listening")
            raise SystemExit
        time.sleep(0.5)
        master = proc.pid
        workers0 = worker_pids(master)
        say("chaos: seed %d dir %s master %d workers %s ports %s" % (
            a.seed, env.dir, master, workers0, env.ports))

        if a.serve:
            with open(os.path.join(env.dir, "ports.json"), "w") as f:
                json.dump(env.ports, f)
            say("chaos: serving for %.0f s; ports in %s/ports.json" % (a.serve, env.dir))
            time.sleep(a.serve)
        elif a.case:
            for k in a.case:
                t0 = time.time()
                d, n = storm_case(env, a.seed, k, verbose=True)
                say("case %d: %s, %d bytes back, %.2fs" % (k, " ".join(d), n, time.time() - t0))
            time.sleep(1)
            canary_round(env, random.Random(0), stats, failures)
        else:
            # warm-up: canaries, then the baseline descriptor counts
            cr = random.Random("canary:%d" % a.seed)
            canary_round(env, cr, stats, failures)
            time.sleep(2.5)
            fd0 = {p: fd_count(p) for p in workers0}
            say("chaos: baseline sockets %s; all descriptors %s" % (
                fd0, {p: fd_kinds(p) for p in workers0}))

            stop = time.time() + storm_s
            lock = threading.Lock()
            counter = [0]
            recent = {}

            def storm_thread(tid):
                for _ in range(10 ** 7):
                    if time.time() > stop:
                        return
                    with lock:
                        k = counter[0]
                        counter[0] += 1
                        recent[tid] = k
                    try:
                        d, n = storm_case(env, a.seed, k)
                    except Exception:
                        failures.append("driver error in case %d: %s" % (k, traceback.format_exc()))
                        return
                    with lock:
                        stats["conns"] += 1
                        stats["bytes_in"] += n

            def canary_thread(cid):
                r = random.Random("canary:%d:%d" % (a.seed, cid))
                for _ in range(10 ** 6):
                    if time.time() > stop:
                        return
                    n = len(failures)
                    canary_round(env, r, stats, failures)
                    if len(failures) > n:
                        say("chaos: storm cases open then: %s" % sorted(recent.values()))
                    time.sleep(0.2)

            ths = [threading.Thread(target=storm_thread, args=(i,), daemon=True)
                   for i in range(a.clients)]
            ths += [threading.Thread(target=canary_thread, args=(i,), daemon=True)
                    for i in range(3)]
            for t in ths:
                t.start()
            last = time.time()
            while any(t.is_alive() for t in ths) and time.time() < stop + 60:
                time.sleep(1)
                if time.time() - last > 30:
                    last = time.time()
                    say("chaos: %d conns, %d canary checks, %d failures" % (
                        stats["conns"], stats["canary"], len(failures)))
                    if proc.poll() is not None:
                        break
            for t in ths:
                t.join(timeout=1)
            if any(t.is_alive() for t in ths):
                failures.append("some client threads did not finish in time")

            # after the storm: descriptors back, still serving
            deadline = time.time() + 30
            fd1 = {}
            while time.time() < deadline:
                time.sleep(1)
                fd1 = {p: fd_count(p) for p in workers0}
                try:
                    active = metrics(env).get("hamlyn_connections_active", -1)
                except (OSError, CanaryFail) as e:
                    active = "error %s" % e
                if all(fd1[p] <= fd0[p] + a.fd_slack for p in workers0) and active == 0:
                    break
            if active != 0:
                failures.append("hamlyn_connections_active is %s after the storm" % active)
            for p in workers0:
                if fd1.get(p, -1) > fd0[p] + a.fd_slack:
                    failures.append("worker %d: %d sockets after the storm, %d before"
                                    % (p, fd1[p], fd0[p]))
                    try:
                        ss = subprocess.run(["ss", "-tanpe"], capture_output=True, text=True,
                                            timeout=10).stdout
                        say("\n".join(l for l in ss.splitlines() if "pid=%d," % p in l))
                    except (OSError, subprocess.SubprocessError):
                        pass
            say("chaos: sockets after %s; all descriptors %s" % (
                fd1, {p: fd_kinds(p) for p in workers0}))
            for p in workers0:
                # splice pipes are kept on a free list (HM_PIPE_FREE_MAX 256 a worker)
                if fd_kinds(p).get("pipe", 0) > 2 * 256 + 16:
                    failures.append("worker %d: more pipes than the splice free list holds: %s"
                                    % (p, fd_kinds(p)))
            canary_round(env, random.Random("final:%d" % a.seed), stats, failures)
            try:
                restarts = metrics(env).get("hamlyn_worker_restarts_total", -1)
            except (OSError, CanaryFail) as e:
                restarts = "error %s" % e
            if restarts != 0:
                failures.append("hamlyn_worker_restarts_total is %s" % restarts)
            stats["mutated"] = counter[0]
        workers1 = worker_pids(master)
        if proc.poll() is not None:
            failures.append("hamlyn master exited with %s" % proc.returncode)
        elif workers1 != workers0:
            failures.append("worker pids changed: %s -> %s" % (workers0, workers1))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        try:
            os.killpg(bpid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.kill(bpid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(bpid, 0)
        errf.close()

    time.sleep(0.5)
    for rep in sanitizer_reports(env):
        failures.append(rep)
    elog = open(os.path.join(env.dir, "error.log"), errors="replace").read() \
        if os.path.exists(os.path.join(env.dir, "error.log")) else ""
    for m in re.finditer(r".*worker \d+ \(slot \d+\).*(restarting|before it was).*", elog):
        failures.append("error log: " + m.group(0))
    bad_json = 0
    lines = 0
    if os.path.exists(os.path.join(env.dir, "access.log")):
        with open(os.path.join(env.dir, "access.log"), "rb") as f:
            for line in f:
                lines += 1
                try:
                    json.loads(line)
                except ValueError:
                    bad_json += 1
                    if bad_json < 4:
                        failures.append("access log line not JSON: %r" % line[:200])
    if bad_json:
        failures.append("%d access-log lines not JSON" % bad_json)
    print("chaos: seed %d, %.0f s storm, %d storm connections, %d mutations, "
          "%d canary checks, %d access-log lines, %d failures" % (
              a.seed, storm_s if not a.case else 0, stats["conns"], MUTATIONS[0],
              stats["canary"], lines, len(failures)))
    for f in failures:
        print("FAIL: " + f)
    if not failures and not a.dir:
        shutil.rmtree(env.dir, ignore_errors=True)
    elif failures:
        print("chaos: kept %s" % env.dir)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
