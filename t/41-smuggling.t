#!/usr/bin/perl
# t/41-smuggling.t: request smuggling shapes are refused with 400 (or the
# listed status) and the connection is closed; the request smuggled behind
# each one never reaches the backend (its request log is checked).  Also:
# requests hidden inside a valid body stay body bytes, re-framed.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $be = $t->backend(mode => 'http') or BAIL_OUT('backend did not start');
my $p = $t->port;

# raw($bytes, idle => 3): sends $bytes over TLS to a.test, returns what
# came back ending in [[EOF]], [[IDLE]] or [[TIMEOUT]] (Hamlyn::Test raw_tls).
sub raw {
    my ($data, %o) = @_;
    return $t->raw_tls($data, port => $p, idle => $o{idle} // 3);
}
sub statuses { my ($out) = @_; return [ $out =~ m{HTTP/1\.1 (\d{3}) }g ] }
sub backend_log {
    open my $fh, '<', $be->{log} or return '';
    local $/;
    return <$fh> // '';
}

$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => { be => { servers => ["127.0.0.1:$be->{port}"],
                           plaintext => { accepted_risk => 'test backend on loopback' } } },
    listeners => [ { name => 'l', listen => ["127.0.0.1:$p"], sites => ['a'],
                     default_site => 'a' } ],
    sites => { a => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      routes => [ { match => { path_prefix => '/' }, upstream => 'be' } ] } },
});
$t->run or BAIL_OUT('hamlyn did not start');

