#!/usr/bin/perl
# 80-admin.t: the admin listener (GET /metrics, /healthz, /trust) and the
# plaintext redirect_to_https listener, with the real binary, two workers,
# real TLS backends and curl.  After known passthrough, terminate, redirect
# and failing traffic, the Prometheus counters (summed over the worker
# slots) must match it exactly; they survive a worker crash (the respawned
# worker keeps accumulating) and a reload.  /trust must equal
# `hamlyn --trust-report=json`.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;

my $be_pt = $t->backend(mode => 'tls-echo', cert => 'backend.test', name => 'PT')
    or BAIL_OUT('backend did not start');
my $be_http = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my $p     = $t->port;   # TLS listener: passthrough + terminate
my $pr    = $t->port;   # plaintext redirect listener
my $ppp   = $t->port;   # redirect listener behind a PROXY protocol balancer
my $pa    = $t->port;   # admin
my $dead  = $t->port;   # nobody listens here

$t->write_conf({
    runtime => { workers => 2 },
    admin => { listen => "127.0.0.1:$pa" },
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        pt   => { servers => ["127.0.0.1:$be_pt->{port}"] },
        dead => { servers => ["127.0.0.1:$dead"], connect_timeout_ms => 500 },
        web  => { servers => ["127.0.0.1:$be_http->{port}"],
                  plaintext => { accepted_risk => 'test backend on loopback' } },
        gone => { servers => ["127.0.0.1:$dead"], max_fails => 0,
                  plaintext => { accepted_risk => 'test backend on loopback' } },
    },
    listeners => [
        { name => 'main', listen => ["127.0.0.1:$p"], sites => [qw(pt dead a)] },
        { name => 'redir', listen => ["127.0.0.1:$pr"],
          http => { redirect_to_https => JSON::PP::true } },
        { name => 'redirpp', listen => ["127.0.0.1:$ppp"], proxy_protocol => JSON::PP::true,
          http => { redirect_to_https => JSON::PP::true } },
    ],
    sites => {
        pt   => { server_names => ['pt.test'], mode => 'passthrough', upstream => 'pt' },
        dead => { server_names => ['dead.test'], mode => 'passthrough', upstream => 'dead' },
        a    => { server_names => ['a.test'], mode => 'terminate',
                  tls => { certificates => ['a'] },
                  routes => [ { match => { path_prefix => '/missing' }, status => 404 },
                              { match => { path_prefix => '/gone' }, upstream => 'gone' },
                              { match => { path_prefix => '/' }, upstream => 'web' } ] },
    },
});
$t->run or BAIL_OUT('hamlyn did not start');

# ---- helpers -----------------------------------------------------------

sub admin { my ($path, @a) = @_; return $t->curl(@a, "http://127.0.0.1:$pa$path") }

