#!/usr/bin/perl
# 20-passthrough.t: TLS passthrough by SNI (issue 2).  The real ./hamlyn
# reads the ClientHello, routes by server name (exact, "*." wildcard,
# default site, refusal) and splices the client's own TLS session to real
# TLS backends (t/lib/hm_backend.py), which identify themselves.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;

my $be_a    = $t->backend(mode => 'tls-echo', cert => 'a.test',      name => 'A');
my $be_wild = $t->backend(mode => 'tls-echo', cert => 'wild.test',   name => 'WILD');
my $be_ex   = $t->backend(mode => 'tls-echo', cert => 'wild.test',   name => 'EXACT');
my $be_def  = $t->backend(mode => 'tls-echo', cert => 'default.test', name => 'DEF');
my $be_mtls = $t->backend(mode => 'tls-echo', cert => 'b.test', client_ca => 1, name => 'MTLS');
my $be_pp   = $t->backend(mode => 'tls-echo', cert => 'backend.test', proxy_protocol => 1,
                          name => 'PP');
my $be_sink = $t->backend(mode => 'sink', cert => 'backend.test', send_bytes => 20 << 20,
                          name => 'SINK');

my $p  = $t->port;     # listener with a default site
my $p2 = $t->port;     # listener without: unknown names are refused
my $p6 = $t->port;     # IPv6 loopback
my $has6 = IO::Socket::INET->can('new') && -e '/proc/net/if_inet6';
my $dead = $t->port;   # nobody listens here

# A listener whose accept queue is full: SYNs to it are dropped, so a
# connect() to it never completes (an unreachable upstream, on loopback).
my $bh = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1,
                               ReuseAddr => 1) or die "listen: $!";
my $blackhole = $bh->sockport;
my @fill = map { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$blackhole", Blocking => 0) }
           1 .. 4;

# A plain TCP backend (one connection): reads until EOF, then answers
# "got N" (the bytes it received) and closes.
my $plain = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 4,
                                  ReuseAddr => 1) or die "listen: $!";
my $plain_port = $plain->sockport;
my $plain_pid = fork // die;
if ($plain_pid == 0) {
    local $SIG{ALRM} = sub { POSIX::_exit(0) };
    alarm 60;
    my $c = $plain->accept or POSIX::_exit(0);
    my ($got, $buf) = (0, '');
    while (my $n = sysread($c, $buf, 65536)) { $got += $n }
    syswrite($c, "got $got\n");
    close $c;
    POSIX::_exit(0);
}
close $plain;

sub up { my ($be) = @_; return { servers => ["127.0.0.1:$be->{port}"] } }

$t->write_conf({
    runtime => { max_connections => 100 },
    upstreams => {
        a => up($be_a), wild => up($be_wild), exact => up($be_ex), def => up($be_def),
        mtls => up($be_mtls), pp => up($be_pp), sink => up($be_sink),
        # the first server refuses: the relay moves on to the next one
        retry => { servers => ["127.0.0.1:$dead", "127.0.0.1:$be_a->{port}"],
                   connect_timeout_ms => 500 },
        dead => { servers => ["127.0.0.1:$dead"] },
        slow => { servers => ["127.0.0.1:$blackhole"], connect_timeout_ms => 300 },
        idle => up($be_a),
        # the first server's connect hangs (300 ms), the second is a plain
        # TCP listener of this test that answers after the client's FIN
        halfc => { servers => ["127.0.0.1:$blackhole", "127.0.0.1:$plain_port"],
                   connect_timeout_ms => 300 },
    },
    listeners => [
        { name => 'main', listen => ["127.0.0.1:$p"],
          sites => [qw(a wild exact def mtls pp sink retry dead idle slow halfc)], default_site => 'def' },
        { name => 'strict', listen => ["127.0.0.1:$p2"], sites => [qw(a wild)] },
        ($has6 ? ({ name => 'v6', listen => ["[::1]:$p6"], sites => ['a'], default_site => 'a' })
               : ()),
    ],
    sites => {
        a     => { server_names => ['a.test'], mode => 'passthrough', upstream => 'a' },
        wild  => { server_names => ['*.wild.test'], mode => 'passthrough', upstream => 'wild' },
        exact => { server_names => ['exact.wild.test'], mode => 'passthrough', upstream => 'exact' },
        def   => { server_names => ['default.test'], mode => 'passthrough', upstream => 'def' },
        mtls  => { server_names => ['b.test'], mode => 'passthrough', upstream => 'mtls' },
        pp    => { server_names => ['pp.test'], mode => 'passthrough', upstream => 'pp',
                   proxy_protocol_out => 'v2' },
        sink  => { server_names => ['backend.test'], mode => 'passthrough', upstream => 'sink' },
        retry => { server_names => ['retry.test'], mode => 'passthrough', upstream => 'retry' },
        dead  => { server_names => ['dead.test'], mode => 'passthrough', upstream => 'dead' },
        slow  => { server_names => ['slow.test'], mode => 'passthrough', upstream => 'slow' },
        idle  => { server_names => ['idle.test'], mode => 'passthrough', upstream => 'idle',
                   limits => { idle_timeout_ms => 700 } },
        halfc => { server_names => ['halfc.test'], mode => 'passthrough', upstream => 'halfc' },
    },
});
$t->run or BAIL_OUT('hamlyn did not start');
my @workers = $t->worker_pids;

