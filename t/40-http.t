#!/usr/bin/perl
# t/40-http.t: the HTTP/1.1 reverse proxy on terminated connections, end to
# end with the real binary, curl, raw TLS clients and t/lib/hm_backend.py:
# proxying, header rewriting, bodies both ways (length, chunked, large,
# backpressure), keep-alive, pipelining, 100-continue, HEAD/204/304,
# WebSocket upgrade, limits (431/413/408/idle/max_requests), routes
# (fixed status, normalised paths, methods, headers, host, 404), the
# access log, and the default configuration conf/hamlyn.json.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use Digest::SHA qw(sha256_hex);
use Time::HiRes qw(sleep time);
use POSIX ();

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $be = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my $p = $t->port;
my $HAVE6 = IO::Socket::INET6_ok();
# headers_sanitise rewrites X-Forwarded-*/Forwarded and applies the
# strip/set lists; the core parser (hop-by-hop, smuggling) works without it.
my $HS = Hamlyn::Test::has('headers_sanitise');
sub IO::Socket::INET6_ok {
    return 0 unless eval { require IO::Socket::IP; 1 };
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
    return $s ? 1 : 0;
}

# ---- helpers -----------------------------------------------------------

# raw($bytes, %o): sends $bytes over TLS ("<<PAUSE>>" splits sends with a
# pause), returns everything read, ending in [[EOF]] (closed by the proxy),
# [[IDLE]] (still open after idle seconds) or [[TIMEOUT]] (Hamlyn::Test
# raw_tls; options port, sni, idle 1.5, timeout 15, pause 0.3).
sub raw { my ($data, %o) = @_; return $t->raw_tls($data, port => $p, %o) }

sub statuses { my ($out) = @_; return [ $out =~ m{HTTP/1\.1 (\d{3}) }g ] }

sub curl {
    my ($path, @args) = @_;
    return $t->curl('--cacert', "$certs/ca.pem", '--resolve',
                    "a.test:$p:127.0.0.1", @args, "https://a.test:$p$path");
}

