#!/usr/bin/perl
# 22-hostile.t: hostile input from the outside on every kind of listener
# (TLS with and without "proxy_protocol", the redirect listener), each
# answered with a clear error (HTTP status, TLS alert, close) and a log
# line, while a well-behaved client on the same worker keeps getting its
# bytes back exactly.  One Python driver (below) runs the scenarios and
# the good client side by side and prints one JSON line per scenario.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $http = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my $echo = $t->backend(mode => 'tls-echo', cert => 'backend.test')
    or BAIL_OUT('backend did not start');
my ($p, $pp, $rd) = ($t->port, $t->port, $t->port);

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        be => { servers => ["127.0.0.1:$http->{port}"],
                plaintext => { accepted_risk => 'test backend on loopback' } },
        echo => { servers => ["127.0.0.1:$echo->{port}"] },
    },
    listeners => [
        { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a', 'pt'],
          default_site => 'a' },
        { name => 'pp', listen => ["127.0.0.1:$pp"], sites => ['a', 'pt'],
          default_site => 'a', proxy_protocol => JSON::PP::true },
        { name => 'redir', listen => ["127.0.0.1:$rd"],
          http => { redirect_to_https => JSON::PP::true } },
    ],
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate',
               tls => { certificates => ['a'] },
               limits => { header_timeout_ms => 5000 },
               routes => [ { match => { path_prefix => '/' }, upstream => 'be' } ] },
        pt => { server_names => ['pt.test'], mode => 'passthrough', upstream => 'echo' },
    },
});
$t->run or BAIL_OUT('hamlyn did not start');
my @workers = $t->worker_pids;

my $driver = "$t->{dir}/hostile.py";
open my $fh, '>', $driver or die "$driver: $!";
print $fh <<'PY';
import json, os, random, socket, ssl, struct, sys, threading, time
main, pp, rd, ca = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
PP2 = b"\r\n\r\n\x00\r\nQUIT\n"

def ctx(check=True):
    c = ssl.create_default_context(cafile=ca)
    c.check_hostname = check
    return c

def hello(sni, pad=0):
    """A real ClientHello (Python's), as one handshake message; pad adds an
    unknown extension of that many bytes."""
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx(False).wrap_bio(i, o, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    rec = o.read()
    msg = rec[5:5 + struct.unpack('>H', rec[3:5])[0]]
    if pad:
        body = msg[4:]
        p = 34
        p += 1 + body[p]
        p += 2 + struct.unpack('>H', body[p:p + 2])[0]
        p += 1 + body[p]
        n = struct.unpack('>H', body[p:p + 2])[0]
        exts = struct.pack('>HH', 0xfe00, pad) + b'\0' * pad + body[p + 2:p + 2 + n]
        body = body[:p] + struct.pack('>H', len(exts)) + exts
        msg = b'\x01' + struct.pack('>I', len(body))[1:] + body
    return msg

def records(msg, size):
    return b''.join(b'\x16\x03\x01' + struct.pack('>H', len(msg[k:k + size]))
                    + msg[k:k + size] for k in range(0, len(msg), size))

def drain(s, idle):
    """Everything until EOF/reset (closed) or idle quiet seconds."""
    out, how = b'', 'idle'
    s.settimeout(idle)
    while True:
        try:
            d = s.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, ssl.SSLError, OSError):
            how = 'closed'
            break
        if not d:
            how = 'closed'
            break
        out += d
    return out, how

def plain(port, data, idle=3, pieces=None):
    t0 = time.time()
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    try:
        for piece in pieces or [data]:
            s.sendall(piece)
            if pieces:
                time.sleep(0.002)
    except OSError:
        pass
    out, how = drain(s, idle)
    return {'out': out.decode('latin-1'), 'how': how, 'secs': time.time() - t0}

def tls_raw(port, data, idle=3, pre=b''):
    t0 = time.time()
    raw = socket.create_connection(('127.0.0.1', port), timeout=5)
    if pre:
        raw.sendall(pre)
    s = ctx().wrap_socket(raw, server_hostname='a.test')
    s.sendall(data)
    out, how = drain(s, idle)
    return {'out': out.decode('latin-1'), 'how': how, 'secs': time.time() - t0}