# Connects through the proxy with SNI $name (undef = none), sends a line,
# returns the backend's first line ("backend=NAME sni=... client=...").
sub via {
    my (%o) = @_;
    my $r = $t->tls_client(connect => "127.0.0.1:" . ($o{port} // $p),
                           (defined $o{sni} ? (servername => $o{sni}) : (no_sni => 1)),
                           no_verify => 1, send => "hello\n", shut_wr => 1,
                           ($o{cert} ? (cert => $o{cert}) : ()), timeout => 10);
    return $r;
}

# --- routing
my $r = via(sni => 'a.test');
like($r->{first_line}, qr/^backend=A sni=a\.test /, 'exact name a.test -> backend A');
is($r->{rest_bytes}, 6, 'bytes echoed back through the relay');
$r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test',
                    ca => "$certs/ca.pem", send => "x\n", shut_wr => 1, timeout => 10);
ok($r->{ok}, 'verified handshake through the relay') or diag explain $r;
is($r->{peer_cn}, 'a.test', 'the client sees the backend\'s own certificate (no termination)');

$r = via(sni => 'x.wild.test');
like($r->{first_line}, qr/^backend=WILD sni=x\.wild\.test /, '*.wild.test matches x.wild.test');
$r = via(sni => 'exact.wild.test');
like($r->{first_line}, qr/^backend=EXACT /, 'exact beats wildcard');
$r = via(sni => 'A.TeSt');
like($r->{first_line}, qr/^backend=A /, 'matching is case-insensitive');
$r = via(sni => 'X.Wild.Test');
like($r->{first_line}, qr/^backend=WILD /, 'wildcard matching is case-insensitive');
$r = via(sni => 'a.b.wild.test');
like($r->{first_line}, qr/^backend=DEF /, '*.wild.test does not match two labels: default site');
$r = via(sni => 'wild.test');
like($r->{first_line}, qr/^backend=DEF /, '*.wild.test does not match wild.test itself');
$r = via(sni => 'unknown.example');
like($r->{first_line}, qr/^backend=DEF /, 'unknown name -> default site');
$r = via(sni => undef);
like($r->{first_line}, qr/^backend=DEF sni=- /, 'no SNI -> default site');

# --- refusal without a default site: alert unrecognized_name
my $o = $t->s_client(port => $p2, servername => 'nope.test', timeout => 5);
like($o, qr/unrecognized.name|alert number 112/i, 'unknown name refused with alert unrecognized_name');
unlike($o, qr/backend=/, 'nothing reached a backend');
$o = $t->s_client(port => $p2, timeout => 5);
like($o, qr/unrecognized.name|alert number 112/i, 'no SNI and no default site: refused');
$r = via(sni => 'a.test', port => $p2);
like($r->{first_line}, qr/^backend=A /, 'the strict listener still routes known names');

# --- next server on failure
$r = via(sni => 'retry.test');
like($r->{first_line}, qr/^backend=A /, 'refused first server: next server used');