sub backend_json { my ($body) = @_; return eval { decode_json($body) } // {} }

sub hdr {
    my ($j, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $j->{headers} // [] };
    return wantarray ? @v : $v[0];
}

sub conf {
    my (%o) = @_;
    return {
        runtime => { access_log => { path => $t->dir . '/access.log' } },
        certificates => {
            a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" },
            d => { cert => "$certs/default.test.pem", key => "$certs/default.test.key" },
        },
        upstreams => {
            be => { servers => ["127.0.0.1:$be->{port}"],
                    plaintext => { accepted_risk => 'test backend on loopback' },
                    read_timeout_ms => 1500,
                    %{ $o{up} // {} } },
        },
        listeners => [ { name => 'l', listen => ["127.0.0.1:$p", ($HAVE6 ? ("[::1]:$p") : ())],
                         sites => ['a', 'd'], default_site => 'a' } ],
        sites => {
            # A second site on the listener: its name in the Host of a
            # connection without SNI (which got the default site a) is 421.
            d => { server_names => ['default.test', '*.d.test'], mode => 'terminate',
                   tls => { certificates => ['d'] },
                   routes => [{ match => { path_prefix => '/' }, status => 200,
                                body => "site d\n" }] },
            a => {
                server_names => ['a.test', 'b.test'],
                mode => 'terminate',
                tls => { certificates => ['a'] },
                limits => { max_header_bytes => 4096, max_body_bytes => 1 << 20,
                            header_timeout_ms => 1000, idle_timeout_ms => 2000,
                            max_requests => 5, %{ $o{limits} // {} } },
                # "Ho*", "Content-L*" and "Transfer-*" match the framing
                # headers and Host, which a prefix never removes.
                headers => { strip_request => ['X-User-Id', 'X-Internal-*', 'Ho*'],
                             set_request => { 'X-Edge' => 'hamlyn' },
                             set_response => { 'Strict-Transport-Security' => 'max-age=60' },
                             strip_response => ['Server', 'Content-L*', 'Transfer-*'] },
                routes => [
                    { match => { path_prefix => '/admin/' }, status => 403,
                      body => "admin is closed\n" },
                    { match => { path_exact => '/fixed' }, status => 200,
                      body => "fixed body\n", content_type => 'text/x-test' },
                    { match => { path_prefix => '/m/', methods => ['PUT'] },
                      status => 201, body => "put\n" },
                    { match => { path_prefix => '/h/', headers => { 'x-canary' => '1' } },
                      status => 202, body => "canary\n" },
                    { match => { path_prefix => '/host/', host => 'b.test' },
                      status => 203, body => "host b\n" },
                    { match => { path_prefix => '/nowhere' }, status => 404 },
                    { match => { path_exact => '/empty' }, status => 204 },
                    { match => { path_prefix => '/' }, upstream => 'be' },
                ],
            },
        },
    };
}

$t->write_conf(conf());
$t->run or BAIL_OUT('hamlyn did not start');

# ---- basic proxying and header rewriting ------------------------------

{
    my ($code, $body, $h) = curl('/hello?x=1', '-H', 'X-User-Id: 42',
        '-H', 'X-Internal-Secret: s', '-H', 'X-Forwarded-For: 6.6.6.6',
        '-H', 'X-Real-IP: 6.6.6.6', '-H', 'Forwarded: for=6.6.6.6',
        '-H', 'Connection: keep-alive, X-Hop', '-H', 'X-Hop: 1',
        '-H', 'Keep-Alive: timeout=5', '-H', 'TE: trailers',
        '-H', 'Proxy-Connection: keep-alive', '-H', 'X-Keep: yes');
    is($code, 200, 'GET proxied');
    my $j = backend_json($body);
    is($j->{path}, '/hello?x=1', 'request-target forwarded');
    is($j->{version}, 'HTTP/1.1', 'upstream request is HTTP/1.1');
    is(hdr($j, 'host'), "a.test:$p", 'Host kept');
    my $ch = raw("GET /connhost HTTP/1.1\r\nHost: a.test\r\nConnection: close, Host\r\n\r\n");
    like($ch, qr/\["Host", "a\.test"\]/, 'Connection: Host does not take Host off the upstream request');
    is(hdr($j, 'x-keep'), 'yes', 'end-to-end header kept');
    for my $gone (qw(x-user-id x-internal-secret x-hop keep-alive te
                     proxy-connection connection x-real-ip)) {
        SKIP: {
            skip "$gone: strip_request/forwarded need headers_sanitise", 1
                if !$HS && $gone =~ /^x-(?:user-id|internal-secret|real-ip)$/;
            ok(!defined hdr($j, $gone), "$gone not forwarded");
        }
    }
    SKIP: {
    skip 'X-Forwarded-*, set/strip lists need headers_sanitise', 9 unless $HS;
    is_deeply([hdr($j, 'x-forwarded-for')], ['127.0.0.1'], 'X-Forwarded-For replaced');
    is(hdr($j, 'x-forwarded-proto'), 'https', 'X-Forwarded-Proto');
    is(hdr($j, 'x-forwarded-host'), "a.test:$p", 'X-Forwarded-Host');
    is(hdr($j, 'forwarded'), "for=127.0.0.1;proto=https;host=\"a.test:$p\"",
       'Forwarded (RFC 7239) of our own');
    is(hdr($j, 'x-edge'), 'hamlyn', 'set_request');
    is($h->{'strict-transport-security'}, 'max-age=60', 'set_response');
    ok(!exists $h->{server}, 'strip_response removed Server');
    is($h->{'content-length'}, length($body),
       'strip_response "Content-L*" left the Content-Length that frames the body');
    }
}

# Every client copy goes, whatever its case and however often it comes:
# the five forwarding headers (replace), set_request names (replaced, not
# duplicated) and strip_request names and prefixes.
SKIP: {
    skip 'forwarded/strip/set need headers_sanitise', 7 unless $HS;
    my $out = raw("GET /dups HTTP/1.1\r\nHost: a.test\r\n"
                  . "forwarded: for=1.1.1.1\r\nFORWARDED: for=2.2.2.2\r\n"
                  . "x-forwarded-for: 1.1.1.1\r\nX-FORWARDED-FOR: 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n"
                  . "x-forwarded-proto: http\r\nX-Forwarded-PROTO: http\r\n"
                  . "x-forwarded-host: evil.test\r\nX-FORWARDED-HOST: evil2.test\r\n"
                  . "x-real-ip: 1.1.1.1\r\nX-REAL-IP: 2.2.2.2\r\n"
                  . "x-edge: client\r\nX-EDGE: client2\r\n"
                  . "x-user-id: 1\r\nX-USER-ID: 2\r\nx-internal-a: 1\r\nX-INTERNAL-B: 2\r\n"
                  . "Connection: close\r\n\r\n");
    my ($body) = $out =~ /\r\n\r\n(\{.*\})/s;
    my $j = backend_json($body // '');
    my @names = map { lc $_->[0] } @{ $j->{headers} // [] };
    is_deeply([hdr($j, 'x-forwarded-for')], ['127.0.0.1'], 'duplicates in any case: one X-Forwarded-For, ours');
    is_deeply([hdr($j, 'forwarded')], ['for=127.0.0.1;proto=https;host=a.test'], '... one Forwarded, ours');
    is_deeply([hdr($j, 'x-forwarded-proto')], ['https'], '... one X-Forwarded-Proto');
    is_deeply([hdr($j, 'x-forwarded-host')], ['a.test'], '... one X-Forwarded-Host (the Host)');
    is_deeply([hdr($j, 'x-real-ip')], [], '... no X-Real-IP');
    is_deeply([hdr($j, 'x-edge')], ['hamlyn'], 'set_request replaces every client copy, once');
    is_deeply([grep { /^x-(?:user-id|internal-)/ } @names], [], 'strip_request names and prefixes in any case');
}

SKIP: {
    skip 'no IPv6 loopback', 3 unless $HAVE6;
    my ($code, $body) = $t->curl('-k', '-g', "https://[::1]:$p/v6");
    is($code, 200, 'request over IPv6');
    skip 'X-Forwarded-For/Forwarded need headers_sanitise', 2 unless $HS;
    my $j = backend_json($body);
    is(hdr($j, 'x-forwarded-for'), '::1', 'X-Forwarded-For of an IPv6 client');
    like(hdr($j, 'forwarded'), qr/^for="\[::1\]";proto=https;host="\[::1\]:$p"$/,
         'Forwarded quotes an IPv6 address as "[::1]"');
}

# ---- bodies ------------------------------------------------------------

{
    my $data = 'x' x 100000;
    my $f = $t->dir . '/body.bin';
    open my $fh, '>', $f or die; print $fh $data; close $fh;
    my ($code, $body) = curl('/post', '--data-binary', "\@$f");
    my $j = backend_json($body);
    is($code, 200, 'POST with Content-Length');
    is($j->{body_sha256}, sha256_hex($data), 'request body intact');
    is(hdr($j, 'content-length'), 100000, 'Content-Length regenerated');

    ($code, $body) = curl('/post', '--data-binary', "\@$f", '-H',
                          'Transfer-Encoding: chunked');
    $j = backend_json($body);
    is($code, 200, 'POST chunked');
    is($j->{body_sha256}, sha256_hex($data), 'chunked request body intact');
    is(hdr($j, 'transfer-encoding'), 'chunked', 'upstream body re-framed as chunked');

    ($code, $body) = curl('/echo', '--data-binary', "\@$f");
    is(length $body, 100000, 'echo of 100 kB');
    is(sha256_hex($body), sha256_hex($data), 'echoed body intact');

    my ($c2, $b2, $h2) = curl('/chunked');
    is($c2, 200, 'chunked response');
    is($h2->{'transfer-encoding'}, 'chunked', 'client gets chunked re-framing');
    is(backend_json($b2)->{path}, '/chunked', 'chunked response body intact');

    my $n = 8_000_000;
    my ($c3, $b3) = curl("/bytes/$n", '--limit-rate', '20M');
    is($c3, 200, 'large download');
    is(length $b3, $n, 'all bytes of a large download');
    is(sha256_hex($b3), Hamlyn::Test::pattern_sha256($n), 'large download intact');
}

# ---- HEAD, 204, 304 ----------------------------------------------------

{
    my $out = raw("HEAD /bytes/1000 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /status/204 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /status/304 HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 204, 304, 200], 'HEAD, 204, 304 pipelined, in order');
    like($out, qr/Content-Length: 1000\r\n(?:[^\r]+\r\n)*\r\nHTTP\/1\.1 204/, 'HEAD: no body, length kept');
    like($out, qr/304 [^\r]*\r\n(?:[^\r]+\r\n)*\r\nHTTP\/1\.1 200/, '304: no body');
    my ($h204) = $out =~ m{(HTTP/1\.1 204 .*?\r\n\r\n)}s;
    unlike($h204 // '', qr/^Content-Length:/mi,
           "a 204 is forwarded without the upstream's Content-Length (RFC 9110 8.6)");
    like($out, qr/fixed body\n\n\[\[EOF\]\]$/, 'last answer, then closed (Connection: close)');
}

# ---- keep-alive, pipelining, upstream pool ----------------------------

{
    my ($code, $body) = curl('/a', '-o', $t->dir . '/ka1', '--next',
        '--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
        "https://a.test:$p/b");
    my $j = backend_json($body);
    is($code, 200, 'two requests on one curl connection');
    ok($j->{conn_requests} >= 2, 'the upstream connection was reused (pool)');

    my $req = join '', map { "GET /p$_ HTTP/1.1\r\nHost: a.test\r\n\r\n" } 1 .. 3;
    my $out = raw($req . "POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
                  . "GET /p5 HTTP/1.1\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [200, 200, 200, 200, 200], 'five pipelined requests answered');
    my @paths = $out =~ /"path": "([^"]+)"/g;
    is_deeply(\@paths, [qw(/p1 /p2 /p3 /p5)], 'pipelined answers in order');
    like($out, qr/\r\n\r\nhello/, 'pipelined POST body delivered');
    like($out, qr/Connection: close/, 'max_requests (5) reached: Connection: close');
    like($out, qr/\[\[EOF\]\]$/, 'closed after max_requests');

    # Pipelined requests behind one with a long body (found by
    # t/chaos/chaos.py): the body bytes that arrived with the second
    # request's head filled the workspace although already forwarded, and
    # the third request's bytes closed the connection ("too many pipelined
    # bytes") before the first answer.
    my $big = 'z' x 100000;
    $out = raw(join '', map { "POST /big$_ HTTP/1.1\r\nHost: a.test\r\n"
                              . 'Content-Length: ' . length($_ ? $big : '') . "\r\n\r\n"
                              . ($_ ? $big : '') } 0 .. 2);
    is_deeply(statuses($out), [200, 200, 200],
              'three pipelined POSTs, two with 100 kB bodies: all answered');
    is_deeply([ $out =~ /"body_len": (\d+)/g ], [0, 100000, 100000],
              '... with their whole bodies');

    # A bad pipelined request is logged with what the proxy was doing
    # (reading its head), not with the previous request's last action.
    $out = raw("GET /pl1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
               . "GET /pl2 HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [200, 400], 'pipelined request with two Hosts: 400 after the first answer');
    my @l = grep { /several Host headers/ } split /\n/, $t->error_log;
    like($l[-1] // '', qr/\(while reading a request head\)$/,
         '... logged "while reading a request head"');

    my $split = raw("GET /s1 HTTP/1.1\r\nHo<<PAUSE>>st: a.test\r\n<<PAUSE>>\r\n");
    is_deeply(statuses($split), [200], 'head split across TLS records');
}

# ---- Expect: 100-continue --------------------------------------------

{
    my $out = raw("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n"
                . "Expect: 100-continue\r\n\r\n<<PAUSE>>abcd", pause => 0.5);
    like($out, qr/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /,
         '100 Continue answered before the body, then the response');
    like($out, qr/\r\n\r\nabcd/, 'body after 100-continue delivered');
    my $big = raw("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999\r\n"
                . "Expect: 100-continue\r\n\r\n");
    is_deeply(statuses($big), [413], 'oversized body refused without 100 Continue');
    my ($code, $body) = curl('/echo', '-H', 'Expect: 100-continue', '--data-binary',
                             'y' x 5000);
    is($code, 200, 'curl with Expect: 100-continue');
    is($body, 'y' x 5000, 'curl body through 100-continue');
    my $bad = raw("GET / HTTP/1.1\r\nHost: a.test\r\nExpect: something\r\n\r\n");
    is_deeply(statuses($bad), [417], 'unknown Expect: 417');
}

# ---- WebSocket upgrade -------------------------------------------------

{
    my $out = raw("GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\n"
                . "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                . "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
                . "<<PAUSE>>ping-1<<PAUSE>>ping-2", pause => 0.4);
    like($out, qr/^HTTP\/1\.1 101 /, '101 Switching Protocols forwarded');
    like($out, qr/Upgrade: websocket/i, 'Upgrade header kept on 101');
    like($out, qr/ws-backend=be1\n/, 'tunnel reaches the backend');
    like($out, qr/ping-1ping-2/, 'raw bytes relayed both ways after 101');
}

# ---- limits ------------------------------------------------------------

{
    my $out = raw("GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " . ('a' x 5000) . "\r\n\r\n");
    is_deeply(statuses($out), [431], 'head over max_header_bytes: 431');
    like($out, qr/\[\[EOF\]\]$/, '431 then close');

    $out = raw("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2000000\r\n\r\n");
    is_deeply(statuses($out), [413], 'Content-Length over max_body_bytes: 413');

    my $chunk = sprintf("%x\r\n%s\r\n", 300000, 'z' x 300000);
    $out = raw("POST /echo HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
             . ($chunk x 4) . "0\r\n\r\n");
    is_deeply(statuses($out), [413], 'chunked body over max_body_bytes: 413');
    like($out, qr/\[\[EOF\]\]$/, 'chunked 413 then close');

    my $t0 = time;
    $out = raw("GET / HTTP/1.1\r\nHost: a.te", idle => 5);
    is_deeply(statuses($out), [408], 'header_timeout_ms with a started request: 408');
    ok(time - $t0 < 4, 'header timeout fired in time');

    $t0 = time;
    $out = raw('', idle => 5);
    is($out, "\n[[EOF]]", 'no request at all: closed without an answer');
    ok(time - $t0 < 4, 'closed after header_timeout_ms');

    $out = raw("GET /idle HTTP/1.1\r\nHost: a.test\r\n\r\n", idle => 6);
    is_deeply(statuses($out), [200], 'request before idling');
    like($out, qr/\[\[EOF\]\]$/, 'idle keep-alive connection closed (idle_timeout_ms)');
}

# ---- routes ------------------------------------------------------------

{
    my ($code, $body, $h) = curl('/fixed');
    is($code, 200, 'fixed route status');
    is($body, "fixed body\n", 'fixed route body');
    is($h->{'content-type'}, 'text/x-test', 'fixed route content_type');
    SKIP: {
        skip 'set_response needs headers_sanitise', 1 unless $HS;
        is($h->{'strict-transport-security'}, 'max-age=60', 'set_response on fixed answers');
    }

    ($code, $body) = curl('/admin/x');
    is($code, 403, 'admin prefix');
    ($code) = curl('/v1/../admin/x', '--path-as-is');
    is($code, 403, '/v1/../admin/ routes as /admin/');
    ($code) = curl('//admin//x', '--path-as-is');
    is($code, 403, 'repeated slashes merged for routing');
    ($code) = curl('/%61dmin/x', '--path-as-is');
    is($code, 403, 'percent-encoded unreserved decoded for routing');
    ($code) = curl('/./admin/./x', '--path-as-is');
    is($code, 403, 'dot segments resolved for routing');
    ($code) = curl('/x/..%2fadmin/y', '--path-as-is');
    is($code, 403, 'an encoded slash is a slash for routing (/x/..%2f cannot skip /admin/)');
    ($code) = curl('/x%2F..%2Fadmin%2Fy', '--path-as-is');
    is($code, 403, '... also as the only slashes around the dot segment');

    ($code, $body) = curl('/m/x', '-X', 'PUT');
    is($code, 201, 'methods match');
    ($code) = curl('/m/x', '-X', 'FROB');
    is($code, 501, 'a method the parser does not know: 501 Not Implemented');
    ($code) = curl('/m/x');
    is($code, 200, 'other method falls through to the next route');
    ($code) = curl('/h/x', '-H', 'X-Canary: 1');
    is($code, 202, 'headers match');
    ($code) = curl('/h/x', '-H', 'X-Canary: 2');
    is($code, 200, 'header mismatch falls through');
    ($code) = $t->curl('-k', '--resolve', "b.test:$p:127.0.0.1",
                       "https://b.test:$p/host/x");
    is($code, 203, 'host match');
    ($code) = curl('/host/x');
    is($code, 200, 'host mismatch falls through');
    # RFC 9110 8.6: a 204 carries no Content-Length (and no body); the
    # connection stays usable.
    my $o204 = raw("GET /empty HTTP/1.1\r\nHost: a.test\r\n\r\n"
                 . "GET /fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($o204), [204, 200], 'fixed 204, then the next request on the connection');
    my ($h204) = $o204 =~ m{^(HTTP/1\.1 204 .*?\r\n\r\n)}s;
    unlike($h204 // '', qr/^Content-Length:/mi, 'a fixed 204 has no Content-Length');
    ($code, $body) = curl('/nowhere');
    is($code, 404, 'status-only route');

    # A small body already received with the head is skipped by a local
    # answer: the connection stays open for the next request (as nginx
    # discards it).  A body still to come closes the connection.
    my $ob = raw("POST /fixed HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello"
               . "POST /fixed HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
               . "5\r\nhello\r\n0\r\n\r\n"
               . "GET /fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($ob), [200, 200, 200],
              'POSTs with their bodies to a fixed route, pipelined: every request answered');
    unlike($ob, qr/^HTTP\/1\.1 200 [^\r]*\r\n(?:[^\r]+\r\n)*Connection: close\r\n.*HTTP\/1\.1/s,
           '... without closing after the first ones');
    $ob = raw("POST /fixed HTTP/1.1\r\nHost: a.test\r\nContent-Length: 50\r\n\r\nhello");
    like($ob, qr/^HTTP\/1\.1 200 [^\r]*\r\n(?:[^\r]+\r\n)*Connection: close\r\n.*\[\[EOF\]\]$/s,
         'a body still to come: Connection: close, closed');

    my $out = raw("GET /fixed HTTP/1.1\r\nHost: other.test\r\n\r\n");
    is_deeply(statuses($out), [421], 'Host of another site than the SNI: 421');
    $out = raw("GET /fixed HTTP/1.1\r\nHost: B.test:443\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [200], 'Host naming another name of the same site: served');
    # The fully qualified spelling (trailing dot; curl https://a.test./
    # sends it, with SNI a.test) is the same name, as in nginx.
    $out = raw("GET /fixed HTTP/1.1\r\nHost: a.test.:$p\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [200], 'Host with a trailing dot (FQDN): served');
    $out = raw("GET /host/x HTTP/1.1\r\nHost: B.test.\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [203], 'trailing-dot Host matches a host route');

    # No SNI (an IP literal is never sent as SNI): the default site a
    # answered the handshake, so a Host naming another site of the
    # listener is misdirected; a's own names and unknown names are a's.
    my %nosni = (sni => '127.0.0.1');
    $out = raw("GET /fixed HTTP/1.1\r\nHost: default.test\r\n\r\n", %nosni);
    is_deeply(statuses($out), [421], 'no SNI, Host of another site: 421');
    $out = raw("GET /fixed HTTP/1.1\r\nHost: X.d.test:443\r\n\r\n", %nosni);
    is_deeply(statuses($out), [421], 'no SNI, Host under another site\'s wildcard: 421');
    $out = raw("GET /fixed HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n", %nosni);
    like($out, qr{^HTTP/1\.1 200 .*fixed body\n}s, 'no SNI, Host of the default site: served');
    $out = raw("GET /fixed HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", %nosni);
    like($out, qr{^HTTP/1\.1 200 .*fixed body\n}s, 'no SNI, Host of no site: the default site');
    like($t->error_log, qr/Host "default\.test" names site "d", but the client sent no SNI/,
         '... the 421 is logged with both sites');
}

# ---- absolute-form and asterisk-form targets (RFC 9112 3.2.2, 3.2.4) ----

{
    my $out = raw("GET https://a.test/abs/x?y=1 HTTP/1.1\r\nHost: ignored.test\r\n"
                . "Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200], 'absolute-form target: served (Host ignored)');
    like($out, qr{"path": "/abs/x\?y=1"}, 'absolute-form: forwarded in origin-form');
    like($out, qr{\["Host", "a\.test"\]}, 'absolute-form: its authority is the Host upstream');
    unlike($out, qr/ignored\.test/, 'absolute-form: the client Host never reaches the backend');

    $out = raw("GET HTTP://A.test:443?q HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [200], 'absolute-form, http scheme, no path: served');
    like($out, qr{"path": "/\?q"}, 'absolute-form without path: forwarded as /?q');

    $out = raw("GET https://b.test/host/x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [203], 'absolute-form: routed by its authority (host route)');

    $out = raw("GET https://a.test/fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    like($out, qr{^HTTP/1\.1 200 .*fixed body\n}s, 'absolute-form to a fixed route');

    $out = raw("GET https://other.test/fixed HTTP/1.1\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [421], 'absolute-form naming another site than the SNI: 421');

    $out = raw("GET ftp://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [400], 'absolute-form with another scheme: 400');
    $out = raw("CONNECT a.test:443 HTTP/1.1\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [400], 'CONNECT (authority-form): 400');
    $out = raw("GET * HTTP/1.1\r\nHost: a.test\r\n\r\n");
    is_deeply(statuses($out), [400], 'asterisk-form outside OPTIONS: 400');

    $out = raw("OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n"
             . "GET /fixed HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'OPTIONS *: answered by the proxy, connection kept');
    like($out, qr{^HTTP/1\.1 200 [^\r]*\r\n(?:[^\r]+\r\n)*Content-Length: 0\r\n}s,
         'OPTIONS *: empty body');
    unlike($out, qr/"method": "OPTIONS"/, 'OPTIONS * does not reach the backend');
}

# ---- Date on the proxy's own answers (and on forwarded ones without) ----

{
    my $DATE = qr/\r\nDate: ((?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT)\r\n/;
    my $out = raw("GET /fixed HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /nowhere HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /admin/x HTTP/1.1\r\nHost: a.test\r\n\r\n"
                . "GET /hello HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n");
    my @resp = split /(?=HTTP\/1\.1 \d{3} )/, $out;
    is(scalar(@resp), 4, 'four answers');
    for my $i (0 .. 2) {
        my ($d) = ($resp[$i] // '') =~ $DATE;
        ok(defined $d, "proxy's own answer " . ($i + 1) . " has an IMF-fixdate Date")
            or diag($resp[$i]);
        if (defined $d) {
            my %mon; @mon{qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec)} = (0 .. 11);
            my @f = $d =~ /(\d\d) (\w{3}) (\d{4}) (\d\d):(\d\d):(\d\d)/;
            my $ts = POSIX::mktime($f[5], $f[4], $f[3], $f[0], $mon{$f[1]}, $f[2] - 1900);
            # mktime is local time: compare with gmtime of now instead
            my @g = gmtime(time);
            my $now = POSIX::mktime(@g[0 .. 5]);
            ok(abs($now - $ts) <= 3, "Date is now (+-3 s): $d");
        }
    }
    like($resp[3] // '', $DATE, 'a forwarded answer without Date gets one');
    my $bad = raw("GET /x HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n");
    like($bad, qr{^HTTP/1\.1 400 }, '400 for a bad head');
    like($bad, $DATE, '400 has a Date');
}

# ---- a chunked body that turns bad after the head went upstream --------

{
    my $out = raw("POST /post HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                . "5\r\nhello\r\n<<PAUSE>>zz\r\nGET /smuggled-late HTTP/1.1\r\nHost: a.test\r\n\r\n",
                  pause => 0.5);
    is_deeply(statuses($out), [400], 'invalid chunk size mid-stream: 400');
    like($out, qr/\[\[EOF\]\]$/, 'then closed');
    sleep 0.3;
    open my $fh, '<', $be->{log} or die;
    my $log = do { local $/; <$fh> };
    unlike($log, qr/smuggled-late/, 'nothing after the bad chunk reached the backend');
}

# ---- graceful drain: the request in flight finishes --------------------

{
    my $codef = $t->dir . '/drain.code';
    my $bodyf = $t->dir . '/drain.body';
    my $pid = fork;
    if ($pid == 0) {
        open STDOUT, '>', $codef or POSIX::_exit(1);
        open STDERR, '>', '/dev/null';
        { no warnings 'exec';
          exec 'curl', '-s', '-o', $bodyf, '-w', '%{http_code}', '--cacert', "$certs/ca.pem",
              '--resolve', "a.test:$p:127.0.0.1", "https://a.test:$p/slow?ms=1200"; }
        POSIX::_exit(127);
    }
    sleep 0.5;
    ok($t->signal('QUIT'), 'QUIT sent with a request in flight');
    waitpid($pid, 0);
    open my $fh, '<', $codef or die;
    is(scalar <$fh>, '200', 'the request in flight was answered during the drain');
    ok(defined $t->wait_exit(10), 'then hamlyn exited');
}

{
    # A site whose routes do not cover everything: 404 from the proxy.
    my $c = conf();
    $c->{sites}{a}{routes} = [ { match => { path_prefix => '/only/' }, upstream => 'be' } ];
    $c->{sites}{a}{headers}{forwarded} = 'append' if $HS;
    $t->stop;
    $t->write_conf($c);
    $t->run or BAIL_OUT('restart');
    my ($code, $body) = curl('/elsewhere');
    is($code, 404, 'no route matches: 404 from the proxy');
    like($body, qr/404/, '404 short body');
    ($code) = curl('/only/x');
    is($code, 200, 'the route that matches');

    SKIP: {
        skip 'forwarded append needs headers_sanitise', 3 unless $HS;
        # "append" keeps the list a trusted proxy in front sent, however
        # long (here ~3 KB, two fields), and extends it.
        my $xff = join(', ', map { "10.0.0.$_" } 1 .. 250);
        my ($c2, $b2) = curl('/only/xff', '-H', "X-Forwarded-For: $xff",
                             '-H', 'X-Forwarded-For: 8.8.8.8', '-H', 'Forwarded: for=1.2.3.4');
        my $j = backend_json($b2);
        is(hdr($j, 'x-forwarded-for'), "$xff, 8.8.8.8, 127.0.0.1",
           'forwarded append: the whole X-Forwarded-For list, then the client address');
        is(hdr($j, 'forwarded'), "for=1.2.3.4, for=127.0.0.1;proto=https;host=\"a.test:$p\"",
           'forwarded append: Forwarded extended');
        is(hdr($j, 'x-forwarded-proto'), 'https', 'forwarded append: X-Forwarded-Proto set when absent');
    }
}

# ---- access log --------------------------------------------------------

{
    my $log = $t->access_log;
    my @l = grep { ($_->{path} // '') eq '/only/x' } @$log;
    is(scalar @l, 1, 'one access-log line per request');
    my $e = $l[0] // {};
    for my $k (qw(time client sni site method path status bytes_in bytes_out
                  upstream duration_ms upstream_ms outcome)) {
        ok(exists $e->{$k}, "access log has $k");
    }
    is($e->{status}, 200, 'access log status');
    is($e->{site}, 'a', 'access log site');
    is($e->{sni}, 'a.test', 'access log sni');
    is($e->{upstream}, "127.0.0.1:$be->{port}", 'access log upstream');
    my %workers = map { $_ => 1 } $t->worker_pids;
    ok($e->{pid} && $workers{$e->{pid}}, 'access log pid is the worker\'s');
    my @bad = grep { ($_->{status} // 0) == 431 } @$log;
    ok(@bad >= 1, 'refused requests are logged too');
    my @e417 = grep { ($_->{status} // 0) == 417 } @$log;
    is(scalar @e417, 1, 'the 417 is logged');
    is($e417[0]{method}, 'GET', 'a refused head with a valid request line logs its method');
    is($e417[0]{path}, '/', '... and its path');
}

# ---- the default configuration ----------------------------------------

SKIP: {
    my $top = $t->top;
    my $demo = "$top/conf/certs/demo.pem";
    if (!-f $demo && -x "$top/auto/demo-cert.sh") {
        system("sh '$top/auto/demo-cert.sh' >/dev/null 2>&1");
    }
    skip 'conf/hamlyn.json or its demo certificate missing', 4
        unless -f "$top/conf/hamlyn.json" && -f $demo;
    open my $fh, '<', "$top/conf/hamlyn.json" or die;
    my $c = decode_json(do { local $/; <$fh> });
    my $dp = $t->port;
    $c->{listeners}[0]{listen} = ["127.0.0.1:$dp"];
    for my $cert (values %{ $c->{certificates} }) {
        $cert->{$_} = "$top/conf/$cert->{$_}" for grep { $cert->{$_} !~ m{^/} } qw(cert key);
    }
    delete $c->{runtime};
    $c->{runtime} = { workers => 1 };
    $t->stop;
    $t->write_conf($c);
    $t->run or BAIL_OUT('default configuration did not start');
    my ($code, $body) = $t->curl('-k', "https://localhost:$dp/", '--resolve',
                                 "localhost:$dp:127.0.0.1");
    is($code, 200, 'curl -k https://localhost/ with the default configuration');
    like($body, qr/Hamlyn/, 'answered by the fixed route of conf/hamlyn.json');
    ($code, $body) = $t->curl('-k', "https://localhost:$dp/healthz", '--resolve',
                              "localhost:$dp:127.0.0.1");
    is($code, 200, 'default /healthz');
    ($code) = $t->curl('-k', "https://localhost:$dp/nope", '--resolve',
                       "localhost:$dp:127.0.0.1");
    is($code, 404, 'default catch-all 404');
}

$t->stop;

# ---- response headers: set_response replaces, strip_response in any
# case and by prefix, hop-by-hop and Connection-named fields dropped ----
SKIP: {
    skip 'set_response/strip_response need headers_sanitise', 6 unless $HS;
    my $tr = Hamlyn::Test->new(name => '40-http-resp');
    my ($rp, $up) = ($tr->port, $tr->port);
    my $resp = "HTTP/1.1 200 OK\r\nServer: be\r\nSERVER: be2\r\nX-Powered-By: php\r\n"
             . "x-powered-by-extra: 1\r\nStrict-Transport-Security: max-age=1\r\n"
             . "strict-transport-security: max-age=2\r\nConnection: X-Foo\r\nX-Foo: bar\r\n"
             . "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Keep: 1\r\n"
             . "Content-Length: 3\r\n\r\nabc";
    my $pid = fork // die;
    if (!$pid) {
        exec 'python3', '-c', 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); s.settimeout(30)
while True:
    c, _ = s.accept(); c.settimeout(5); b = b""
    while b"\r\n\r\n" not in b:
        d = c.recv(65536)
        if not d: break
        b += d
    c.sendall(sys.argv[2].encode()); c.close()', $up, $resp;
        exit 127;
    }
    my $c = conf();
    $c->{upstreams}{be}{servers} = ["127.0.0.1:$up"];
    $c->{listeners}[0]{listen} = ["127.0.0.1:$rp"];
    $c->{sites}{a}{headers}{strip_response} = ['server', 'X-POWERED-*'];
    $c->{sites}{a}{limits}{max_requests} = 100;
    $tr->write_conf($c);
    $tr->run or BAIL_OUT('hamlyn (response headers) did not start');
    my $out = '';
    for (1 .. 20) {     # until the one-shot backend listens
        $out = $tr->raw_tls("GET /r HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", port => $rp);
        last if $out =~ m{^HTTP/1\.1 200 };
        sleep 0.1;
    }
    my ($head) = split /\r\n\r\n/, $out;
    my @f = map { [ split /:\s*/, $_, 2 ] } grep { /:/ } split /\r\n/, $head // '';
    my @names = map { lc $_->[0] } @f;
    like($out, qr{^HTTP/1\.1 200 .*\r\n\r\nabc}s, 'response relayed');
    is_deeply([map { $_->[1] } grep { lc $_->[0] eq 'strict-transport-security' } @f], ['max-age=60'],
              'set_response replaces both upstream copies, once');
    is_deeply([grep { /^(?:server|x-powered-)/ } @names], [], 'strip_response: names and prefixes in any case');
    is_deeply([grep { /^(?:x-foo|keep-alive|proxy-connection)$/ } @names], [],
              'hop-by-hop and Connection-named response fields dropped');
    ok((grep { $_ eq 'x-keep' } @names), 'end-to-end response field kept');
    is(scalar(grep { $_ eq 'connection' } @names), 1, 'one Connection header, the proxy\'s');
    $tr->stop;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

done_testing;
