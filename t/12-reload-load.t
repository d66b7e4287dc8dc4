#!/usr/bin/perl
# t/12-reload-load.t: CLI.md's promise under load: "No connection is
# refused and no in-flight request fails during reload, upgrade or the
# restart of a crashed worker".  Real TLS clients (Python ssl) keep
# opening connections, reusing keep-alive ones and relaying passthrough
# bytes while the master is signalled; every refusal, reset or missing
# answer is counted and must be zero.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IPC::Open2;
use JSON::PP;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

$SIG{PIPE} = 'IGNORE';
my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $dir = $t->dir;
my $be = $t->backend(mode => 'http') or BAIL_OUT('http backend did not start');
my $echo = $t->backend(mode => 'tls-echo') or BAIL_OUT('echo backend did not start');
my $p = $t->port;

sub conf {
    my (%o) = @_;
    return {
        certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
        upstreams => {
            be => { servers => ["127.0.0.1:$be->{port}"],
                    plaintext => { accepted_risk => 'test backend on loopback' } },
            echo => { servers => ["127.0.0.1:$echo->{port}"] },
        },
        listeners => [ { name => 'l', listen => ["127.0.0.1:$p"], sites => ['a', 'p'] } ],
        sites => {
            a => { server_names => ['a.test'], mode => 'terminate',
                   tls => { certificates => ['a'] },
                   routes => [ { match => { path_prefix => '/fixed' }, status => 200,
                                 body => $o{body} // "fixed\n" },
                               { match => { path_prefix => '/' }, upstream => 'be' } ] },
            p => { server_names => ['backend.test'], mode => 'passthrough',
                   upstream => 'echo' },
        },
        runtime => { workers => $o{workers} // 2, shutdown_timeout_s => 10 },
    };
}

$t->write_conf(conf());
$t->run or BAIL_OUT('hamlyn did not start');

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->() ? 1 : 0;
}

# ---- downloads whose tail is still queued in the worker at the reload ----
# A client with a small receive window asks for bodies of 2.4 to 3.8 MB and
# reads nothing yet: for some of them the worker has read the whole body
# from the backend (the request is logged, the connection is between
# requests) while the tail still waits in its output queue.  The old
# worker used to close such "idle" connections at once, dropping that
# tail; they must be flushed before the connection closes.
my $sweep = "$dir/sweep.py";
open my $fh, '>', $sweep or die;
print $fh <<'PY';
import json, socket, ssl, sys, threading
port, ca = int(sys.argv[1]), sys.argv[2]
sizes = [2400000 + i * 160000 for i in range(10)]
ctx = ssl.create_default_context(cafile=ca)
conns = []
for n in sizes:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    ss = ctx.wrap_socket(s, server_hostname="a.test")
    ss.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % n)
    conns.append((n, ss))
print("READY", flush=True)
sys.stdin.readline()
res = {}
def rd(n, ss):
    buf = b""
    got = 0
    try:
        while b"\r\n\r\n" not in buf:
            d = ss.recv(65536)
            if not d:
                res[n] = "EOF in the head"
                return
            buf += d
        got = len(buf.partition(b"\r\n\r\n")[2])
        while got < n:
            d = ss.recv(65536)
            if not d:
                break
            got += len(d)
        res[n] = got
    except Exception as e:
        res[n] = "%s after %d bytes" % (type(e).__name__, got)
ts = [threading.Thread(target=rd, args=c) for c in conns]
for t in ts: t.start()
for t in ts: t.join()
bad = dict((n, v) for n, v in res.items() if v != n)
print(json.dumps({"ok": len(res) - len(bad), "bad": bad}), flush=True)
PY
close $fh;
{
    my $h = $t->held_python($sweep, $p, "$certs/ca.pem");
    ok($h->{ready}, 'downloads: 10 requests sent, nothing read yet') or diag($h->{first});
    sleep 1.5;
    ok($t->signal('HUP'), 'downloads: HUP');
    ok($t->wait_error_log(qr/configuration reloaded/), 'downloads: reloaded');
    sleep 1.5;                      # past the old worker's keep-alive grace
    my $r = $t->release_held($h);
    is($r->{ok}, 10, 'downloads: every body arrived whole across the reload')
        or diag(explain($r));
}

