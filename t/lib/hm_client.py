#!/usr/bin/env python3
"""hm_client.py: a full-duplex TLS test client (Python ssl over memory BIOs).

Where it sits: called by Hamlyn::Test->tls_client(...) for what openssl
s_client does badly: sending and receiving many MiB at once, byte-exact,
and reporting handshake facts as JSON.  Python stdlib only.

  hm_client.py --connect 127.0.0.1:PORT [--servername NAME | --no-sni]
               [--ca FILE] [--no-verify] [--cert NAME --key NAME]
               [--send-bytes N] [--send TEXT] [--send-head TEXT] [--shut-wr]
               [--read-bytes N] [--timeout S] [--certs DIR] [--alpn P]

It handshakes, then sends N pattern bytes (hm_backend.pattern_chunks) or
TEXT while reading everything the server sends.  After sending it
half-closes with a TCP FIN (--shut-wr; the TLS session stays readable) and
reads until EOF, --read-bytes bytes, or the timeout.  --send-head TEXT goes
out before the --send-bytes pattern (an HTTP request head, say).
--read-delay S: once everything is sent, read nothing for S seconds (a
client that stalls a download).  Prints one JSON line:
{ok, error, version, cipher, alpn, peer_cn, peer_san, recv_bytes,
 recv_sha256, first_line, rest_bytes, rest_sha256 (what followed the first
 line: with tls-echo, the echo), last_line, sent_bytes, elapsed_s}.
"""

