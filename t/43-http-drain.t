#!/usr/bin/perl
# t/43-http-drain.t: graceful drain on the HTTP side (CLI.md: no in-flight
# request fails during reload).  Clients opening a new TLS connection per
# request while the master reloads several times get every answer; a
# connection that finished its handshake but has not sent its request yet
# when the worker is told to quit still gets its request served (with
# Connection: close); a pipelined request queued behind a slow one when
# the reload arrives is answered too.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IPC::Open2;
use JSON::PP;
use Time::HiRes qw(sleep time);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $dir = $t->dir;
my $be = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my $p = $t->port;

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        be => { servers => ["127.0.0.1:$be->{port}"],
                plaintext => { accepted_risk => 'test backend on loopback' } },
    },
    listeners => [ { name => 'l', listen => ["127.0.0.1:$p"], sites => ['a'] } ],
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate',
               tls => { certificates => ['a'] },
               limits => { header_timeout_ms => 5000 },
               routes => [ { match => { path_prefix => '/fixed' }, status => 200,
                             body => "fixed\n" },
                           { match => { path_prefix => '/' }, upstream => 'be' } ] },
    },
    runtime => { shutdown_timeout_s => 10 },
});
$t->run or BAIL_OUT('hamlyn did not start');

# ---- load: new connection per request, 5 reloads -------------------------

my $load = "$dir/load.py";
open my $fh, '>', $load or die;
print $fh <<'PY';
import json, socket, ssl, sys, threading, time
port, ca, nthreads, per = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
lock = threading.Lock()
res = {"ok": 0, "fail": 0, "errors": []}
def one(i, k):
    path = "/fixed" if (i + k) % 2 else "/b/%d/%d" % (i, k)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    ss = ctx.wrap_socket(s, server_hostname="a.test")
    ss.sendall(("GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path).encode())
    buf = b""
    while True:
        d = ss.recv(65536)
        if not d:
            break
        buf += d
        h, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            cl = [l for l in h.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if cl and len(body) >= int(cl[0].split(b":")[1]):
                break
    ss.close()
    if not buf.startswith(b"HTTP/1.1 200 "):
        raise Exception("after handshake: %r" % buf[:60])
def worker(i):
    for k in range(per):
        try:
            one(i, k)
            with lock:
                res["ok"] += 1
        except Exception as e:
            with lock:
                res["fail"] += 1
                if len(res["errors"]) < 5:
                    res["errors"].append("%s: %s" % (type(e).__name__, e))
ts = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
for t in ts: t.start()
print("STARTED", flush=True)
for t in ts: t.join()
print(json.dumps(res), flush=True)
PY
close $fh;

{
    my ($out, $in);
    my $pid = open2($out, $in, 'python3', $load, $p, "$certs/ca.pem", 6, 50);
    my $l = <$out> // '';
    like($l, qr/STARTED/, 'load started');
    my $hups = 0;
    for (1 .. 5) {
        sleep 0.6;
        $hups++ if $t->signal('HUP');
    }
    my $r = <$out> // '{}';
    waitpid($pid, 0);
    my $j = eval { decode_json($r) } // { fail => -1, errors => [$r] };
    is($hups, 5, '5 HUPs sent during the load');
    is($j->{ok}, 300, '300 requests on new connections answered 200 across 5 reloads')
        or diag(explain($j));
    is($j->{fail}, 0, 'no request failed') or diag(explain($j->{errors}));
}

# ---- held client: handshake done, request not sent yet -------------------

my $held = "$dir/held.py";
open $fh, '>', $held or die;
print $fh <<'PY';
import json, socket, ssl, sys
port, ca, reqs = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
res = {"response": "", "error": None}
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    ss = ctx.wrap_socket(s, server_hostname="a.test")
    print("READY", flush=True)
    sys.stdin.readline()
    ss.sendall(reqs.replace("|", "\r\n").encode())
    while True:
        d = ss.recv(65536)
        if not d:
            break
        res["response"] += d.decode("latin-1")
except Exception as e:
    res["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(res), flush=True)
PY
close $fh;

sub held { return $t->held_python($held, $p, "$certs/ca.pem", $_[0]) }
sub go   { return $t->release_held($_[0]) }

# A keep-alive connection with two pipelined requests behind a slow one
# when the reload comes: all three answered, only the last one with
# Connection: close (the second must not announce it, or the third is lost).
{
    sleep 1;
    my $h = held('GET /slow?ms=1000 HTTP/1.1|Host: a.test||GET /fixed HTTP/1.1|Host: a.test||'
                 . 'GET /fixed HTTP/1.1|Host: a.test||');
    ok($h->{ready}, 'pipelined: handshake done');
    print { $h->{in} } "go\n";
    sleep 0.3;
    ok($t->signal('HUP'), 'HUP while the slow request is in flight');
    close $h->{in};
    my $l = readline($h->{out}) // '{}';
    waitpid($h->{pid}, 0);
    my $r = eval { decode_json($l) } // {};
    my @st = ($r->{response} // '') =~ m{HTTP/1\.1 (\d{3}) }g;
    is_deeply(\@st, [200, 200, 200], 'pipelined: all three requests answered during the reload')
        or diag(explain($r));
    like($r->{response} // '', qr/fixed\n\z/, 'pipelined: the last answer is complete');
    like($r->{response} // '', qr/\r\nConnection: close\r\n(?:(?!HTTP\/1\.1).)*\z/s,
         'pipelined: the last answer says Connection: close');
    my @closes = ($r->{response} // '') =~ /\r\nConnection: close\r\n/g;
    is(scalar @closes, 1, 'pipelined: only the last answer says Connection: close');
}

# HUP, then QUIT: a connection handshaken before the signal, request after.
for my $sig ('HUP', 'QUIT') {
    sleep 1;
    my $h = held('GET /fixed HTTP/1.1|Host: a.test||');
    ok($h->{ready}, "$sig: handshake done, request held");
    ok($t->signal($sig), "$sig sent");
    sleep 0.5;
    my $r = go($h);
    like($r->{response} // '', qr{\AHTTP/1\.1 200 }, "$sig: the held request got its 200")
        or diag(explain($r));
    like($r->{response} // '', qr/\r\nConnection: close\r\n/i, "$sig: with Connection: close");
    like($r->{response} // '', qr/fixed\n\z/, "$sig: body complete");
}
is($t->wait_exit(10), 0, 'QUIT: exited 0 once the held connection was served');
done_testing;