# ---- the load client -------------------------------------------------------
# load.py PORT CA SECONDS NEW KA PT: NEW threads open a TLS connection per
# request, KA threads reuse keep-alive connections (a 20 ms pause between
# requests; a "Connection: close" answer means a new connection), PT
# threads relay a line through the passthrough site.  Prints STARTED, then
# the counts as JSON.
my $load = "$dir/load.py";
open $fh, '>', $load or die;
print $fh <<'PY';
import json, socket, ssl, sys, threading, time
port, ca, secs = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
nnew, nka, npt = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ctx = ssl.create_default_context(cafile=ca)
lock = threading.Lock()
res = {"ok": 0, "refused": 0, "failed": 0, "reconnects": 0, "errors": []}
t0 = time.time()
def count(k, err=None):
    with lock:
        res[k] += 1
        if err is not None and len(res["errors"]) < 8:
            res["errors"].append("%.2fs %s: %s" % (time.time() - t0, k, err))
def connect(name):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s, server_hostname=name)
def response(ss):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = ss.recv(65536)
        if not d:
            raise EOFError("EOF after %d bytes of the head" % len(buf))
        buf += d
    h, _, body = buf.partition(b"\r\n\r\n")
    cl = close = 0
    for l in h.split(b"\r\n")[1:]:
        n, _, v = l.partition(b":")
        if n.strip().lower() == b"content-length":
            cl = int(v)
        if n.strip().lower() == b"connection" and b"close" in v.lower():
            close = 1
    while len(body) < cl:
        d = ss.recv(65536)
        if not d:
            raise EOFError("EOF in the body")
        body += d
    if not h.startswith(b"HTTP/1.1 200 ") or body != b"fixed\n":
        raise ValueError("unexpected answer %r" % h[:40])
    return close
def run(fn):
    while time.time() - t0 < secs:
        try:
            fn()
        except ConnectionRefusedError as e:
            count("refused", e)
        except Exception as e:
            count("failed", "%s: %s" % (type(e).__name__, e))
REQ = b"GET /fixed HTTP/1.1\r\nHost: a.test\r\n\r\n"
def new():
    ss = connect("a.test")
    try:
        ss.sendall(REQ)
        response(ss)
        count("ok")
    finally:
        ss.close()
def ka():
    ss = connect("a.test")
    try:
        while time.time() - t0 < secs:
            ss.sendall(REQ)
            close = response(ss)
            count("ok")
            if close:
                count("reconnects")
                return
            time.sleep(0.02)
    finally:
        ss.close()
def pt():
    ss = connect("backend.test")
    try:
        f = ss.makefile("rb")
        if not f.readline().startswith(b"backend="):
            raise ValueError("no banner")
        ss.sendall(b"ping\n")
        if f.readline() != b"ping\n":
            raise ValueError("no echo")
        count("ok")
    finally:
        ss.close()
ts = [threading.Thread(target=run, args=(fn,), daemon=True)
      for fn, n in ((new, nnew), (ka, nka), (pt, npt)) for i in range(n)]
for t in ts: t.start()
print("STARTED", flush=True)
for t in ts: t.join(secs + 30)
print(json.dumps(res), flush=True)
PY
close $fh;

# Runs the load for $secs seconds while $during->() signals; returns the
# decoded counts.
sub under_load {
    my ($secs, $during, @threads) = @_;
    my $pid = open2(my $out, my $in, 'python3', $load, $p, "$certs/ca.pem", $secs,
                    @threads ? @threads : (2, 2, 1));
    my $l = <$out> // '';
    sleep 0.3;
    $during->();
    my $r = <$out> // '{}';
    waitpid($pid, 0);
    return eval { decode_json($r) } // { failed => -1, errors => [$r] };
}

# ---- keep-alive, new and passthrough connections across three reloads ----
{
    my $hups = 0;
    my $r = under_load(3.5, sub {
        for (1 .. 3) {
            $hups++ if $t->signal('HUP');
            sleep 0.8;
        }
    });
    is($hups, 3, 'HUP x3 under load');
    ok($r->{ok} > 50, "HUP x3: $r->{ok} answers");
    is($r->{refused}, 0, 'HUP x3: no connection refused');
    is($r->{failed}, 0, 'HUP x3: no request failed (keep-alive clients between '
       . 'requests get their next answer, with Connection: close)')
        or diag(explain($r->{errors}));
    ok($r->{reconnects} >= 2, 'HUP x3: keep-alive clients were told to reconnect')
        or diag(explain($r));
}

