#!/usr/bin/perl
# t/44-upstream-hostile.t: a terminating site in front of upstreams that
# misbehave on purpose (t/lib/hm_backend.py modes hostile and hostile-tls,
# one case per request path).  What the client sees and what is logged:
#   - an invalid response head (bad status line, NUL / bare CR in a value,
#     obs-fold, a bad header name, Content-Length with Transfer-Encoding,
#     two Content-Lengths, a head over the size limit, too many fields) and
#     a bad chunk size arriving with the head: the proxy's own 502 (short
#     body, right Content-Length), nothing of the upstream's bytes, the
#     reason in the log, and the upstream connection is not reused (a
#     status outside 100..599 too, RFC 9110 15);
#   - a body cut off (Content-Length or chunked): the client connection
#     closes, no fake last chunk;
#   - a valid 12 KB response head is forwarded even where the site's
#     max_header_bytes (requests) is 1024;
#   - read_timeout_ms bounds the whole response head, however slowly it
#     drips or however many interim 1xx responses come first;
#   - a server that closes every new connection before answering is
#     ejected after max_fails;
#   - bytes after a complete response (a second response, a body after
#     204): the connection is not reused, logged;
#   - a pooled connection dying under a POST: the body bytes the failed
#     write took are never parsed as the client's next request;
#   - TLS: a body delimited by the close ends cleanly with close_notify,
#     but a FIN without close_notify is a truncation (no last chunk).
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $p = $t->port;
my $h = $t->backend(mode => 'hostile', name => 'H') or BAIL_OUT('hostile backend');
my $ht = Hamlyn::Test::has('upstream_tls')
    ? ($t->backend(mode => 'hostile-tls', cert => 'backend.test', name => 'HT')
       or BAIL_OUT('hostile TLS backend'))
    : undef;

my %up = (
    h => { servers => ["127.0.0.1:$h->{port}"],
           plaintext => { accepted_risk => 'test backends on loopback' },
           connect_timeout_ms => 1000, read_timeout_ms => 1000,
           max_fails => 0 },
);
# the same server, with passive health on
$up{hmf} = { %{ $up{h} }, max_fails => 2, fail_timeout_s => 60 };
my @routes = ({ match => { headers => { 'x-up' => 'hmf' } }, upstream => 'hmf' },
              { match => { path_prefix => '/' }, upstream => 'h' });
if ($ht) {
    $up{ht} = { servers => ["127.0.0.1:$ht->{port}"],
                tls => { server_name => 'backend.test', ca => "$certs/ca.pem" },
                connect_timeout_ms => 1000, read_timeout_ms => 1000 };
    unshift @routes, { match => { headers => { 'x-tls' => '1' } }, upstream => 'ht' };
}
$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => \%up,
    listeners => [ { name => 'l', listen => ["127.0.0.1:$p"], sites => ['a'] } ],
    sites => { a => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] }, routes => \@routes,
                      # the request limit does not bound response heads
                      limits => { max_header_bytes => 1024 } } },
});
$t->run or BAIL_OUT('hamlyn did not start');

sub curl {
    my ($path, @args) = @_;
    return $t->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                    @args, "https://a.test:$p$path");
}
sub conn_requests {
    my (@hdr) = @_;
    my ($c, $b) = curl('/ok', @hdr);
    my $j = eval { decode_json($b) } // {};
    return $c == 200 ? $j->{conn_requests} // -1 : "status $c";
}

# ---- invalid response heads: 502, nothing forwarded, reason logged -------

my %bad = (
    badstatus => qr/sent an invalid response head: /,
    status704 => qr/sent an invalid response head: invalid status code \(outside 100\.\.599\)/,
    nul       => qr/sent an invalid response head: invalid character/,
    barecr    => qr/sent an invalid response head: \S/,
    fold      => qr/sent an invalid response head: obs-fold/,
    badname   => qr/sent an invalid response head: invalid character/,
    clte      => qr/sent an invalid response head: \S/,
    twocl     => qr/sent an invalid response head: \S/,
    bighead   => qr/sent a response head too large/,
    manyhdrs  => qr/sent too many header fields/,
    badchunk  => qr/sent an invalid chunked body/,
);
is(conn_requests(), 1, 'a first request opens an upstream connection');
for my $case (sort keys %bad) {
    my ($c, $b, $hd) = curl("/$case/x");
    is($c, 502, "$case: 502");
    is($b, "502 Bad Gateway\n", "$case: the proxy's own short body");
    is($hd->{'content-length'}, length $b, "$case: Content-Length of that body");
    unlike($hd->{':raw'} . $b, qr/SMUGGLED/, "$case: nothing of the upstream's answer");
    ok($t->wait_error_log(qr/\[error\].*upstream "h" 127\.0\.0\.1:$h->{port}: $bad{$case}/),
       "$case: logged with its reason");
    is(conn_requests(), 1, "$case: the upstream connection was not reused");
}

# ---- a response head of 12 KB: forwarded, even under a site whose
# max_header_bytes (requests) is 1024 (it got 502 "too large to forward")

