#!/usr/bin/perl
# 31-tls-drain.t: graceful drain on the TLS side.  A client whose TLS
# handshake is in progress when the worker is told to finish (HUP reload,
# QUIT) must still complete the handshake and get its request served
# (with Connection: close), not an EOF.  The client is a Python ssl
# client over memory BIOs that stops half-way through the handshake
# (ClientHello sent, server flight received, Finished not yet sent) until
# told to go on.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use Time::HiRes qw(sleep time);
use JSON::PP;

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $dir = $t->dir;
my $p = $t->port;

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    listeners => [ { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a'] } ],
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate',
               tls => { certificates => ['a'], handshake_timeout_ms => 8000 },
               routes => [ { match => { path_prefix => '/' }, status => 200,
                             body => "site a\n" } ] },
    },
    runtime => { shutdown_timeout_s => 10 },
});

# The half-way client: prints "READY" once the server's first flight is
# in, waits for a line on stdin, then finishes the handshake, sends a
# request and prints one JSON line {ok, error, response}.
my $py = "$dir/halfway.py";
open my $fh, '>', $py or die;
print $fh <<'PY';
import json, socket, ssl, sys, time
host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname="a.test")
sock = socket.create_connection((host, port), timeout=10)
res = {"ok": False, "error": None, "response": ""}
def flush():
    d = out.read()
    if d:
        sock.sendall(d)
def feed():
    d = sock.recv(65536)
    if not d:
        raise EOFError("EOF from server")
    inc.write(d)
try:
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    flush()                      # the ClientHello
    feed()                       # the server's first flight (ServerHello...)
    print("READY", flush=True)
    sys.stdin.readline()         # hold the handshake until told
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            flush()
            feed()
    flush()
    obj.write(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
    flush()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            d = obj.read(65536)
            if not d:
                break
            res["response"] += d.decode("latin-1")
            continue
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            break
        try:
            feed()
        except EOFError:
            break
    res["ok"] = res["response"].startswith("HTTP/1.1 200")
except Exception as e:
    res["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(res), flush=True)
PY
close $fh;

sub halfway { return $t->held_python($py, '127.0.0.1', $p, "$certs/ca.pem") }
sub finish  { return $t->release_held($_[0]) }

$t->run or BAIL_OUT('hamlyn did not start');

# --- HUP (reload): the old worker drains while the handshake is held
{
    my $h = halfway();
    ok($h->{ready}, 'HUP: handshake held half-way') or diag($h->{first});
    my @old = $t->worker_pids;
    ok($t->signal('HUP'), 'HUP sent');
    # wait until the new worker is up, then a bit so the old one got QUIT
    my $deadline = time + 5;
    while (time < $deadline) {
        my @w = $t->worker_pids;
        last if grep { my $x = $_; !grep { $_ == $x } @old } @w;
        sleep 0.05;
    }
    sleep 0.5;
    my $r = finish($h);
    ok($r->{ok}, 'HUP: the handshake in progress completed and the request got a 200')
        or diag(explain($r));
    like($r->{response} // '', qr/\r\nConnection: close\r\n/i,
         'HUP: served with Connection: close by the draining worker');
    like($r->{response} // '', qr/site a\n\z/, 'HUP: the body arrived');
}

# --- QUIT: the same for a graceful stop
{
    sleep 0.5;
    my $h = halfway();
    ok($h->{ready}, 'QUIT: handshake held half-way') or diag($h->{first});
    ok($t->signal('QUIT'), 'QUIT sent');
    sleep 0.5;
    my $r = finish($h);
    ok($r->{ok}, 'QUIT: the handshake in progress completed and the request got a 200')
        or diag(explain($r));
    like($r->{response} // '', qr/\r\nConnection: close\r\n/i,
         'QUIT: served with Connection: close');
    my $code = $t->wait_exit(10);
    is($code, 0, 'QUIT: hamlyn exited cleanly after the connection finished');
}

unlike($t->error_log, qr/while during/, 'no "while during" in log actions');
done_testing;