good = {'n': 0, 'bad': []}
stop = False
def good_client():
    while not stop:
        try:
            s = ctx().wrap_socket(socket.create_connection(('127.0.0.1', main), timeout=5),
                                  server_hostname='a.test')
            for _ in range(3):
                body = os.urandom(random.randint(1, 3000))
                s.sendall(b'POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n'
                          % len(body) + body)
                buf = b''
                while b'\r\n\r\n' not in buf:
                    d = s.recv(65536)
                    if not d:
                        raise Exception('EOF in the response head')
                    buf += d
                head, rest = buf.split(b'\r\n\r\n', 1)
                cl = [int(l.split(b':')[1]) for l in head.split(b'\r\n')
                      if l.lower().startswith(b'content-length:')][0]
                while len(rest) < cl:
                    d = s.recv(65536)
                    if not d:
                        raise Exception('EOF in the response body')
                    rest += d
                if not head.startswith(b'HTTP/1.1 200 ') or rest != body:
                    raise Exception('terminate: wrong answer')
                good['n'] += 1
            s.close()
            s = ctx(False).wrap_socket(socket.create_connection(('127.0.0.1', main), timeout=5),
                                       server_hostname='pt.test')
            line = b''
            while not line.endswith(b'\n'):
                d = s.recv(1)
                if not d:
                    raise Exception('passthrough: EOF')
                line += d
            data = os.urandom(20000)
            s.sendall(data)
            got = b''
            while len(got) < len(data):
                d = s.recv(65536)
                if not d:
                    raise Exception('passthrough: EOF in the echo')
                got += d
            if got != data:
                raise Exception('passthrough: echo differs')
            s.unwrap()
            s.close()
            good['n'] += 1
        except Exception as e:
            if len(good['bad']) < 5:
                good['bad'].append(repr(e))

def report(name, r):
    r['name'] = name
    print(json.dumps(r), flush=True)

th = threading.Thread(target=good_client, daemon=True)
th.start()
# a partial head on the redirect listener: 408 after its fixed 10 s (runs
# while the rest goes on)
partial = {}
def partial_head():
    partial.update(plain(rd, b'GET / HTTP/1.1\r\nHost: a', idle=12))
tp = threading.Thread(target=partial_head, daemon=True)
tp.start()
v1 = b'PROXY TCP4 192.0.2.7 198.51.100.1 40001 443\r\n'
blk = (bytes([192, 0, 2, 8, 198, 51, 100, 1]) + struct.pack('>HH', 40002, 443)
       + b'\x01\x00\x08http/1.1' + b'\x04\x00\x00' + b'\x03\x00\x00')
v2 = PP2 + b'\x21\x11' + struct.pack('>H', len(blk)) + blk
h = records(hello('a.test'), 16384)
report('pp on tls listener without it', plain(main, v1 + h))
report('pp2 on tls listener without it', plain(main, v2 + h))
report('pp on redirect listener without it', plain(rd, v1 + b'GET / HTTP/1.1\r\nHost: a.test\r\n\r\n'))
report('nul bytes on redirect listener', plain(rd, b'\0' * 64))
report('tls hello on redirect listener', plain(rd, h[:40]))
report('nul bytes over tls', tls_raw(main, b'\0' * 64))
report('h2 frame over tls', tls_raw(main, b'\x00\x00\x12\x04\x00\x00\x00\x00\x00'))
report('40 KiB hello on terminate site', plain(main, records(hello('a.test', 40000), 16384)))
report('40 KiB hello on passthrough site', plain(main, records(hello('pt.test', 40000), 16384), idle=1))
report('16 KiB hello in 1-byte records', plain(main, records(hello('pt.test', 16000), 1), idle=1))
report('v1 then request', tls_raw(pp, b'GET /v1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n', pre=v1))
req = b'GET /v2 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n'
# v2 with TLVs sent a byte at a time before the handshake
t0 = time.time()
raw = socket.create_connection(('127.0.0.1', pp), timeout=5)
for b in v2:
    raw.sendall(bytes([b]))
    time.sleep(0.002)
s = ctx().wrap_socket(raw, server_hostname='a.test')
s.sendall(req)
out, how = drain(s, 3)
report('v2 split bytewise then request', {'out': out.decode('latin-1'), 'how': how})
report('v2 LOCAL then request', tls_raw(pp, b'GET /local HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n',
                                       pre=PP2 + b'\x20\x00\x00\x00'))
