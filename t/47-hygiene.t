#!/usr/bin/perl
# 47-hygiene.t: resource hygiene and isolation under misbehaving clients
# (regression tests of the leak audit).  Each case runs a burst of real
# connections of one fate with a Python driver (below) and then checks
# that the worker survived (same pid, no "killed by signal" in the error
# log), that its file descriptors are back to what they were, and that a
# well-behaved client still gets its exact bytes.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use Time::HiRes qw(sleep time);

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $echo = $t->backend(mode => 'tls-echo', cert => 'backend.test')
    or BAIL_OUT('backend did not start');
my $http = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my ($p, $rawp, $pa, $wsp) = ($t->port, $t->port, $t->port, $t->port);

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => { echo => { servers => ["127.0.0.1:$echo->{port}"] },
                   # a plain TCP echo run by the driver (case early_data)
                   raw => { servers => ["127.0.0.1:$rawp"] },
                   be => { servers => ["127.0.0.1:$http->{port}"],
                           plaintext => { accepted_risk => 'test backend on loopback' },
                           max_fails => 1, fail_timeout_s => 60,
                           pool => { max_idle_per_worker => 0 },
                           health_check => { interval_s => 1, path => '/health',
                                             fail_after => 1 } },
                   # an upgrade server run by the driver (case ws_rst)
                   ws => { servers => ["127.0.0.1:$wsp"],
                           plaintext => { accepted_risk => 'test backend on loopback' } },
    },
    admin => { listen => "127.0.0.1:$pa" },
    listeners => [ { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a', 'pt', 'raw'],
                     client_hello_timeout_ms => 3000 } ],
    # under 1024: no TCP_DEFER_ACCEPT, a connection is accepted (and
    # watched) before its first bytes arrive
    runtime => { max_connections => 1000 },
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate',
               tls => { certificates => ['a'] },
               routes => [ { match => { path_prefix => '/slow' }, upstream => 'be' },
                           { match => { path_prefix => '/wsstay' }, upstream => 'ws' },
                           { match => { path_prefix => '/' }, status => 200,
                             body => "fixed\n" } ] },
        pt => { server_names => ['pt.test'], mode => 'passthrough', upstream => 'echo' },
        raw => { server_names => ['raw.test'], mode => 'passthrough', upstream => 'raw',
                 limits => { idle_timeout_ms => 1000 } },
    },
});
$t->run or BAIL_OUT('hamlyn did not start');
my ($w) = $t->worker_pids;

my $driver = $t->dir . '/hygiene.py';
open my $fh, '>', $driver or die "$driver: $!";
print $fh <<'PY';
import socket, ssl, struct, sys, time
import threading
port, ca, case, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])