# --- every server refuses: the client is closed, logged as upstream_refused
$r = via(sni => 'dead.test');
ok(!$r->{ok} && ($r->{first_line} // '') eq '', 'all upstream servers refused: client closed');

# --- an upstream that never answers the SYN: connect_timeout_ms (300)
{
    my $t0 = time;
    $r = via(sni => 'slow.test');
    my $secs = time - $t0;
    ok(!$r->{ok} && ($r->{first_line} // '') eq '', 'unreachable upstream: client closed');
    ok($secs < 3, sprintf('... after the connect timeout (%.2f s)', $secs));
}

# --- idle timeout (site limits.idle_timeout_ms = 700)
{
    my $t0 = time;
    $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'idle.test', no_verify => 1,
                        send => "x\n", timeout => 10);     # no FIN: waits for us
    my $secs = time - $t0;
    like($r->{first_line} // '', qr/^backend=A /, 'idle site reached');
    ok($secs > 0.5 && $secs < 5, sprintf('idle relay closed by the proxy after %.1f s', $secs));
}

# --- the backend sees the real client's certificate
$r = via(sni => 'b.test', cert => 'client');
like($r->{first_line}, qr/^backend=MTLS .*client=client\.test/,
     'backend requiring a client certificate sees the client\'s CN');

# --- PROXY protocol v2 towards the backend
$r = via(sni => 'pp.test');
like($r->{first_line}, qr/^backend=PP .*proxy=127\.0\.0\.1:\d+/,
     'proxy_protocol_out v2: backend sees the client address');

# --- a ClientHello one byte at a time
{
    my $hello = capture_hello();
    ok(length($hello) > 100, 'captured a ClientHello of ' . length($hello) . ' bytes');
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 5) or die "connect: $!";
    $s->autoflush(1);
    for my $i (0 .. length($hello) - 1) {
        syswrite($s, substr($hello, $i, 1));
        sleep 0.001 if $i % 16 == 0;
    }
    # The backend (A) answers the hello with a ServerHello: a TLS
    # handshake record (0x16) arrives.
    my $buf = '';
    my $deadline = time + 5;
    while (length($buf) < 5 && time < $deadline) {
        my $rin = ''; vec($rin, fileno($s), 1) = 1;
        last unless select($rin, undef, undef, 0.5);
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
    }
    is(substr($buf, 0, 1), "\x16", 'hello sent byte by byte: the backend\'s ServerHello came back');
    close $s;
}

# --- a 20 KiB ClientHello (padding extension) split over two records
{
    my $hello = capture_hello();
    my $big = grow_hello($hello, 20000);
    ok(length($big) > 20000, 'built a ' . length($big) . '-byte ClientHello in two records');
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 5) or die "connect: $!";
    syswrite($s, $big);
    my $buf = '';
    my $deadline = time + 5;
    while (length($buf) < 5 && time < $deadline) {
        my $rin = ''; vec($rin, fileno($s), 1) = 1;
        last unless select($rin, undef, undef, 0.5);
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
    }
    is(substr($buf, 0, 1), "\x16", 'large hello relayed: the backend answered with a handshake record');
    close $s;
}

# --- a client that half-closes (FIN after its hello and a request) while
# the upstream connect is still pending: relayed, not taken for an abort
{
    my $req = mini_hello('halfc.test') . "request";
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 5) or die "connect: $!";
    syswrite($s, $req);
    sleep 0.1;                      # the first server's connect is pending
    shutdown($s, 1);
    my ($buf, $deadline) = ('', time + 5);
    while (time < $deadline) {
        my $rin = ''; vec($rin, fileno($s), 1) = 1;
        last unless select($rin, undef, undef, 0.5);
        my $n = sysread($s, $buf, 4096, length $buf);
        last unless $n;
    }
    is($buf, "got " . length($req) . "\n",
       'FIN while connecting: the upstream got every byte, then the FIN, and its answer came back');
    close $s;
    waitpid($plain_pid, 0);
}

# --- IPv6
SKIP: {
    skip 'no IPv6', 2 unless $has6;
    $r = $t->tls_client(connect => "[::1]:$p6", servername => 'a.test', ca => "$certs/ca.pem",
                        send => "v6\n", shut_wr => 1, timeout => 10);
    like($r->{first_line} // '', qr/^backend=A /, 'IPv6 listener relays');
    my $l6 = $t->wait_access_log(1, 1);
    ok((grep { ($_->{listener} // '') eq 'v6' && ($_->{client} // '') =~ /^\[::1\]:\d+$/ } @$l6),
       'IPv6 client address logged as [::1]:port');
}

# --- 20 MiB each way, byte-exact (sink sends 20 MiB, hashes what it gets)
$r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'backend.test', no_verify => 1,
                    send_bytes => 20 << 20, shut_wr => 1, timeout => 60);
my $want = Hamlyn::Test::pattern_sha256(20 << 20);
my ($sum, $cnt) = ($r->{last_line} // '') =~ /sha256=(\w+) bytes=(\d+)$/;
is($cnt, 20 << 20, '20 MiB client -> backend');
is($sum, $want, 'client -> backend byte-exact (sha256)');
my $line = "sha256=$want bytes=" . (20 << 20) . "\n";
is($r->{recv_bytes} - length($line), 20 << 20, '20 MiB backend -> client');
ok($r->{ok}, 'transfer completed') or diag explain $r;

# --- a bulk burst, then silence (no FIN): past 256 KiB a direction raises
# SO_RCVLOWAT, so the tail below the mark must still be reported when the
# stream pauses, both ways (upload to the echo backend, then its echo)
{
    my $n = (1 << 20) + 12345;
    my $first = "backend=A sni=a.test client=- proxy=-\n";
    $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test', ca => "$certs/ca.pem",
                        send_bytes => $n, read_bytes => length($first) + $n, timeout => 20);
    is($r->{first_line} . "\n", $first, 'burst: echo backend A');
    is($r->{rest_bytes}, $n, 'burst: 1 MiB echoed back without a FIN (tails below the low-water mark reported)');
    is($r->{rest_sha256}, Hamlyn::Test::pattern_sha256($n), 'burst: echo byte-exact');
    ok(defined $r->{elapsed_s} && $r->{elapsed_s} < 10, 'burst: completed promptly')
        or diag explain $r;
}

# --- access log
my $log = $t->wait_access_log(16, 5);
my @ok = grep { ($_->{outcome} // '') eq 'ok' } @$log;
ok(@ok >= 10, 'access log has ok lines') or diag explain $log;
my ($la) = grep { ($_->{sni} // '') eq 'a.test' && ($_->{listener} // '') eq 'main' } @$log;
ok($la, 'access-log line for a.test');
if ($la) {
    is($la->{site}, 'a', 'site');
    is($la->{upstream}, "127.0.0.1:$be_a->{port}", 'upstream address');
    like($la->{client}, qr/^127\.0\.0\.1:\d+$/, 'client address');
    ok($la->{bytes_in} > 100 && $la->{bytes_out} > 100, 'bytes counted both ways');
    ok(defined $la->{duration_ms} && $la->{duration_ms} >= 0, 'duration_ms');
    like($la->{time}, qr/^\d{4}-\d\d-\d\dT/, 'time');
    my %workers = map { $_ => 1 } $t->worker_pids;
    ok($la->{pid} && $workers{$la->{pid}}, 'pid: the worker that served it')
        or diag "pid $la->{pid}, workers @{[ $t->worker_pids ]}";
}
my ($big) = grep { ($_->{sni} // '') eq 'backend.test' } @$log;
ok($big && $big->{bytes_in} > 20 << 20 && $big->{bytes_out} > 20 << 20, 'bulk bytes counted')
    or diag explain $big;
my ($dl) = grep { ($_->{sni} // '') eq 'dead.test' } @$log;
is($dl && $dl->{outcome}, 'upstream_refused', 'outcome upstream_refused');
is($dl && $dl->{upstream}, "127.0.0.1:$dead", 'the refusing server is logged');
like($t->error_log, qr/ \Q@{[ $dl ? "$dl->{pid}#c$dl->{conn}" : 'none' ]}\E .*refused/,
     'access log pid and conn name the error log line of that connection');
my ($sl) = grep { ($_->{sni} // '') eq 'slow.test' } @$log;
is($sl && $sl->{outcome}, 'upstream_timeout', 'outcome upstream_timeout');
my ($il) = grep { ($_->{sni} // '') eq 'idle.test' } @$log;
is($il && $il->{outcome}, 'idle_timeout', 'outcome idle_timeout');
like($t->error_log, qr/upstream "dead" 127\.0\.0\.1:$dead: connect failed: connection refused \(while connecting to upstream\)/,
     'error log names the upstream, server and action');
my @refused = grep { ($_->{outcome} // '') eq 'no_sni_match' } @$log;
is(scalar @refused, 2, 'two refusals logged as no_sni_match');
ok(!defined $refused[0]{upstream}, 'refused: no upstream');
is($refused[0]{bytes_out}, 7, 'refused: bytes_out counts the unrecognized_name alert record (7 bytes)');
like($t->error_log, qr/sni=nope\.test: no site for server name "nope\.test" and no default_site: refused/,
     'refusal of an unknown name logged');
like($t->error_log, qr/no server name \(SNI\) in the ClientHello and no default_site: refused/,
     'refusal without SNI logged as such (not as a server name "(none)")');

# --- same worker all along: nothing crashed
is_deeply([$t->worker_pids], \@workers, 'same worker process after all tests');
unlike($t->error_log, qr/assert|signal \d+|exited/i, 'no crash in the error log');

# --- graceful stop (QUIT): a relay in flight runs to its end
{
    my $h = $t->hold_relay(port => $p);     # no certificate check
    my $kid = $h->{fh};
    like(scalar(<$kid>) // '', qr/READY/, 'relay established before QUIT');
    $t->signal('QUIT');
    sleep 0.5;
    ok(scalar(() = $t->worker_pids) >= 1, 'worker still running while the relay is open');
    like($t->release_relay($h), qr/^RESULT backend=A .* one two$/, 'relay kept working after QUIT');
    my $code = $t->wait_exit(10);
    is($code, 0, 'hamlyn exited cleanly once the relay ended');
}

$t->stop;
done_testing;

# Adds a padding extension so the hello body is about $size bytes, and
# splits the handshake message over two TLS records.
sub grow_hello {
    my ($rec, $size) = @_;
    my $hs = substr($rec, 5);                       # handshake message
    my $body = substr($hs, 4);
    my $off = 2 + 32;
    $off += 1 + ord(substr($body, $off, 1));        # session id
    $off += 2 + unpack('n', substr($body, $off, 2));    # cipher suites
    $off += 1 + ord(substr($body, $off, 1));        # compression
    my $extlen = unpack('n', substr($body, $off, 2));
    my $pad = $size - length($body);
    my $ext = pack('nn', 21, $pad) . ("\0" x $pad);
    substr($body, $off, 2) = pack('n', $extlen + length $ext);
    $body .= $ext;
    $hs = "\x01" . substr(pack('N', length $body), 1) . $body;
    my $half = int(length($hs) / 2);
    my $out = '';
    for my $part (substr($hs, 0, $half), substr($hs, $half)) {
        $out .= "\x16\x03\x01" . pack('n', length $part) . $part;
    }
    return $out;
}

# A minimal ClientHello record with SNI $name (enough for the router; the
# plain backend above is no TLS server).
sub mini_hello {
    my ($name) = @_;
    my $sn = pack('Cn', 0, length $name) . $name;
    my $ext = pack('nn', 0, 2 + length $sn) . pack('n', length $sn) . $sn;
    my $body = "\x03\x03" . ("\x11" x 32) . "\x00" . pack('n', 2) . "\x13\x01"
             . "\x01\x00" . pack('n', length $ext) . $ext;
    my $hs = "\x01" . substr(pack('N', length $body), 1) . $body;
    return "\x16\x03\x01" . pack('n', length $hs) . $hs;
}

# Captures a real ClientHello (openssl s_client to a local listener).
sub capture_hello {
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1,
                                  ReuseAddr => 1) or die "listen: $!";
    my $port = $l->sockport;
    my $pid = fork // die;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        exec 'openssl', 's_client', '-connect', "127.0.0.1:$port", '-servername', 'a.test';
        exit 127;
    }
    my $c = $l->accept;
    my $data = '';
    my $deadline = time + 5;
    while (time < $deadline) {
        my $rin = ''; vec($rin, fileno($c), 1) = 1;
        last unless select($rin, undef, undef, 0.3);
        my $n = sysread($c, $data, 65536, length $data);
        last unless $n;
        # one complete record: header 5 + length
        last if length($data) >= 5 && length($data) >= 5 + unpack('n', substr($data, 3, 2));
    }
    kill 'TERM', $pid;
    waitpid $pid, 0;
    return $data;
}