# ---- connections waiting in the accept queues ------------------------------
# queued.py PORT CA N: opens N TCP connections (the kernel completes them
# even while no worker accepts), prints READY, then runs a TLS handshake
# and one request on each (8 s at most) and prints the counts.
my $queued = "$dir/queued.py";
open $fh, '>', $queued or die;
print $fh <<'PY';
import json, socket, ssl, sys, threading
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
socks = [socket.create_connection(("127.0.0.1", port), timeout=8) for i in range(n)]
print("READY", flush=True)
res = {"ok": 0, "failed": 0, "errors": []}
lock = threading.Lock()
def one(s):
    try:
        ss = ctx.wrap_socket(s, server_hostname="a.test")
        ss.sendall(b"GET /fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            d = ss.recv(4096)
            if not d:
                break
            buf += d
        if not buf.startswith(b"HTTP/1.1 200 ") or not buf.endswith(b"fixed\n"):
            raise ValueError("answer %r" % buf[:40])
        with lock:
            res["ok"] += 1
    except Exception as e:
        with lock:
            res["failed"] += 1
            res["errors"].append("%s: %s" % (type(e).__name__, e))
ts = [threading.Thread(target=one, args=(s,)) for s in socks]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(res), flush=True)
PY
close $fh;

# Starts queued.py and returns (pid, stdout) once its connections are open.
sub queue_clients {
    my ($n) = @_;
    my $pid = open2(my $out, my $in, 'python3', $queued, $p, "$certs/ca.pem", $n);
    my $l = <$out> // '';
    like($l, qr/READY/, "$n connections opened");
    return ($pid, $out);
}

sub queue_result {
    my ($pid, $out) = @_;
    my $r = <$out> // '{}';
    waitpid($pid, 0);
    return eval { decode_json($r) } // { ok => -1, errors => [$r] };
}

# A worker that stops accepting (SIGSTOP) and is then killed: the
# connections queued on its sockets are served by its successor (the
# master holds every listening socket).
{
    my @w = sort { $a <=> $b } $t->worker_pids;
    is(scalar @w, 2, 'crash: two workers');
    kill 'STOP', @w;
    my ($pid, $out) = queue_clients(12);
    sleep 0.3;
    kill 'KILL', @w;
    ok(wait_for(sub { my @n = $t->worker_pids; @n == 2 && !grep { my $x = $_; grep { $_ == $x } @w } @n }, 5),
       'crash: both workers restarted');
    my $r = queue_result($pid, $out);
    is($r->{ok}, 12, 'crash: every queued connection was answered by the new workers')
        or diag(explain($r));
    ok($t->wait_error_log(qr/worker $w[0] \(slot \d\) was killed by signal 9/),
       'crash: the death is logged');
}

# A reload to fewer workers (3, then 1) while every worker is stopped: the
# sockets of the slots that go away are not closed (closing a listening
# socket resets its queue); the one new worker serves what was queued on
# all of them, even after the old workers are killed instead of draining.
{
    $t->write_conf(conf(workers => 3));
    $t->signal('HUP');
    ok($t->wait_error_log(qr/configuration reloaded: 3 workers/), 'fewer workers: reloaded to 3');
    sleep 0.5;
    ok(wait_for(sub { my @n = $t->worker_pids; @n == 3 }, 10), 'fewer workers: 3 workers first');
    my @old = $t->worker_pids;
    kill 'STOP', @old;
    my ($pid, $out) = queue_clients(12);
    $t->write_conf(conf(workers => 1));
    $t->signal('HUP');
    ok($t->wait_error_log(qr/configuration reloaded: 1 worker, /), 'fewer workers: reloaded to 1');
    sleep 0.5;
    kill 'KILL', @old;
    my $r = queue_result($pid, $out);
    is($r->{ok}, 12, 'fewer workers: every connection queued before the reload was answered')
        or diag(explain($r));
    my $r2 = under_load(1, sub { }, 2, 0, 0);
    ok($r2->{ok} > 10 && !$r2->{failed} && !$r2->{refused}, 'fewer workers: serving on')
        or diag(explain($r2));
}