# Prometheus text -> { 'name{labels}' => value }, and the HELP/TYPE lines.
sub scrape {
    my ($code, $body, $h) = admin('/metrics');
    my (%m, %type, %help);
    for (split /\n/, $body // '') {
        if (/^# TYPE (\S+) (\S+)$/) { $type{$1} = $2; next }
        if (/^# HELP (\S+) (.+)$/) { $help{$1} = $2; next }
        next if /^#/ || !/\S/;
        my ($k, $v) = /^(\S+) (\d+)$/ or do { fail("bad metrics line: $_"); next };
        $m{$k} = $v;
    }
    return { code => $code, h => $h, m => \%m, type => \%type, help => \%help,
             body => $body };
}

# Prometheus text format 0.0.4: each family's HELP and TYPE once, before
# its samples, which are contiguous; no series twice; label values quoted
# with only \\, \" and \n escapes; values are numbers.
sub valid_exposition {
    my ($text) = @_;
    my (%help, %type, %series, %done, $cur, @bad);
    for my $line (split /\n/, $text // '') {
        if ($line =~ /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S/) {
            push @bad, "HELP $1 twice" if $help{$1}++;
            next;
        }
        if ($line =~ /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/) {
            push @bad, "TYPE $1 twice" if $type{$1}++;
            push @bad, "family $1 split" if $done{$1};
            $done{$cur} = 1 if defined $cur && $cur ne $1;
            $cur = $1;
            next;
        }
        next if $line =~ /^#/;
        my ($name, $labels, $v) = $line =~
            /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$/
            or do { push @bad, "bad line: $line"; next };
        push @bad, "no TYPE before $name" unless defined $cur && $cur eq $name;
        push @bad, "duplicate series $name" . ($labels // '') if $series{$name . ($labels // '')}++;
        push @bad, "bad value $v" unless $v =~ /^-?\d+(?:\.\d+)?(?:e[+-]?\d+)?$/i;
    }
    push @bad, "HELP without TYPE" if keys %help != keys %type;
    diag($_) for @bad;
    return !@bad && keys %type > 0;
}

sub conns { my ($s, $l, $o) = @_; return $s->{m}{"hamlyn_connections_total{listener=\"$l\",outcome=\"$o\"}"} }

sub pt_conn {
    my ($sni) = @_;
    return $t->tls_client(connect => "127.0.0.1:$p", servername => $sni, no_verify => 1,
                          send => "hello\n", shut_wr => 1, timeout => 10);
}

sub https {
    my ($path) = @_;
    return $t->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                    "https://a.test:$p$path");
}

# Raw request on a fresh TCP connection; returns everything read until EOF.
sub raw {
    my ($port, $req) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 5)
        or return '';
    $s->autoflush(1);
    print $s $req;
    my $out = '';
    my $end = time + 10;
    while (time < $end) {
        my $n = sysread($s, my $buf, 65536);
        last unless $n;
        $out .= $buf;
    }
    close $s;
    return $out;
}

sub wait_for { my ($cb, $s) = @_; my $end = time + ($s // 10); until ($cb->()) { return 0 if time > $end; sleep 0.1 } return 1 }

# ---- admin basics --------------------------------------------------------

my ($code, $body, $h) = admin('/healthz');
ok(wait_for(sub { ($code, $body, $h) = admin('/healthz'); $code eq '200' }),
   '/healthz: 200 once both workers run');
is($body, "ok\n", '/healthz body');
like($h->{connection} // '', qr/close/i, 'admin answers with Connection: close');

my $s0 = scrape();
is($s0->{code}, 200, '/metrics: 200');
like($s0->{h}{'content-type'} // '', qr{^text/plain; version=0\.0\.4}, 'Prometheus content type');
is($s0->{m}{hamlyn_workers}, 2, 'hamlyn_workers 2');
is($s0->{m}{hamlyn_workers_up}, 2, 'hamlyn_workers_up 2');
is($s0->{m}{hamlyn_passthrough_connections_total}, 0, 'no passthrough connections yet');
for my $f (qw(hamlyn_connections_total hamlyn_connections_active
              hamlyn_passthrough_connections_total hamlyn_terminate_connections_total
              hamlyn_tls_handshakes_total hamlyn_tls_handshake_failures_total
              hamlyn_http_requests_total hamlyn_bytes_received_total hamlyn_bytes_sent_total
              hamlyn_upstream_connect_failures_total hamlyn_worker_restarts_total
              hamlyn_tls_resumed_total hamlyn_upstream_connections_total
              hamlyn_upstream_tls_handshakes_total hamlyn_upstream_tls_resumed_total
              hamlyn_upstream_requests_total hamlyn_upstream_pool_reuses_total
              hamlyn_workers hamlyn_workers_up)) {
    ok(defined $s0->{type}{$f} && defined $s0->{help}{$f}, "# HELP and # TYPE for $f");
}
is($s0->{type}{hamlyn_connections_active}, 'gauge', 'connections_active is a gauge');
is($s0->{type}{hamlyn_tls_handshakes_total}, 'counter', 'tls_handshakes_total is a counter');

($code, $body) = admin('/nope');
is($code, 404, 'unknown admin path: 404');
($code, undef, $h) = admin('/metrics', '-X', 'POST', '-d', 'x=1');
is($code, 405, 'POST /metrics: 405');
like($h->{allow} // '', qr/^GET, HEAD$/, '405 names the allowed methods');
# HEAD, which every general-purpose server supports (RFC 9110 9.1): the
# head of the GET answer, its Content-Length included, and no body.
my $hd = raw($pa, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
like($hd, qr{^HTTP/1\.1 200 OK\r\n}, 'HEAD /healthz: 200');
like($hd, qr{\r\nContent-Length: 3\r\n}, 'HEAD /healthz: the GET body length');
like($hd, qr{\r\n\r\n\z}, 'HEAD /healthz: no body');
$hd = raw($pa, "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
like($hd, qr{^HTTP/1\.1 200 OK\r\n.*\r\n\r\n\z}s, 'HEAD /metrics: 200 without a body');
my $big = raw($pa, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " . ('a' x 10000) . "\r\n\r\n");
like($big, qr{^HTTP/1\.1 431 }, 'admin request head over 8 KiB: 431');
like(raw($pa, "GARBAGE\r\n\r\n"), qr{^HTTP/1\.1 400 }, 'malformed admin request: 400');

# /trust is the trust report of --trust-report=json.
($code, $body, $h) = admin('/trust');
is($code, 200, '/trust: 200');
like($h->{'content-type'} // '', qr{^application/json}, '/trust is JSON');
my $trust = eval { decode_json($body) };
ok(ref $trust eq 'HASH', '/trust decodes') or diag($body);
my ($rc, $out) = $t->hamlyn('--trust-report=json', '-c', $t->conf_path);
is($rc, 0, 'hamlyn --trust-report=json exits 0');
my $cli = eval { decode_json($out) };
is_deeply($trust, $cli, '/trust equals hamlyn --trust-report=json');
is($body, $out, '... byte for byte (the same final newline)');
is($trust->{admin}, "127.0.0.1:$pa", 'the report names the admin listener');

# Clients that connect and stall do not lock monitoring out: past the cap
# of 64, the oldest one still sending its head makes room.
{
    my @stalled;
    for (1 .. 70) {
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$pa", Timeout => 5) or last;
        syswrite($s, "GET /metr");
        push @stalled, $s;
    }
    is(scalar @stalled, 70, '70 stalled admin clients connected');
    select(undef, undef, undef, 0.2);
    my ($c2, $b2) = admin('/healthz');
    is($c2, 200, '/healthz still answers with 70 stalled clients');
    my $first = $stalled[0];
    $first->blocking(0);
    my $end = time + 5;
    my $gone = 0;
    while (time < $end) {
        my $n = sysread($first, my $buf, 16);
        if (defined $n && $n == 0 || !defined $n && !$!{EAGAIN}) { $gone = 1; last }
        select(undef, undef, undef, 0.05);
    }
    ok($gone, '... the oldest stalled client was closed to make room');
    close $_ for @stalled;
}

# ---- redirect listener -----------------------------------------------------

my $nredirect = 0;
my $nbad = 0;
($code, $body, $h) = $t->curl('-H', 'Host: www.Example.com:8080',
                              "http://127.0.0.1:$pr/a/b?x=1&y=%20");
is($code, 301, 'redirect listener: 301');
is($h->{location}, 'https://www.example.com/a/b?x=1&y=%20',
   'Location: https, Host without its port (lower-cased), same path and query');
like($h->{connection} // '', qr/close/i, 'redirect: Connection: close');
$nredirect++;
($code, undef, $h) = $t->curl("http://127.0.0.1:$pr/");
is($code, 301, 'curl default Host: 301');
is($h->{location}, 'https://127.0.0.1/', 'Location for Host 127.0.0.1:PORT');
$nredirect++;
($code, undef, $h) = $t->curl('-H', 'Host: [::1]:80', "http://127.0.0.1:$pr/v6");
is($h->{location}, 'https://[::1]/v6', 'IPv6 literal Host keeps its brackets, loses its port');
$nredirect++;
($code, undef, $h) = $t->curl('-X', 'POST', '-d', 'a=b', '-H', 'Host: a.test',
                              "http://127.0.0.1:$pr/form");
is($code, 301, 'POST: 301 too');
is($h->{location}, 'https://a.test/form', 'POST Location');
$nredirect++;
# Absolute-form (RFC 9112 3.2.2, accepted by the project's parser): its
# authority is the host, its path and query the target.
like(raw($pr, "GET http://Abs.test:81/p?q HTTP/1.1\r\nHost: other.test\r\n\r\n"),
     qr{^HTTP/1\.1 301 .*\r\nLocation: https://abs\.test/p\?q\r\n}s,
     'absolute-form target: 301 to its authority and path');
$nredirect++;
like(raw($pr, "GET http://abs.test HTTP/1.1\r\nHost: abs.test\r\n\r\n"),
     qr{^HTTP/1\.1 301 .*\r\nLocation: https://abs\.test/\r\n}s,
     'absolute-form target without a path: 301 to /');
$nredirect++;
like(raw($pr, "GET http://abs.test?q=1 HTTP/1.1\r\nHost: abs.test\r\n\r\n"),
     qr{^HTTP/1\.1 301 .*\r\nLocation: https://abs\.test/\?q=1\r\n}s,
     'absolute-form target with a query but no path: 301 to /?query');
$nredirect++;
my $hr = raw($pr, "HEAD /h?x HTTP/1.1\r\nHost: a.test\r\n\r\n");
like($hr, qr{^HTTP/1\.1 301 .*\r\nLocation: https://a\.test/h\?x\r\n}s, 'HEAD: 301 too');
like($hr, qr{\r\n\r\n\z}, 'HEAD: the 301 has no body');
$nredirect++;
like(raw($pr, "GET ftp://abs.test/p HTTP/1.1\r\nHost: abs.test\r\n\r\n"),
     qr{^HTTP/1\.1 400 }, 'absolute-form with another scheme: 400');

for my $bad ('ex@mple.com', 'a.test:99x', 'a.test:123456', '[::1', '-a.test', 'a..b:') {
    ($code, undef, $h) = $t->curl('-H', "Host: $bad", "http://127.0.0.1:$pr/");
    is($code, 400, "invalid Host \"$bad\": 400");
    ok(!defined $h->{location}, "no Location for \"$bad\"");
    $nbad++;
}
$nbad++;    # the ftp:// absolute-form request above
like(raw($pr, "GET / HTTP/1.0\r\n\r\n"), qr{^HTTP/1\.1 400 }, 'missing Host (HTTP/1.0): 400');
$nbad++;
like(raw($pr, "GET / HTTP/1.1\r\n\r\n"), qr{^HTTP/1\.1 400 }, 'missing Host (HTTP/1.1): 400');
$nbad++;
# Behind a PROXY protocol balancer: the header comes first, the client
# address is taken from it.
my $ppr = raw($ppp, "PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\n"
                    . "GET /pp?q HTTP/1.1\r\nHost: A.test:80\r\n\r\n");
like($ppr, qr{^HTTP/1\.1 301 .*\r\nLocation: https://a\.test/pp\?q\r\n}s,
     'redirect behind PROXY protocol v1: 301');
$nredirect++;
my $pl;
ok(wait_for(sub { ($pl) = grep { ($_->{listener} // '') eq 'redirpp' } @{ $t->access_log }; $pl }),
   'access-log line of the PROXY redirect');
is($pl->{client}, '192.0.2.7:4242', 'client address from the PROXY header');
is($pl->{outcome}, 'redirect', 'outcome redirect');
like(raw($ppp, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"), qr/^$/,
     'no PROXY header where one is required: closed without an answer');

my $tlsr = raw($pr, "\x16\x03\x01\x00\x05hello\r\n\r\n");
like($tlsr, qr{^HTTP/1\.1 400 }, 'TLS bytes on the redirect listener: 400, no crash');
$nbad++;

# ---- traffic with known counts ---------------------------------------------

my $npt = 3;
for (1 .. $npt) {
    my $r = pt_conn('pt.test');
    like($r->{first_line} // '', qr/^backend=PT /, "passthrough connection $_");
}
my $r = pt_conn('dead.test');
ok(!$r->{ok} || !$r->{first_line}, 'passthrough to a dead upstream fails');

my $n2xx = 0;
for (1 .. 2) {
    ($code) = https('/x');
    is($code, 200, "terminate request $_: 200");
    $n2xx++;
}
($code) = https('/missing');
is($code, 404, 'terminate fixed 404');

# A client that rejects the proxy's certificate (verifies against another
# CA): the server-side handshake fails.
$r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test', send => "x\n",
                    ca => "$certs/client-ca.pem", timeout => 10);
ok(!$r->{ok}, 'client refusing the certificate: handshake fails');
my $hf;
ok(wait_for(sub { ($hf) = grep { ($_->{outcome} // '') eq 'tls_handshake_failed' } @{ $t->access_log }; $hf }),
   'the failed handshake has its access-log line');
ok(($hf->{bytes_in} // 0) > 0, "... counting the ClientHello in bytes_in (" . ($hf->{bytes_in} // 'undef') . ')');
is($hf->{mode}, 'terminate', '... mode terminate');
is($hf->{site}, 'a', '... and its site');

# All of them finished?  (connections_active drops to 0.)
my $s;
ok(wait_for(sub { $s = scrape(); ($s->{m}{hamlyn_connections_active} // -1) == 0
                  && ($s->{m}{hamlyn_tls_handshake_failures_total} // 0) >= 1 }),
   'every connection finished') or diag($s->{body});

is($s->{m}{hamlyn_passthrough_connections_total}, $npt + 1,
   'passthrough_connections_total: 3 ok + 1 failing upstream');
is($s->{m}{hamlyn_terminate_connections_total}, 4,
   'terminate_connections_total: 3 requests + 1 failed handshake');
is($s->{m}{hamlyn_redirect_connections_total}, $nredirect + $nbad + 1,
   'redirect_connections_total');
is($s->{m}{hamlyn_tls_handshakes_total}, 3, 'tls_handshakes_total 3');
is($s->{m}{hamlyn_tls_handshake_failures_total}, 1, 'tls_handshake_failures_total 1');
is($s->{m}{'hamlyn_http_requests_total{code="2xx"}'}, $n2xx, 'http 2xx');
is($s->{m}{'hamlyn_http_requests_total{code="3xx"}'}, $nredirect, 'http 3xx = redirects');
is($s->{m}{'hamlyn_http_requests_total{code="4xx"}'}, 1 + $nbad, 'http 4xx = 404 + bad Hosts');
is($s->{m}{'hamlyn_http_requests_total{code="5xx"}'}, 0, 'http 5xx');
is($s->{m}{hamlyn_upstream_connect_failures_total}, 1, 'upstream_connect_failures_total 1');
# two requests to the plaintext upstream: the second on a pooled connection
# when it reached the same worker as the first, else on its own; plus the 3
# passthrough connections
is($s->{m}{hamlyn_upstream_requests_total}, 2, 'upstream_requests_total 2');
my $nupc = ($s->{m}{hamlyn_upstream_connections_total} // 0) - $npt;
ok($nupc == 1 || $nupc == 2, "upstream_connections_total: $npt passthrough + 1 or 2 HTTP ($nupc)");
is(($s->{m}{hamlyn_upstream_pool_reuses_total} // -1) + $nupc, 2,
   'upstream_pool_reuses_total: the requests that opened no connection');
is($s->{m}{hamlyn_upstream_tls_handshakes_total}, 0, 'no upstream TLS handshake (plaintext upstream)');
is(conns($s, 'main', 'ok'), $npt + 3, 'connections_total{main,ok}');
is(conns($s, 'main', 'upstream_error'), 1, 'connections_total{main,upstream_error}');
is(conns($s, 'main', 'tls_handshake_failed'), 1, 'connections_total{main,tls_handshake_failed}');
is(conns($s, 'redir', 'redirect'), $nredirect - 1, 'connections_total{redir,redirect}');
is(conns($s, 'redirpp', 'redirect'), 1, 'connections_total{redirpp,redirect}');
is(conns($s, 'redirpp', 'bad_hello'), 1, 'connections_total{redirpp,bad_hello} (bad PROXY header)');
is(conns($s, 'redir', 'bad_request'), $nbad, 'connections_total{redir,bad_request}');
ok($s->{m}{hamlyn_admin_requests_total} >= 8, 'admin requests are counted separately');
is($s->{m}{hamlyn_worker_restarts_total}, 0, 'no worker restart yet');

# A terminating connection whose request got 502 (upstream down) ends as
# upstream_error, as a passthrough connection to a dead upstream does.
{
    my ($c) = https('/gone');
    is($c, 502, 'terminate request to a dead upstream: 502');
    my $s2;
    ok(wait_for(sub { $s2 = scrape(); ($s2->{m}{hamlyn_connections_active} // -1) == 0
                      && ($s2->{m}{hamlyn_terminate_connections_total} // 0) == 5 }),
       'its connection finished') or diag($s2->{body});
    is(conns($s2, 'main', 'upstream_error'), 2, 'connections_total{main,upstream_error} counts it');
    is(conns($s2, 'main', 'ok'), $npt + 3, '... not as ok');
}

# Bytes: at least what the access log says the passthrough connections moved.
my $log = $t->wait_access_log(1);
# The totals above are sums over both workers: the traffic reached both.
my %by_pid = map { ($_->{pid} // 0) => 1 } @$log;
is(scalar(keys %by_pid), 2, 'the traffic counted above was served by both workers')
    or diag(join ' ', sort keys %by_pid);
my ($in, $outb) = (0, 0);
for (grep { ($_->{mode} // '') eq 'passthrough' } @$log) {
    $in += $_->{bytes_in} // 0;
    $outb += $_->{bytes_out} // 0;
}
ok($in > 0 && $s->{m}{hamlyn_bytes_received_total} >= $in,
   "bytes_received_total ($s->{m}{hamlyn_bytes_received_total}) >= passthrough bytes_in ($in)");
ok($outb > 0 && $s->{m}{hamlyn_bytes_sent_total} >= $outb,
   "bytes_sent_total ($s->{m}{hamlyn_bytes_sent_total}) >= passthrough bytes_out ($outb)");

# ---- a worker crash: the successor keeps counting in the same slot ---------

my @w = $t->worker_pids;
is(scalar @w, 2, 'two workers');
kill 'KILL', $w[1];
ok(wait_for(sub { my @n = $t->worker_pids; @n == 2 && !grep { $_ == $w[1] } @n }),
   'the killed worker is replaced');
ok(wait_for(sub { $s = scrape(); ($s->{code} // 0) == 200 && $s->{m}{hamlyn_worker_restarts_total} == 1 }),
   'hamlyn_worker_restarts_total 1');
ok($s->{m}{hamlyn_passthrough_connections_total} >= $npt + 1,
   'totals survive a worker crash (counters of the dead worker are kept)');
my $before = $s->{m}{hamlyn_passthrough_connections_total};
pt_conn('pt.test') for 1 .. 4;
ok(wait_for(sub { $s = scrape(); $s->{m}{hamlyn_passthrough_connections_total} == $before + 4 }),
   'new connections are counted after the restart') or diag($s->{body});
ok(wait_for(sub { ($code) = admin('/healthz'); $code eq '200' }), '/healthz 200 after the restart');

# ---- reload: totals kept, new workers count on ------------------------------

# The reload puts the listeners in another order: each keeps its own
# series (the rows are given by name), and no counter goes down.
$before = $s->{m}{hamlyn_passthrough_connections_total};
my $pre = scrape();
ok(valid_exposition($pre->{body}), 'valid text exposition before the reload');
my %c2 = %{ $t->conf };
$c2{listeners} = [ @{ $c2{listeners} }[1, 2, 0] ];
$t->write_conf(\%c2);
(undef, $out) = $t->hamlyn('--trust-report=json', '-c', $t->conf_path);
$cli = eval { decode_json($out) };
$t->signal('HUP');
ok($t->wait_error_log(qr/configuration reloaded/), 'reloaded');
ok(wait_for(sub { $s = scrape(); ($s->{m}{hamlyn_reloads_total} // 0) == 1 }), 'hamlyn_reloads_total 1');
ok(valid_exposition($s->{body}), 'valid text exposition after the reload');
for my $k (sort keys %{ $pre->{m} }) {
    my ($fam) = $k =~ /^([^{]+)/;
    next unless ($pre->{type}{$fam} // '') eq 'counter';
    ok(defined $s->{m}{$k} && $s->{m}{$k} >= $pre->{m}{$k},
       "reordered listeners: $k does not go down ($pre->{m}{$k} -> " . ($s->{m}{$k} // 'gone') . ')');
}
is(conns($s, 'redir', 'redirect'), conns($pre, 'redir', 'redirect'),
   'redir keeps its redirect count after the reorder');
is(conns($s, 'main', 'redirect'), 0, 'main has no redirects after the reorder');
$t->curl('-H', 'Host: a.test', "http://127.0.0.1:$pr/x");
ok(wait_for(sub { $s = scrape(); conns($s, 'redir', 'redirect') == conns($pre, 'redir', 'redirect') + 1 }),
   'a redirect after the reload counts for redir');
pt_conn('pt.test') for 1 .. 2;
ok(wait_for(sub { $s = scrape(); $s->{m}{hamlyn_passthrough_connections_total} == $before + 2 }),
   'counters carry over a reload') or diag($s->{body});
ok(wait_for(sub { ($code) = admin('/healthz'); $code eq '200' }), '/healthz 200 after the reload');

# ---- binary upgrade: the new master binds the admin address too ----------

my $pf = $t->dir . '/hamlyn.pid';
sub pid_in { my $s = Hamlyn::Test::slurp($pf) // ''; return $s =~ /(\d+)/ ? $1 : 0 }
my $m = pid_in();
ok($m, 'master pid from the pid file');
$t->signal('USR2');
ok(wait_for(sub { my $n = pid_in(); $n && $n != $m }, 15), 'upgrade: a new master');
ok(wait_for(sub { !Hamlyn::Test::alive_pid($m) }, 20), 'upgrade: the old master exits');
ok(wait_for(sub { ($code, $body) = admin('/healthz'); $code eq '200' }, 10),
   'upgrade: /healthz 200 from the new master');
$s = scrape();
is($s->{code}, 200, 'upgrade: /metrics served');
is($s->{m}{hamlyn_worker_restarts_total}, 0, 'upgrade: the new master counts from zero');
($code, $body) = admin('/trust');
is_deeply(eval { decode_json($body) }, $cli, 'upgrade: /trust unchanged');
($code, undef, $h) = $t->curl('-H', 'Host: a.test', "http://127.0.0.1:$pr/after");
is($h->{location}, 'https://a.test/after', 'upgrade: the redirect listener still answers');

# A terminating connection that ends before its first request counts as
# client_closed, not ok: a TLS handshake and nothing, or part of a head.
{
    my $s0 = scrape();
    my $cc0 = conns($s0, 'main', 'client_closed') // 0;
    my $ok0 = conns($s0, 'main', 'ok') // 0;
    my $py = <<'PY';
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
for data in (b"", b"GET /x HT"):
    c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))),
                        server_hostname="a.test")
    if data:
        c.sendall(data)
        time.sleep(0.1)
    c.close()
PY
    system('python3', '-c', $py, $p, "$certs/ca.pem") == 0 or diag('python client failed');
    my $s1;
    ok(wait_for(sub { $s1 = scrape(); (conns($s1, 'main', 'client_closed') // 0) == $cc0 + 2 }),
       'connections gone before their first request: client_closed') or diag($s1->{body});
    is(conns($s1, 'main', 'ok'), $ok0, '... not ok');

    # and one that sends nothing within header_timeout_ms: timeout
    my %c3 = %{ $t->conf };
    $c3{sites}{a}{limits} = { header_timeout_ms => 300 };
    $t->write_conf(\%c3);
    $t->signal('HUP');
    ok(wait_for(sub { (() = $t->error_log =~ /configuration reloaded/g) >= 2 }), 'reloaded with header_timeout_ms 300');
    my $to0 = conns($s1, 'main', 'timeout') // 0;
    my $py2 = <<'PY';
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="a.test")
c.settimeout(5)
try:
    c.recv(10)
except Exception:
    pass
PY
    system('python3', '-c', $py2, $p, "$certs/ca.pem") == 0 or diag('python client failed');
    ok(wait_for(sub { $s1 = scrape(); (conns($s1, 'main', 'timeout') // 0) == $to0 + 1 }),
       'a connection that sent nothing within header_timeout_ms: timeout') or diag($s1->{body});
    is(conns($s1, 'main', 'ok'), $ok0, '... not ok');
}

# A request target of quotes or backslashes (each escaped to two bytes)
# still gets its access-log line, cut at 2048 bytes; it used to overflow
# the line, which was then dropped: a way to stay out of the log.
for my $ch ('"', '\\') {
    my $target = '/q' . ($ch x 3000);
    my $rq = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test', no_verify => 1,
                            send => "GET $target HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                            timeout => 10);
    my $l;
    ok(wait_for(sub { ($l) = grep { index($_->{path} // '', '/q' . $ch x 10) == 0 } @{ $t->access_log }; $l }),
       "a target of 3000 '$ch': logged") or diag(explain($rq));
    is(length($l->{path} // ''), 2048, '... cut at 2048 bytes');
    is($l->{status}, 200, '... with its status');
}

$t->stop;
unlike($t->error_log, qr/\[(?:alert|crit)\]|AddressSanitizer|assert/i, 'no crash in the error log');

done_testing;