blk = (bytes([192, 0, 2, 9, 198, 51, 100, 1]) + struct.pack('>HH', 40003, 443)
       + b'\xe0' + struct.pack('>H', 3000) + b'x' * 3000)
report('v2 with 3000 bytes of TLVs', tls_raw(pp, b'GET /big-tlv HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n',
                                            pre=PP2 + b'\x21\x11' + struct.pack('>H', len(blk)) + blk))
report('bad v1 port', plain(pp, b'PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n' + h))
report('no header on pp listener', plain(pp, h))
# a forged application-data record after a TLS 1.2 handshake: the fatal
# alert (record type 21, visible in TLS 1.2) comes back before the close
c12 = ctx()
c12.maximum_version = ssl.TLSVersion.TLSv1_2
s = c12.wrap_socket(socket.create_connection(('127.0.0.1', main), timeout=5),
                    server_hostname='a.test')
raw = socket.socket(fileno=os.dup(s.fileno()))
raw.sendall(b'\x17\x03\x03\x00\x28' + os.urandom(40))
out, how = drain(raw, 3)
types = []
while len(out) >= 5:
    types.append(out[0])
    out = out[5 + struct.unpack('>H', out[3:5])[0]:]
report('forged record', {'types': types, 'how': how})
time.sleep(0.5)
stop = True
th.join(15)
tp.join(15)
report('partial head on redirect listener', partial)
report('good', {'n': good['n'], 'bad': good['bad']})
PY
close $fh;