# ---- binary upgrade under load, then a reload of the new master ------------
{
    my $pf = "$dir/hamlyn.pid";
    my $m = $t->master_pid;
    my $n;
    my $r = under_load(3, sub {
        $t->signal('USR2');
        wait_for(sub { ($n = $t->master_pid) && $n != $m }, 10);
    });
    ok($n && $n != $m, 'upgrade: a new master took over the pid file');
    is($r->{refused}, 0, 'upgrade: no connection refused');
    is($r->{failed}, 0, 'upgrade: no request failed') or diag(explain($r->{errors}));
    ok($r->{ok} > 50, "upgrade: $r->{ok} answers");
    my $st;
    ok(wait_for(sub { waitpid($m, WNOHANG) == $m and defined($st = $?) }, 10),
       'upgrade: the old master is gone');
    is($st, 0, 'upgrade: ... with exit status 0');
    $t->write_conf(conf(workers => 1, body => "new body\n"));
    my @gen = $t->worker_pids;
    my ($rc, $out) = $t->hamlyn('-s', 'reload', '-c', $t->conf_path);
    is($rc, 0, 'upgrade: -s reload reaches the new master') or diag($out);
    ok($t->wait_error_log(qr/\[info\] $n: configuration reloaded: 1 worker/),
       'upgrade: the new master reloaded');
    # Until it has read its QUIT, an old worker may still accept one more
    # connection (as nginx's do): ask once the old generation is gone.
    ok(@gen && $t->wait_error_log(qr/old worker $gen[0] exited/),
       'upgrade: the old worker of the new master drained and exited');
    my ($code, $body) = $t->curl('--resolve', "a.test:$p:127.0.0.1", '--cacert',
                                 "$certs/ca.pem", "https://a.test:$p/fixed");
    is($body, "new body\n", 'upgrade: the new master serves the reloaded configuration');
}

