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
my $p = $t->port;

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => { echo => { servers => ["127.0.0.1:$echo->{port}"] } },
    listeners => [ { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a', 'pt'],
                     client_hello_timeout_ms => 3000 } ],
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate',
               tls => { certificates => ['a'] },
               routes => [ { match => { path_prefix => '/' }, status => 200,
                             body => "fixed\n" } ] },
        pt => { server_names => ['pt.test'], mode => 'passthrough', upstream => 'echo' },
    },
});
$t->run or BAIL_OUT('hamlyn did not start');
my ($w) = $t->worker_pids;

my $driver = $t->dir . '/hygiene.py';
open my $fh, '>', $driver or die "$driver: $!";
print $fh <<'PY';
import socket, ssl, struct, sys, time
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

def get():
    ctx = ssl.create_default_context(cafile=ca)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                        server_hostname="a.test")
    s.sendall(b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        out += d
    return "ok" if out.endswith(b"\r\n\r\nfixed\n") else "bad %r" % out[:60]

res = {}
for _ in range(n):
    try:
        r = globals()[case]()
    except Exception as e:
        r = type(e).__name__
    res[r] = res.get(r, 0) + 1
print(" ".join("%s=%d" % kv for kv in sorted(res.items())))
PY
close $fh;

sub drive {
    my ($case, $n) = @_;
    my ($c, $out) = Hamlyn::Test::_capture(['python3', $driver, $p, "$certs/ca.pem",
                                            $case, $n], timeout => 60);
    chomp $out;
    return $out;
}
sub fds {
    opendir my $d, "/proc/$w/fd" or return ();
    return map { my $l = readlink("/proc/$w/fd/$_") // '?'; $l =~ s/\[\d+\]//; "$_:$l" }
           sort { $a <=> $b } grep { !/^\./ } readdir $d;
}
sub nfds { my @f = fds(); return scalar @f }
sub worker_ok {
    my ($what) = @_;
    my @now = $t->worker_pids;
    is("@now", $w, "$what: the worker is still the same process");
    unlike($t->error_log, qr/killed by signal/, "$what: no worker crash logged");
}

is(drive('get', 2), 'ok=2', 'a well-behaved client gets its response');
# (after the first stream: libuv opens its EMFILE reserve fd then)
my @fds0 = fds();
my $fds0 = @fds0;

# 1. A reset right after the client's last handshake message: writing the
# server's tickets fails inside the last handshake step, which reported the
# handshake twice (failed, then done): the HTTP layer took over a stream
# already closing and the worker crashed (SIGSEGV) in the close callback.
like(drive('hs_reset', 40), qr/^ok=40$/, '40 TLS 1.3 handshakes reset after the Finished');
worker_ok('handshake reset');
is(drive('get', 2), 'ok=2', 'handshake reset: a good client is served after it');

sleep 0.3;
is(nfds(), $fds0, "the worker's descriptors are back to $fds0")
    or diag("before: @fds0\nafter: @{[fds()]}");

$t->stop;
done_testing;