my %r;
open my $ph, '-|', 'python3', $driver, $p, $pp, $rd, "$certs/ca.pem" or die "python3: $!";
while (my $line = <$ph>) {
    my $j = eval { decode_json($line) } or next;
    $r{$j->{name}} = $j;
}
close $ph;
sub r { my ($n) = @_; return $r{$n} // { out => '', how => 'missing', secs => 99 } }
sub status { my ($x) = @_; return ($x->{out} =~ m{^HTTP/1\.1 (\d{3}) }) ? $1 : '' }
my $log = sub { $t->error_log };
my $ppmsg = qr/PROXY protocol header, but the listener does not have "proxy_protocol": true/;

# --- a PROXY header where none is expected: said so, no HTTP answer
my $x = r('pp on tls listener without it');
is($x->{out}, '', 'PROXY v1 on a TLS listener: no answer (no HTTP 400)');
is($x->{how}, 'closed', 'PROXY v1 on a TLS listener: closed');
$x = r('pp2 on tls listener without it');
is($x->{how}, 'closed', 'PROXY v2 on a TLS listener: closed');
my @ppl = $log->() =~ /not a TLS handshake: not TLS \(a $ppmsg\)/g;
is(scalar @ppl, 2, 'both logged as a PROXY header on a listener without proxy_protocol');
$x = r('pp on redirect listener without it');
is(status($x), 400, 'PROXY v1 on the redirect listener: 400');
like($log->(), qr/bad request: a $ppmsg \(while redirecting/, 'and logged as such');

# --- junk on plaintext HTTP is a 400 at once, not after the header timeout
$x = r('nul bytes on redirect listener');
is(status($x), 400, 'NUL bytes on the redirect listener: 400');
cmp_ok($x->{secs}, '<', 2, 'at once (not after the 10 s header timeout)');
$x = r('partial head on redirect listener');
is(status($x), 408, 'a partial head on the redirect listener: 408 after the header timeout');
cmp_ok($x->{secs}, '>', 9, 'after the 10 s');
$x = r('tls hello on redirect listener');
is(status($x), 400, 'a TLS ClientHello on the redirect listener: 400');
cmp_ok($x->{secs}, '<', 2, 'at once');
$x = r('nul bytes over tls');
is(status($x), 400, 'NUL bytes inside TLS: 400');
cmp_ok($x->{secs}, '<', 2, 'at once (header_timeout_ms is 5000)');
is($x->{how}, 'closed', 'and closed');
$x = r('h2 frame over tls');
is(status($x), 400, 'an HTTP/2 frame inside an http/1.1 session: 400');
like($log->(), qr/invalid request: malformed request line/, 'logged: malformed request line');

# --- a ClientHello larger than the TLS stack takes: alert, info log
$x = r('40 KiB hello on terminate site');
is(unpack('H*', $x->{out}), '15030300020232', '40 KiB ClientHello to a terminate site: decode_error alert');
is($x->{how}, 'closed', 'and closed');
like($log->(), qr/\[info\] [^\n]*sni=a\.test: TLS handshake failed: ClientHello too large \(\d+ bytes\)/,
     'logged at info as a handshake failure');
unlike($log->(), qr/cannot start the TLS handshake/, 'not as a server-side failure');
$x = r('40 KiB hello on passthrough site');
like(substr($x->{out}, 0, 1), qr/^\x16/, '40 KiB ClientHello to a passthrough site: the backend answers');

$x = r('16 KiB hello in 1-byte records');
like($x->{out}, qr/^\x15\x03\x03\x00\x02\x02\x32/, '16 KiB ClientHello in 1-byte records (96 KiB): decode_error alert');
like($log->(), qr/ClientHello not complete after \d+ bytes \(client_hello_max_bytes 65536, record headers included\)/,
     'logged with what was counted (not "larger than 65536 bytes")');

# --- inbound PROXY protocol on a TLS listener
$x = r('v1 then request');
is(status($x), 200, 'PROXY v1 then TLS: served');
$x = r('v2 split bytewise then request');
is(status($x), 200, 'PROXY v2 with TLVs, one byte per packet, then TLS: served');
$x = r('v2 LOCAL then request');
is(status($x), 200, 'PROXY v2 LOCAL then TLS: served');
is(status(r('v2 with 3000 bytes of TLVs')), 200, 'PROXY v2 with 3000 bytes of TLVs (nginx takes 4096): served');
is(r('bad v1 port')->{how}, 'closed', 'PROXY v1 with port 65536: closed');
is(r('no header on pp listener')->{how}, 'closed', 'no PROXY header where one is required: closed');
like($log->(), qr/bad PROXY protocol header: bad port in PROXY v1 line/, 'bad port logged');
like($log->(), qr/bad PROXY protocol header: no PROXY protocol header/, 'missing header logged');
my $al = $t->wait_access_log(1);
my %by_path;
for my $l (@$al) {
    $by_path{$l->{path}} = $l if defined $l->{path};
}
is($by_path{'/v1'}{client}, '192.0.2.7:40001', 'v1: the client address is the one from the header');
is($by_path{'/v2'}{client}, '192.0.2.8:40002', 'v2: the client address is the one from the header');
is($by_path{'/big-tlv'}{client}, '192.0.2.9:40003', 'v2 with big TLVs: the address from the header');
like($by_path{'/local'}{client} // '', qr/^127\.0\.0\.1:/, 'LOCAL: the socket address is kept');
my %out;
$out{$_->{outcome} // ''}++ for @$al;
cmp_ok($out{bad_proxy_protocol} // 0, '>=', 2, 'bad_proxy_protocol outcomes in the access log');

# --- TLS protocol errors after the handshake: alert and an info line
$x = r('forged record');
is_deeply($x->{types}, [21], 'a forged record after the handshake: a TLS alert comes back');
is($x->{how}, 'closed', 'and the connection is closed');
like($log->(), qr/\[info\] [^\n]*sni=a\.test: TLS error from the client: [^\n]*\(while waiting for a request\)/,
     'logged at info as the client\'s TLS error');
my $reneg = $t->s_client(port => $p, servername => 'a.test', args => ['-tls1_2'],
                         input => "R\n", expect => qr/no renegotiation|DONE/, timeout => 5);
like($reneg, qr/alert no renegotiation/, 'a renegotiation attempt gets the no_renegotiation alert');
ok($t->wait_error_log(qr/TLS error from the client: no renegotiation/, 3), 'and is logged');

# --- the well-behaved client never noticed
$x = r('good');
cmp_ok($x->{n}, '>=', 5, "the good client completed exchanges meanwhile ($x->{n})");
is_deeply($x->{bad}, [], 'every one byte-exact');
unlike($log->(), qr/exited on signal/, 'no worker crashed');
is_deeply([$t->worker_pids], \@workers, 'same worker process');

$t->stop;
done_testing;