# ---- what a reload changes, as a client sees it ----------------------------
# The certificate file replaced in place (same path), a new site on a new
# listen address, a route's status, the log paths; then the address goes
# away again.
sub fingerprint {
    my ($port, $sni) = @_;
    my $out = `echo | openssl s_client -connect 127.0.0.1:$port -servername $sni 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null`;
    return $out =~ /=(\S+)/ ? $1 : '';
}
{
    system('cp', "$certs/a.test.pem", "$dir/cur.pem") == 0 or die;
    system('cp', "$certs/a.test.key", "$dir/cur.key") == 0 or die;
    my $c = conf(workers => 1);
    $c->{certificates}{a} = { cert => "$dir/cur.pem", key => "$dir/cur.key" };
    $t->write_conf($c);
    my $n = () = $t->error_log =~ /configuration reloaded/g;
    $t->signal('HUP');
    ok(wait_for(sub { (() = $t->error_log =~ /configuration reloaded/g) > $n }, 5),
       'reload: the certificate moved to cur.pem');
    my $ecdsa = fingerprint($p, 'a.test');
    ok($ecdsa, "reload: a certificate is served ($ecdsa)");
    system('cp', "$certs/a.test-rsa.pem", "$dir/cur.pem") == 0 or die;
    system('cp', "$certs/a.test-rsa.key", "$dir/cur.key") == 0 or die;
    my $p2 = $t->port;
    push @{ $c->{listeners}[0]{listen} }, "127.0.0.1:$p2";
    $c->{certificates}{b} = { cert => "$certs/b.test.pem", key => "$certs/b.test.key" };
    $c->{sites}{b} = { server_names => ['b.test'], mode => 'terminate',
                       tls => { certificates => ['b'] },
                       routes => [ { match => { path_prefix => '/' }, status => 418,
                                     body => "tea\n" } ] };
    push @{ $c->{listeners}[0]{sites} }, 'b';
    $c->{sites}{a}{routes}[0]{status} = 503;
    $c->{runtime}{error_log} = { path => "$dir/error2.log", level => 'info' };
    $c->{runtime}{access_log} = { path => "$dir/access2.log" };
    $t->write_conf($c);
    my ($rc, $out) = $t->hamlyn('-s', 'reload', '-c', $t->conf_path);
    is($rc, 0, 'reload: -s reload exits 0') or diag($out);
    ok(wait_for(sub { -s "$dir/error2.log" && Hamlyn::Test::_slurp("$dir/error2.log") =~ /configuration reloaded/ }, 5),
       'reload: the new error log gets the master\'s lines');
    my $rsa = fingerprint($p, 'a.test');
    ok($rsa && $rsa ne $ecdsa, 'reload: the certificate file replaced in place is served');
    for my $port ($p, $p2) {
        my ($code, $body) = $t->curl('--resolve', "b.test:$port:127.0.0.1", '--cacert',
                                     "$certs/ca.pem", "https://b.test:$port/");
        is("$code $body", "418 tea\n", "reload: the new site answers on :$port");
        ($code) = $t->curl('--resolve', "a.test:$port:127.0.0.1", '--cacert',
                           "$certs/ca.pem", "https://a.test:$port/fixed");
        is($code, 503, "reload: the changed route status on :$port");
    }
    ok(wait_for(sub { my $l = Hamlyn::Test::_slurp("$dir/access2.log"); ($l =~ tr/\n//) >= 4 }, 5),
       'reload: the workers log requests to the new access log');

    # USR1 after a logrotate-style rename: the master and the workers
    # write to new files (a worker's own error line: a bad request).
    rename "$dir/error2.log", "$dir/error2.log.1" or die;
    rename "$dir/access2.log", "$dir/access2.log.1" or die;
    ($rc, $out) = $t->hamlyn('-s', 'reopen', '-c', $t->conf_path);
    is($rc, 0, 'reopen: -s reopen exits 0') or diag($out);
    ok(wait_for(sub { Hamlyn::Test::_slurp("$dir/error2.log") =~ /log files reopened/ }, 5),
       'reopen: the master writes to the new error log');
    my $w = ($t->worker_pids)[0];
    my $raw = $t->raw_tls("GET /fixed HTTP/1.1\r\nHost: a.test\r\nBad header\r\n\r\n",
                          port => $p, sni => 'a.test');
    like($raw // '', qr/^HTTP\/1\.1 400 /, 'reopen: a bad request gets 400');
    ok(wait_for(sub { Hamlyn::Test::_slurp("$dir/error2.log") =~ /\[info\] $w#c\d+ .*invalid request/ }, 5),
       'reopen: the worker writes to the new error log');
    ok(wait_for(sub { Hamlyn::Test::_slurp("$dir/access2.log") =~ /"status":400/ }, 5),
       'reopen: the worker writes to the new access log');
    unlike(Hamlyn::Test::_slurp("$dir/error2.log.1"), qr/invalid request/,
           'reopen: nothing more in the renamed error log');

    delete $c->{runtime}{error_log};
    delete $c->{runtime}{access_log};
    pop @{ $c->{listeners}[0]{listen} };
    $t->write_conf($c);
    $t->signal('HUP');
    ok(wait_for(sub { !IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p2", Timeout => 1) }, 10),
       'reload: the removed address is closed');
    my ($code) = $t->curl('--resolve', "a.test:$p:127.0.0.1", '--cacert',
                          "$certs/ca.pem", "https://a.test:$p/fixed");
    is($code, 503, 'reload: the remaining address serves');
}

# ---- roll-back of an upgrade leaves nothing behind ----------------------------
# The binary at the master's path is a copy; replaced by a script that
# starts a background child (which inherits the listening sockets) and
# exits 1.  The old master keeps serving and kills the child too: a
# leftover holding the sockets kept the port accepting after the master
# stopped (connections queued for nobody) and held it against a restart.
{
    my $u = Hamlyn::Test->new(name => '12-reload-load-rollback');
    my $ud = $u->dir;
    my $up = $u->port;
    mkdir "$ud/bin" or die;
    system('cp', $t->top . '/hamlyn', "$ud/bin/hamlyn") == 0 or die;
    local $ENV{HAMLYN_BIN} = "$ud/bin/hamlyn";
    my $uconf = sub {
        return {
            certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
            listeners => [ { name => 'l', listen => ["127.0.0.1:$up"], sites => ['a'] } ],
            sites => { a => { server_names => ['a.test'], mode => 'terminate',
                              tls => { certificates => ['a'] },
                              routes => [ { match => { path_prefix => '/' }, status => 200,
                                            body => "ok\n" } ] } },
            runtime => { workers => $_[0], shutdown_timeout_s => 2 },
        };
    };
    $u->write_conf($uconf->(2));
    $u->run or BAIL_OUT('hamlyn (copy) did not start');
    my $m = $u->master_pid;
    open my $sh, '>', "$ud/bin/new" or die;
    print $sh "#!/bin/sh\nsleep 30 &\necho \$! > $ud/child.pid\nexit 1\n";
    close $sh;
    chmod 0755, "$ud/bin/new";
    rename "$ud/bin/new", "$ud/bin/hamlyn" or die;
    $u->signal('USR2');
    ok($u->wait_error_log(qr/binary upgrade failed: new master \d+ exited with status 1 before it was ready/),
       'roll-back: logged with the reason');
    my $child = Hamlyn::Test::_slurp("$ud/child.pid") =~ /(\d+)/ ? $1 : 0;
    ok($child, "roll-back: the script started a child ($child)");
    ok(wait_for(sub { !kill(0, $child) }, 5), 'roll-back: the child was killed with the new master');
    is($u->master_pid, $m, 'roll-back: the pid file names the old master');
    my ($code, $body) = $u->curl('--resolve', "a.test:$up:127.0.0.1", '--cacert',
                                 "$certs/ca.pem", "https://a.test:$up/");
    is($body, "ok\n", 'roll-back: the old master serves');

    # A new binary whose master starts but whose workers cannot (the real
    # binary with epoll_create1() failing, through LD_PRELOAD): the new
    # master reported ready as soon as it had forked them, the old master
    # left, and nothing served.  Now "ready" waits until every worker
    # accepts; a worker dying first fails the start, and the old master
    # keeps serving.
    my $shim = "$ud/noepoll.so";
    open my $c, '>', "$ud/noepoll.c" or die;
    print $c "#include <errno.h>\nint epoll_create1(int f) { (void) f; errno = EMFILE; return -1; }\n";
    close $c;
    is(system('cc', '-shared', '-fPIC', '-o', $shim, "$ud/noepoll.c"), 0, 'a shim without epoll built');
    system('cp', $t->top . '/hamlyn', "$ud/bin/real") == 0 or die;
    open $sh, '>', "$ud/bin/new" or die;
    print $sh "#!/bin/sh\nLD_PRELOAD=$shim exec $ud/bin/real \"\$@\"\n";
    close $sh;
    chmod 0755, "$ud/bin/new";
    rename "$ud/bin/new", "$ud/bin/hamlyn" or die;
    # ... with a configuration of 1 worker: the new master has already
    # steered the shared sockets' new connections to its one worker's
    # socket when it fails; the old master steers them back over its 2.
    $u->write_conf($uconf->(1));
    my $before = () = $u->error_log =~ /binary upgrade failed/g;
    $u->signal('USR2');
    ok(wait_for(sub { (() = $u->error_log =~ /binary upgrade failed/g) > $before }, 10),
       'workers that cannot start: the upgrade is rolled back');
    like($u->error_log, qr/worker \d+ \(slot 0\) exited with status 2 before it was accepting; stopping/,
         'workers that cannot start: the new master says why');
    is($u->master_pid, $m, 'workers that cannot start: the pid file names the old master');
    ($code, $body) = $u->curl('--resolve', "a.test:$up:127.0.0.1", '--cacert',
                              "$certs/ca.pem", "https://a.test:$up/");
    is($body, "ok\n", 'workers that cannot start: the old master serves');
    my $nlog = scalar @{ $u->access_log };
    my $res = `python3 -c '
import socket, ssl
ctx = ssl.create_default_context(cafile="$certs/ca.pem")
for i in range(40):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", $up), timeout=5), server_hostname="a.test")
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: a.test\\r\\nConnection: close\\r\\n\\r\\n")
    while s.recv(4096):
        pass
    s.close()
print("done")'`;
    like($res, qr/done/, 'workers that cannot start: 40 more requests');
    my $lines = $u->wait_access_log($nlog + 40, 5);
    my %pids = map { $_->{pid} => 1 } @{$lines}[$nlog .. $#$lines];
    is(scalar(keys %pids), 2, 'workers that cannot start: both old workers get new connections again')
        or diag(explain(\%pids));
    $u->signal('QUIT');
    is($u->wait_exit(10), 0, 'roll-back: QUIT exits 0');
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$up", Timeout => 2);
    ok(!$s, 'roll-back: the port is closed after the stop (no process holds it)');
    kill 'KILL', $child if $child && kill(0, $child);

    # The same for -d: the starting process exits 1 when the daemon's
    # workers cannot start (it said 0 once the workers were forked).
    {
        local $ENV{LD_PRELOAD} = $shim;
        my ($rc, $out) = $u->hamlyn('-d', '-c', $u->conf_path);
        is($rc, 1, '-d with workers that cannot start: exit 1') or diag($out);
        like($out, qr/the daemon did not start/, '-d: ... and says so');
    }
    ok(!-e "$ud/hamlyn.pid" || !kill(0, Hamlyn::Test::_slurp("$ud/hamlyn.pid") =~ /(\d+)/ ? $1 : 0),
       '-d: no daemon left running');
}

done_testing;