import argparse
import hashlib
import itertools
import json
import os
import select
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hm_backend import pattern_chunks  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--servername")
    ap.add_argument("--no-sni", action="store_true")
    ap.add_argument("--certs", default=".")
    ap.add_argument("--ca")
    ap.add_argument("--no-verify", action="store_true")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--alpn", action="append")
    ap.add_argument("--send-bytes", type=int, default=0)
    ap.add_argument("--send", default="")
    ap.add_argument("--send-head", default="")
    ap.add_argument("--read-delay", type=float, default=0)
    ap.add_argument("--shut-wr", action="store_true")
    ap.add_argument("--read-bytes", type=int, default=-1)
    ap.add_argument("--timeout", type=float, default=30)
    o = ap.parse_args()

    rep = {"ok": False, "error": None, "recv_bytes": 0, "sent_bytes": 0}
    t0 = time.time()
    deadline = t0 + o.timeout
    host, _, port = o.connect.rpartition(":")
    host = host.strip("[]")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if o.no_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(o.ca or os.path.join(o.certs, "ca.pem"))
        if o.no_sni or not o.servername:
            ctx.check_hostname = False
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    if o.cert:
        c = o.cert if "/" in o.cert else os.path.join(o.certs, o.cert + ".pem")
        k = o.key or o.cert
        k = k if "/" in k else os.path.join(o.certs, k + ".key")
        ctx.load_cert_chain(c, k)
    if o.alpn:
        ctx.set_alpn_protocols(o.alpn)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    sni = None if o.no_sni else o.servername
    tls = ctx.wrap_bio(inc, out, server_side=False, server_hostname=sni)
    sock = socket.create_connection((host, int(port)), timeout=max(0.1, deadline - time.time()))
    sock.setblocking(False)
    h = hashlib.sha256()
    hb = hashlib.sha256()   # what came after the first line
    in_body = False
    rep["rest_bytes"] = 0
    first = b""
    tail = b""
    if o.send_bytes:
        src = pattern_chunks(o.send_bytes)
        if o.send_head:
            src = itertools.chain([o.send_head.encode("latin-1")], src)
    else:
        src = iter([o.send.encode()] if o.send else [])
    pending = b""       # plaintext not yet accepted by tls.write
    wire = b""          # ciphertext not yet written to the socket
    handshaken = False
    sent_all = False
    shut = False
    eof = False
    try:
        while time.time() < deadline:
            if not handshaken:
                try:
                    tls.do_handshake()
                    handshaken = True
                    rep["version"] = tls.version()
                    rep["cipher"] = tls.cipher()[0]
                    rep["alpn"] = tls.selected_alpn_protocol()
                    pc = tls.getpeercert() if not o.no_verify else None
                    if pc:
                        for rdn in pc.get("subject", ()):
                            for k, v in rdn:
                                if k == "commonName":
                                    rep["peer_cn"] = v
                        rep["peer_san"] = [v for _, v in pc.get("subjectAltName", ())]
                    else:
                        der = tls.getpeercert(binary_form=True)
                        rep["peer_der_sha256"] = hashlib.sha256(der).hexdigest() if der else None
                except ssl.SSLWantReadError:
                    pass
            if handshaken and sent_all and not wire and o.read_delay > 0:
                time.sleep(o.read_delay)
                o.read_delay = 0
            if handshaken:
                # plaintext -> TLS
                while not sent_all and out.pending + len(wire) < (1 << 20):
                    if not pending:
                        pending = next(src, None)
                        if pending is None:
                            sent_all = True
                            pending = b""
                            break
                    n = tls.write(pending)
                    rep["sent_bytes"] += n
                    pending = pending[n:]
                # TLS -> plaintext
                while True:
                    try:
                        d = tls.read(65536)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        d = b""
                    if not d:
                        eof = True
                        break
                    rep["recv_bytes"] += len(d)
                    h.update(d)
                    if not in_body:
                        first += d
                        if b"\n" in first:
                            in_body = True
                            rest = first[first.index(b"\n") + 1:]
                            first = first[:first.index(b"\n")]
                            hb.update(rest)
                            rep["rest_bytes"] += len(rest)
                    else:
                        hb.update(d)
                        rep["rest_bytes"] += len(d)
                    tail = (tail + d)[-256:]
            wire += out.read()
            if sent_all and not wire and not shut and (o.shut_wr or o.send_bytes or o.send):
                if o.shut_wr:
                    sock.shutdown(socket.SHUT_WR)
                shut = True
            if eof or (o.read_bytes >= 0 and rep["recv_bytes"] >= o.read_bytes):
                if not o.shut_wr or shut:
                    break
            r, w, _ = select.select([sock], [sock] if wire else [], [], 0.05)
            if w and wire:
                try:
                    n = sock.send(wire)
                    wire = wire[n:]
                except BlockingIOError:
                    pass
            if r:
                try:
                    d = sock.recv(1 << 18)
                except (BlockingIOError, InterruptedError):
                    d = None
                except ConnectionResetError:
                    rep["error"] = "connection reset"
                    break
                if d == b"":
                    inc.write_eof()
                    if not handshaken:
                        rep["error"] = "EOF during handshake"
                        break
                    eof = True
                    try:
                        while True:
                            x = tls.read(65536)
                            if not x:
                                break
                            rep["recv_bytes"] += len(x)
                            h.update(x)
                            if in_body:
                                hb.update(x)
                                rep["rest_bytes"] += len(x)
                            else:
                                first += x
                            tail = (tail + x)[-256:]
                    except (ssl.SSLError, ssl.SSLEOFError):
                        pass
                    break
                elif d:
                    inc.write(d)
        else:
            rep["error"] = "timeout"
        rep["ok"] = handshaken and rep["error"] is None
    except ssl.SSLError as e:
        rep["error"] = "ssl: %s" % (e.reason or e)
    except OSError as e:
        rep["error"] = "os: %s" % e
    rep["recv_sha256"] = h.hexdigest()
    rep["rest_sha256"] = hb.hexdigest()
    rep["first_line"] = first.split(b"\n")[0][:512].decode("latin-1")
    lines = tail.rstrip(b"\n").split(b"\n")
    rep["last_line"] = lines[-1].decode("latin-1") if tail else ""
    rep["elapsed_s"] = round(time.time() - t0, 3)
    print(json.dumps(rep))


if __name__ == "__main__":
    main()