def rst(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()

def hs_reset():
    # A TLS 1.3 handshake driven by hand: the client's Finished (and a
    # request) go out, and the connection is reset at once, before the
    # server's session tickets can be written.
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(i, o, server_hostname="a.test")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            d = o.read()
            if d:
                s.sendall(d)
            r = s.recv(65536)
            if not r:
                return "eof"
            i.write(r)
    fin = o.read()
    obj.write(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    s.sendall(fin + o.read())
    rst(s)
    return "ok"

def hello(sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(i, o, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return o.read()

def part_fin():
    # part of a ClientHello, then the FIN: the hello can never complete
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(hello("pt.test")[:20])
    s.shutdown(socket.SHUT_WR)
    t0 = time.time()
    while s.recv(4096):
        pass
    return "ok" if time.time() - t0 < 1 else "slow"

def part_rst():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(hello("pt.test")[:20])
    rst(s)
    return "ok"

def echo_server(lport):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", lport))
    ls.listen(128)
    def serve(c):
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
        c.close()
    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def early_data():
    # a ClientHello and 200 KB behind it in one write (as with early data)
    data = hello("raw.test") + bytes(range(256)) * 800
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
    got = b""
    while len(got) < len(data):
        d = s.recv(65536)
        if not d:
            break
        got += d
    s.close()
    return "ok" if got == data else "short(%d)" % len(got)

def req_rst():
    # a complete request, then a reset while the upstream takes its time
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test")
    s.sendall(b"GET /slow?ms=2500 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    time.sleep(0.05)
    rst(s)
    return "ok"

def ws_server(lport):
    # answers an upgrade with 101, then reads to the end of input and
    # keeps the connection open (a server that never closes on a FIN)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", lport))
    ls.listen(16)
    held = []
    def serve(c):
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(4096)
            if not d:
                return
            head += d
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\n\r\n")
        held.append(c)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
    def loop():
        while True:
            c, _ = ls.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

def ws_rst():
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test")
    s.sendall(b"GET /wsstay HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d:
            return "eof"
        head += d
    if not head.startswith(b"HTTP/1.1 101"):
        return "status %r" % head[:12]
    s.sendall(b"hi")
    time.sleep(0.01)
    rst(s)
    return "ok"

def read_all(s):
    # everything the server sends until it closes
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            return out
        out += d

def status(out):
    return out.split(b" ")[1].decode() if out.startswith(b"HTTP/1.1 ") else "bad"

def get_up():
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=8),
                        server_hostname="a.test")
    s.sendall(b"GET /slow?ms=1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    return status(read_all(s))

def admin_get():
    s = socket.create_connection(("127.0.0.1", port), timeout=8)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    return status(read_all(s))

def get():
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test")
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    out = read_all(s)
    return "ok" if out.endswith(b"\r\n\r\nfixed\n") else "bad %r" % out[:60]

res = {}
lock = threading.Lock()
def one():
    try:
        r = globals()[case]()
    except Exception as e:
        r = type(e).__name__
    with lock:
        res[r] = res.get(r, 0) + 1
if case == "ws_rst":
    ws_server(int(sys.argv[5]))
    for _ in range(n):
        one()
    print(" ".join("%s=%d" % kv for kv in sorted(res.items())), flush=True)
    time.sleep(3)               # the upstream side stays open meanwhile
    sys.exit(0)
if case == "early_data":
    echo_server(int(sys.argv[5]))
    ths = [threading.Thread(target=one) for _ in range(n)]
    [t.start() for t in ths]
    [t.join() for t in ths]
else:
    for _ in range(n):
        one()
print(" ".join("%s=%d" % kv for kv in sorted(res.items())))
PY
close $fh;

sub drive {
    my ($case, $n, @more) = @_;
    my ($c, $out) = Hamlyn::Test::_capture(['python3', $driver, $p, "$certs/ca.pem",
                                            $case, $n, @more], timeout => 60);
    chomp $out;
    return $out;
}
sub fds {
    opendir my $d, "/proc/$w/fd" or return ();
    return map { my $l = readlink("/proc/$w/fd/$_") // '?'; $l =~ s/\[\d+\]//; "$_:$l" }
           sort { $a <=> $b } grep { !/^\./ } readdir $d;
}
# Descriptors other than pipes (the passthrough relay keeps up to 256
# emptied pipes for reuse: pipes are checked against that bound).
sub nfds { my @f = grep { !/:pipe:$/ } fds(); return scalar @f }
sub npipes { my @f = grep { /:pipe:$/ } fds(); return scalar @f }
sub worker_ok {
    my ($what) = @_;
    my @now = $t->worker_pids;
    is("@now", $w, "$what: the worker is still the same process");
    unlike($t->error_log, qr/killed by signal/, "$what: no worker crash logged");
}

is(drive('get', 2), 'ok=2', 'a well-behaved client gets its response');
# (after the first stream: libuv opens its EMFILE reserve fd then)
my @fds0 = fds();
my $fds0 = nfds();
my $pipes0 = npipes();

# 1. A reset right after the client's last handshake message: writing the
# server's tickets fails inside the last handshake step, which reported the
# handshake twice (failed, then done): the HTTP layer took over a stream
# already closing and the worker crashed (SIGSEGV) in the close callback.
like(drive('hs_reset', 40), qr/^ok=40$/, '40 TLS 1.3 handshakes reset after the Finished');
worker_ok('handshake reset');
is(drive('get', 2), 'ok=2', 'handshake reset: a good client is served after it');

# 2. Part of a ClientHello and then the client's FIN or a reset, in one
# go: the short read was taken for "drained, wait for the next edge",
# which never came, so the connection (fd, buffers) stayed until
# client_hello_timeout_ms (3 s here) and was logged as "timeout".
is(drive('part_fin', 10), 'ok=10', 'part of a hello then FIN: closed at once, not at the timeout');
my $t0 = time;
is(drive('part_rst', 200), 'ok=200', '200 connections: part of a hello then a reset');
my @part;
for (1 .. 40) {     # the lines of the 210 connections with 20 bytes in
    @part = grep { ($_->{bytes_in} // 0) == 20 } @{ $t->access_log };
    last if @part >= 210;
    sleep 0.05;
}
is(scalar(grep { $_->{outcome} eq 'client_closed' } @part), 210,
   'all 210 logged as client_closed within 2 s (none left for the hello timeout)')
    or diag(join ' ', map { $_->{outcome} } @part[0 .. 4]);
cmp_ok(time - $t0, '<', 2.5, 'and all closed well within client_hello_timeout_ms');

# 3. Passthrough: a ClientHello with more bytes right behind it, read
# together into the full preread buffer.  The relay started with the
# client side marked "drained", so the bytes behind the first 4 KiB waited
# for an edge that never came: the transfer stalled until the idle timeout.
is(drive('early_data', 30, $rawp), 'ok=30',
   '30 passthrough clients sending 200 KB behind their hello get every byte back');

# 4. A reset after a complete request was taken for a half-close ("answer,
# then close"): the connection and its upstream leg stayed until the
# upstream answered (or connect_timeout_ms, read_timeout_ms), and the
# answer was "sent" to nobody (logged 200, outcome aborted).
$t0 = time;
is(drive('req_rst', 10), 'ok=10', '10 clients reset while their request is at the upstream');
my @rst;
for (1 .. 30) {
    @rst = grep { ($_->{path} // '') =~ m{^/slow} } @{ $t->access_log };
    last if @rst >= 10;
    sleep 0.05;
}
is(scalar(grep { $_->{outcome} eq 'client_closed' && $_->{status} == 0 } @rst), 10,
   'each is closed at the reset (status 0, client_closed), not after the upstream answered')
    or diag(join ' ', map { "$_->{status}/$_->{outcome}/$_->{duration_ms}" } @rst[0 .. 2]);
cmp_ok(time - $t0, '<', 2, 'within 2 s (the upstream takes 2.5 s)');

# 5. An upgraded (WebSocket) connection reset by the client was taken for
# a half-close: FIN to the upstream, then waiting for it to close, which a
# server may never do: both sockets stayed until idle_timeout_ms (60 s).
{
    my $out = $t->dir . '/ws.out';
    my $pid = fork() // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', $out or die;
        exec 'python3', $driver, $p, "$certs/ca.pem", 'ws_rst', 5, $wsp or exit 1;
    }
    my @ws;
    for (1 .. 40) {
        @ws = grep { ($_->{path} // '') eq '/wsstay' } @{ $t->access_log };
        last if @ws >= 5;
        sleep 0.05;
    }
    is(scalar(grep { $_->{status} == 101 && $_->{outcome} eq 'client_closed' } @ws), 5,
       '5 upgraded connections reset by the client: closed at once (101, client_closed), '
       . 'not left to the upstream or the idle timeout');
    for (1 .. 20) { last if -s $out; sleep 0.05 }
    is(Hamlyn::Test::slurp($out), "ok=5\n", 'the driver saw five 101 answers');
    kill 'TERM', $pid;          # our driver, still holding the upstream side
    waitpid($pid, 0);
}

# 6. Out of descriptors (the worker's soft RLIMIT_NOFILE lowered with
# prlimit(1) so that no descriptor, then one, is free): a local shortage is
# not the server's failure.  The health check counted its failed socket()
# (fail_after 1: the healthy server went DOWN, then 503) and so did the
# request path (max_fails 1: ejected for fail_timeout_s); and the admin
# listener, level-triggered without a pause, spun on accept4() EMFILE with
# an error line each time (hundreds a second).
SKIP: {
    skip 'prlimit(1) not available', 6 unless system('prlimit --version >/dev/null 2>&1') == 0;
    sub limit_for_free {        # soft limit that leaves exactly $k numbers free
        my ($k) = @_;
        my %used = map { (split /:/)[0] => 1 } fds();
        my ($n, $free) = (0, 0);
        for (;; $n++) {
            next if $used{$n};
            last if $free == $k;
            $free++;
        }
        return $n;
    }
    sub bg {
        my ($out, @args) = @_;
        my $pid = fork() // die "fork: $!";
        if (!$pid) {
            open STDOUT, '>', $out or die;
            exec 'python3', $driver, @args or exit 1;
        }
        return $pid;
    }
    is(drive('get_up', 1), '200=1', 'the upstream route answers 200 first');
    my $hard = `prlimit --pid $w --nofile --raw --noheadings -o HARD`;
    $hard =~ s/\s+//g;
    my $el0 = length $t->error_log;
    system('prlimit', '--pid', $w, '--nofile=' . limit_for_free(0) . ":$hard");
    my $b1 = bg($t->dir . '/bg1.out', $p, "$certs/ca.pem", 'get_up', 1);
    my $b2 = bg($t->dir . '/bg2.out', $pa, "$certs/ca.pem", 'admin_get', 1);
    sleep 1.6;                  # a health check runs meanwhile
    system('prlimit', '--pid', $w, "--nofile=$hard:$hard");
    waitpid($_, 0) for $b1, $b2;
    is(Hamlyn::Test::slurp($t->dir . '/bg1.out'), "200=1\n",
       'a client that waited in the backlog through the shortage gets 200 (server not marked down)');
    is(Hamlyn::Test::slurp($t->dir . '/bg2.out'), "200=1\n", 'so does an admin client');
    my $el = substr($t->error_log, $el0);
    my $spins = () = $el =~ /admin: accept4\(\) failed/g;
    cmp_ok($spins, '<=', 25, "admin accept4() EMFILE: $spins log lines in 1.6 s (paused, no busy loop)");
    system('prlimit', '--pid', $w, '--nofile=' . limit_for_free(1) . ":$hard");
    my $r = drive('get_up', 1);
    system('prlimit', '--pid', $w, "--nofile=$hard:$hard");
    like($r, qr/^(?:502|200)=1$/, "one descriptor free: the client is accepted, its upstream socket() fails ($r)");
    is(drive('get_up', 2), '200=2', 'then the server is still in use (no passive ejection)');
}

for (1 .. 20) {     # a health check may be running
    last if nfds() == $fds0;
    sleep 0.1;
}
is(nfds(), $fds0, "the worker's descriptors (pipes aside) are back to $fds0")
    or diag("before: @fds0\nafter: @{[fds()]}");
cmp_ok(npipes(), '<=', $pipes0 + 2 * 256, 'pipes kept for reuse stay within 256');

$t->stop;
done_testing;