{
    my ($c, $b, $hd) = curl('/head12k/x');
    is($c, 200, 'response head of 12 KB with max_header_bytes 1024: 200');
    is(length($hd->{'x-big'} // ''), 12000, '... with its 12 KB header');
}

# ---- read_timeout_ms bounds the whole head --------------------------------
# (1000 here) from the end of the request: neither a head dripped a byte
# every 50 ms nor a stream of 103s restarts it.

for my $case (qw(drip flood1xx)) {
    my $t0 = time;
    my ($c) = curl("/$case/x");
    my $el = time - $t0;
    is($c, 504, "$case: 504");
    ok($el < 2.5, sprintf('%s: after read_timeout_ms (%.1f s)', $case, $el));
}
like($t->error_log, qr/upstream "h" \S+: timed out \(while reading response header from upstream\)/,
     'head timeout logged');

# ---- a server that closes every new connection before answering ----------
# counts against it (max_fails 2) like a head timeout: 502, 502, then
# ejected (503 without a connection).

{
    my @codes = map { (curl("/closenow/$_", '-H', 'X-Up: hmf'))[0] } 1 .. 4;
    is_deeply(\@codes, [502, 502, 503, 503],
              'server closing before the response head: ejected after max_fails')
        or diag(explain \@codes);
    like($t->error_log, qr/upstream "hmf" \S+: closed the connection before the response head/,
         '... each close logged');
}

# ---- truncated bodies: the client sees the connection close --------------

{
    my ($c, $b, $hd, $exit) = curl('/midcl/x');
    isnt($exit, 0, 'Content-Length body cut off: the client sees an incomplete response');
    is($b, 'only-ten..', '... with the bytes that came');
    my $out = $t->raw_tls("GET /midchunk/x HTTP/1.1\r\nHost: a.test\r\n\r\n", port => $p,
                          idle => 3);
    like($out, qr{^HTTP/1\.1 200 .*\r\n5\r\nhello\r\n\n\[\[EOF\]\]$}s,
         'chunked body cut off: the connection closes after the bytes that came');
    unlike($out, qr/\r\n0\r\n\r\n/, '... and no last chunk is made up');
    ok($t->wait_error_log(qr/upstream "h" \S+: closed the connection in the middle of the response body/),
       'truncation logged');
}

# ---- bytes after a complete response: connection discarded ---------------

for my $case (qw(junk body204)) {
    my ($c, $b) = curl("/$case/x");
    is($c, $case eq 'junk' ? 200 : 204, "$case: the response itself is forwarded");
    unlike($b, qr/SMUGGLED/, "$case: without the extra bytes");
    is(conn_requests(), 1, "$case: the next request gets a new upstream connection");
}
like($t->error_log, qr/\[warn\].*upstream "h" \S+: sent data after the end of the response, connection not reused/,
     'extra bytes logged at warn');

# ---- an interim response, then the close, on a pooled connection ----------
# The upstream acted on the request (it answered 100): a GET is not retried
# on a new connection, though the pooled connection failed before a final
# response (found by t/diff/diff.py: the backend saw the request twice).

{
    ok(conn_requests() >= 1, 'interimclose: a pooled connection to take');
    my ($c) = curl('/interimclose/once');
    is($c, 502, 'interimclose: 502');
    my $log = do { local $/; open my $f, '<', $h->{log} or die; <$f> };
    my $n = () = $log =~ m{/interimclose/once}g;
    is($n, 1, 'interimclose: the request reached the upstream once, not retried');
}

# ---- a pooled connection that dies under a POST with a body --------------
# The upstream answers, then closes at once; a pipelined POST may take the
# pooled connection before its FIN is seen, and fail while its body goes
# out (502: not idempotent, not retried).  The body bytes the failed write
# took must never be parsed as the client's next request: here the body
# is itself a request, which neither the upstream nor the client may see
# answered (a third, real request follows).

{
    my $smuggled = "GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n";
    my ($rounds, $bad, $raced) = (6, 0, 0);
    for my $i (1 .. $rounds) {
        my $out = $t->raw_tls("GET /close204/$i HTTP/1.1\r\nHost: a.test\r\n\r\n"
                              . "POST /ok/$i HTTP/1.1\r\nHost: a.test\r\nContent-Length: "
                              . length($smuggled) . "\r\n\r\n$smuggled"
                              . "GET /ok/last HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                              port => $p, idle => 3);
        my @st = $out =~ m{HTTP/1\.1 (\d{3}) }g;
        $raced++ if grep { $_ == 502 } @st;
        unless (@st <= 3 && $out =~ /\[\[EOF\]\]$/) {
            $bad++;
            diag($out);
        }
    }
    my $log = do { local $/; open my $f, '<', $h->{log} or die; <$f> };
    unlike($log, qr{/smuggled}, 'a failed POST body never reaches the upstream as a request');
    is($bad, 0, "... nor the client as an answer ($raced of $rounds rounds raced)");
}

# ---- TLS upstream: close_notify vs a bare FIN ------------------------------

SKIP: {
    skip 'upstream_tls not compiled in', 5 unless $ht;
    my $out = $t->raw_tls("GET /eof/x HTTP/1.1\r\nHost: a.test\r\nX-TLS: 1\r\n"
                          . "Connection: close\r\n\r\n", port => $p, idle => 3);
    like($out, qr{^HTTP/1\.1 200 .*\r\nbody until close\r\n0\r\n\r\n\n\[\[EOF\]\]$}s,
         'TLS upstream, body ended by close_notify: complete (last chunk)');
    $out = $t->raw_tls("GET /trunc/x HTTP/1.1\r\nHost: a.test\r\nX-TLS: 1\r\n"
                       . "Connection: close\r\n\r\n", port => $p, idle => 3);
    like($out, qr{^HTTP/1\.1 200 .*\r\nbody until close\r\n\n\[\[EOF\]\]$}s,
         'TLS upstream, body ended by a FIN without close_notify: the client sees the close');
    unlike($out, qr/\r\n0\r\n\r\n/, '... and no last chunk (a truncation is not an end)');
    ok($t->wait_error_log(qr/\[error\].*upstream "ht" \S+: closed the connection without TLS close_notify in the middle of the response body/),
       'TLS truncation logged');
    my ($c, $b) = curl('/midcl/x', '-H', 'X-TLS: 1');
    is($b, 'only-ten..', 'TLS upstream, Content-Length body cut off: partial bytes, then close');
}

$t->stop;
done_testing;