my $H = "Host: a.test\r\n";
my @cases = (
    # [name, request bytes (the smuggled GET follows), expected status]
    ['CL + TE', "POST /a HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['TE + CL', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n"],
    ['CL + TE (identity)', "POST /a HTTP/1.1\r\n${H}Content-Length: 6\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"],
    ['two CL, different', "POST /a HTTP/1.1\r\n${H}Content-Length: 0\r\nContent-Length: 5\r\n\r\nabcde"],
    ['two CL, same', "POST /a HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nabcde"],
    ['CL list', "POST /a HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nabcde"],
    ['CL plus sign', "POST /a HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nabcde"],
    ['CL minus sign', "POST /a HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\n"],
    ['CL space inside', "POST /a HTTP/1.1\r\n${H}Content-Length: 1 0\r\n\r\nabcdefghij"],
    ['CL hex', "POST /a HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nabcde"],
    ['CL empty', "POST /a HTTP/1.1\r\n${H}Content-Length:\r\n\r\n"],
    ['CL overflow', "POST /a HTTP/1.1\r\n${H}Content-Length: 18446744073709551621\r\n\r\nabcde"],
    ['CL space before colon', "POST /a HTTP/1.1\r\n${H}Content-Length : 5\r\n\r\nabcde"],
    ['TE chunked, identity', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"],
    ['TE gzip, chunked', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"],
    ['TE xchunked', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"],
    ['TE chunked twice', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['TE identity', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\n"],
    ['TE space before colon', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"],
    ['TE vertical tab', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n"],
    ['TE obs-fold', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"],
    ['TE in HTTP/1.0', "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
    ['obs-fold', "GET /a HTTP/1.1\r\n${H}X-A: 1\r\n 2\r\n\r\n"],
    ['leading whitespace header', "GET /a HTTP/1.1\r\n Host: a.test\r\n\r\n"],
    ['space in header name', "GET /a HTTP/1.1\r\n${H}X Y: 1\r\n\r\n"],
    ['tab before colon', "GET /a HTTP/1.1\r\n${H}X-Y\t: 1\r\n\r\n"],
    ['bad name char', "GET /a HTTP/1.1\r\n${H}X(Y): 1\r\n\r\n"],
    ['empty header name', "GET /a HTTP/1.1\r\n${H}: 1\r\n\r\n"],
    ['NUL in value', "GET /a HTTP/1.1\r\n${H}X-A: 1\x002\r\n\r\n"],
    ['CR in value', "GET /a HTTP/1.1\r\n${H}X-A: 1\r2\r\n\r\n"],
    ['bare CR hides Transfer-Encoding', "POST /a HTTP/1.1\r\n${H}X: \rTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n"],
    ['bare CR as a line end', "GET /a HTTP/1.1\r\n${H}X:\rY: 1\r\n\r\n"],
    ['control char in value', "GET /a HTTP/1.1\r\n${H}X-A: 1\x012\r\n\r\n"],
    ['bare LF', "GET /a HTTP/1.1\n${H}\n"],
    ['bare LF in headers', "GET /a HTTP/1.1\r\nHost: a.test\nX-A: 1\r\n\r\n"],
    ['bare LF ending the head', "GET /a HTTP/1.1\r\n${H}\n"],
    ['HTTP/0.9', "GET /a\r\n\r\n"],
    # a well-formed version of another major: 505 (RFC 9110 15.6.6)
    ['HTTP/2.0', "GET /a HTTP/2.0\r\n${H}\r\n", 505],
    ['HTTP/9.9', "GET /a HTTP/9.9\r\n${H}\r\n", 505],
    ['HTTP/0.9 spelled out', "GET /a HTTP/0.9\r\n${H}\r\n", 505],
    ['version with letters', "GET /a HTTP/1.x\r\n${H}\r\n"],
    ['HTTP/11.1', "GET /a HTTP/11.1\r\n${H}\r\n"],
    ['lower-case version', "GET /a http/1.1\r\n${H}\r\n"],
    # absolute-form is accepted (RFC 9112 3.2.2; another site's authority
    # gets 421, see t/40-http.t) but only for http/https, without userinfo
    ['absolute-form, other scheme', "GET ftp://evil.test/a HTTP/1.1\r\n${H}\r\n"],
    ['absolute-form with userinfo', "GET https://a.test\@evil.test/a HTTP/1.1\r\n${H}\r\n"],
    ['absolute-form, empty authority', "GET https:///a HTTP/1.1\r\n${H}\r\n"],
    ['space in target', "GET /a b HTTP/1.1\r\n${H}\r\n"],
    ['double space', "GET  /a HTTP/1.1\r\n${H}\r\n"],
    ['target without slash', "GET a HTTP/1.1\r\n${H}\r\n"],
    ['fragment in target', "GET /a#b HTTP/1.1\r\n${H}\r\n"],
    ['CONNECT', "CONNECT evil.test:443 HTTP/1.1\r\n${H}\r\n"],
    ['no Host', "GET /a HTTP/1.1\r\n\r\n"],
    ['two Host', "GET /a HTTP/1.1\r\n${H}Host: b.test\r\n\r\n"],
    ['bad Host', "GET /a HTTP/1.1\r\nHost: a.test/evil\r\n\r\n"],
    ['Host with an unclosed IPv6 bracket', "GET /a HTTP/1.1\r\nHost: [::1\r\n\r\n"],
    ['Host with an IPv4 address in brackets', "GET /a HTTP/1.1\r\nHost: [127.0.0.1]\r\n\r\n"],
    ['Host with a malformed IPv6 literal', "GET /a HTTP/1.1\r\nHost: [1::2::3]:443\r\n\r\n"],
    ['Host with a port over 65535', "GET /a HTTP/1.1\r\nHost: a.test:99999999\r\n\r\n"],
    ['Host with two ports', "GET /a HTTP/1.1\r\nHost: a.test:443:443\r\n\r\n"],
    ['absolute-form with a bad port', "GET https://a.test:4x3/a HTTP/1.1\r\n${H}\r\n"],
    ['malformed percent-encoding', "GET /%zz HTTP/1.1\r\n${H}\r\n"],
    ['chunk size not hex', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"],
    ['chunk size with sign', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n"],
    ['chunk size 0x', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n"],
    ['chunk size space', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n"],
    ['chunk size overflow', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n"],
    ['chunk bare LF', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n"],
    ['chunk data too long', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n"],
    ['chunk extension abuse', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;" . ('x' x 400) . "\r\nhello\r\n0\r\n\r\n"],
    ['chunk extension control char', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a\x01b\r\nhello\r\n0\r\n\r\n"],
    ['trailer line that is a request line', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nGET /hidden HTTP/1.1\r\n"],
    ['trailer name with a space', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\nX A: 1\r\n\r\n"],
    ['bad trailer', "POST /a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX\x01: 1\r\n\r\n"],
    ['unknown Expect', "GET /a HTTP/1.1\r\n${H}Expect: 200-ok\r\n\r\n", 417],
);

my $smuggled = 0;
for my $c (@cases) {
    my ($name, $req, $want) = @$c;
    $want //= 400;
    $smuggled++;
    my $out = raw($req . "GET /smuggled-$smuggled HTTP/1.1\r\n${H}\r\n");
    is_deeply(statuses($out), [$want], "$name: answered $want, once");
    like($out, qr/\[\[EOF\]\]$/, "$name: connection closed");
}
sleep 0.3;
my $log = backend_log();
unlike($log, qr/smuggled/, 'no smuggled request ever reached the backend');
unlike($log, qr{^GET /a }m, 'no refused GET reached the backend');
unlike($log, qr{^POST /a }m, 'no refused POST reached the backend (chunked framing checked first)');

# HTTP/1.2 (a higher minor version) is served as HTTP/1.1 (RFC 9112 2.3),
# and goes upstream as HTTP/1.1.
{
    my $out = raw("GET /v12 HTTP/1.2\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200], 'HTTP/1.2: served');
    like($out, qr{^HTTP/1\.1 200}, '... answered as HTTP/1.1');
    sleep 0.3;
    like(backend_log(), qr{^GET /v12 HTTP/1\.1}m, '... and forwarded as HTTP/1.1');
}

# A request hidden in a body stays body: Content-Length and chunked.
{
    my $hidden = "GET /smuggled-body HTTP/1.1\r\n${H}\r\n";
    my $out = raw("POST /echo HTTP/1.1\r\n${H}Content-Length: " . length($hidden)
                . "\r\n\r\n$hidden" . "GET /after-cl HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'CL body holding a request: two answers');
    like($out, qr/\r\n\r\n\Q$hidden\E/, 'the hidden request came back as body bytes');
    my $chunked = sprintf("%x\r\n%s\r\n0\r\n\r\n", length $hidden, $hidden);
    $out = raw("POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n$chunked"
             . "GET /after-chunked HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'chunked body holding a request: two answers');
    like($out, qr/\Q$hidden\E/, 'hidden request echoed as body');
    sleep 0.3;
    $log = backend_log();
    unlike($log, qr/smuggled-body/, 'the hidden request never parsed by the backend');
    like($log, qr{GET /after-cl}, 'the real next request after a CL body was forwarded');
    like($log, qr{GET /after-chunked}, 'the real next request after a chunked body was forwarded');
}

# Chunk extensions and trailers from the client are not forwarded: the
# body is re-framed.
{
    my $out = raw("POST /post HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n"
                . "3;ext=1\r\nabc\r\n0\r\nX-Trailer: evil\r\n\r\n"
                . "GET /x HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'chunked body with extension and trailer');
    my ($json) = $out =~ /(\{"method": "POST".*?\})\r?\n?HTTP/s;
    my $j = eval { decode_json($json // '{}') } // {};
    is($j->{body_len}, 3, 'decoded body forwarded');
    unlike($json // '', qr/X-Trailer/, 'trailer not forwarded as a header');
}

# RFC 9112 7.1.1: chunk-ext = *( BWS ";" ... ): whitespace between the size
# and the ';' is valid (nginx and HAProxy take it; t/diff/diff.py chunk-02),
# whitespace not followed by ';' is not.
{
    my $out = raw("POST /post HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n"
                . "3 ;ext=1\r\nabc\r\n2\t;x\r\nde\r\n0 ;z\r\n\r\n"
                . "GET /x HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'chunk extension after whitespace');
    my ($json) = $out =~ /(\{"method": "POST".*?\})\r?\n?HTTP/s;
    my $j = eval { decode_json($json // '{}') } // {};
    is($j->{body_len}, 5, '... body decoded and forwarded');
    $out = raw("POST /post HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n"
             . "3 \r\nabc\r\n0\r\n\r\n");
    is_deeply(statuses($out), [400], 'whitespace after the size without an extension: 400');
}

# h2c smuggling: only "Upgrade: websocket" is tunnelled.  Any other
# Upgrade (h2c above all) is a normal request: Upgrade and HTTP2-Settings
# are dropped, the backend answers it as HTTP/1.1 and the next request on
# the connection is still parsed, routed and sanitised by the proxy.
{
    my $out = raw("GET /ws HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings\r\n"
                . "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
                . "GET /after-h2c HTTP/1.1\r\n${H}Connection: close\r\n\r\n");
    is_deeply(statuses($out), [200, 200], 'Upgrade: h2c is not tunnelled: two HTTP answers');
    unlike($out, qr/ws-backend=/, 'no tunnel to the backend');
    unlike($out, qr/"Upgrade"|"HTTP2-Settings"|AAMAAABkAARA/i, 'Upgrade and HTTP2-Settings never reach the backend');
    my $out2 = raw("GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\n"
                 . "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n");
    is_deeply(statuses($out2), [200], 'h2c without HTTP2-Settings in Connection: 200');
    unlike($out2, qr/AAMAAABkAARA/, 'HTTP2-Settings dropped even when not listed in Connection');
    sleep 0.3;
    like(backend_log(), qr{GET /after-h2c}, 'the request after the h2c attempt was forwarded by the proxy');
    my $ws = raw("GET /ws HTTP/1.1\r\n${H}Connection: upgrade\r\n"
               . "Upgrade: WebSocket\r\n\r\nping", idle => 1);
    like($ws, qr{^HTTP/1\.1 101 }, 'Upgrade: WebSocket (any case) still tunnelled');
    like($ws, qr/ws-backend=.*\nping/s, 'bytes relayed after 101');
}

$t->stop;
done_testing;
