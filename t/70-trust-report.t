#!/usr/bin/perl
# 70-trust-report.t: `hamlyn --trust-report[=json] -c FILE` on a config with
# every kind of leg: passthrough (PROXY v2 out), terminate -> TLS verified
# with mTLS, terminate -> plaintext (accepted risk), terminate -> TLS with
# verify off (accepted risk), and a fixed-response-only default site.
# Checks the text (lines and RISK: quotes) and the JSON (decoded, fields per
# leg), and that an invalid configuration exits 1 with its error.  Nothing
# is started: the report reads the configuration only.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;

# Every report here has TLS upstream legs: a build --without-upstream_tls
# refuses such configurations (hamlyn -t, checked in t/60-upstream-tls.t).
plan skip_all => 'upstream_tls not compiled in' unless Hamlyn::Test::has('upstream_tls');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $port = $t->port;

my $plain_risk = 'loopback test backend, same host';
my $verify_risk = 'self-signed lab appliance';

my $conf = {
    certificates => {
        'a'            => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" },
        'b'            => { cert => "$certs/b.test.pem", key => "$certs/b.test.key" },
        'proxy-client' => { cert => "$certs/proxy-client.pem",
                            key  => "$certs/proxy-client.key" },
    },
    upstreams => {
        db  => { servers => ['127.0.0.1:9'] },
        api => {
            servers => ['127.0.0.1:8443'],
            tls => {
                server_name        => 'backend.test',
                ca                 => "$certs/ca.pem",
                verify             => JSON::PP::true,
                client_certificate => 'proxy-client',
            },
        },
        old  => { servers => ['127.0.0.1:8080'],
                  plaintext => { accepted_risk => $plain_risk } },
        self => {
            servers => ['127.0.0.1:8444'],
            tls => { server_name => 'backend.test', verify => JSON::PP::false,
                     accepted_risk => $verify_risk },
        },
    },
    listeners => [ {
        name => 'public', listen => ["127.0.0.1:$port"],
        sites => ['db', 'api', 'static'], default_site => 'static',
    } ],
    sites => {
        db => { server_names => ['db.test'], mode => 'passthrough',
                upstream => 'db', proxy_protocol_out => 'v2' },
        api => {
            server_names => ['a.test'],
            mode => 'terminate',
            tls => { certificates => ['a'],
                     client_auth => { mode => 'optional',
                                      ca => "$certs/client-ca.pem" } },
            headers => { client_cert_header => 'X-Client-Cert',
                         strip_request => ['X-User-Id'] },
            routes => [
                { match => { path_prefix => '/admin/' }, status => 404 },
                { match => { path_prefix => '/old/' }, upstream => 'old' },
                { match => { path_prefix => '/lab/' }, upstream => 'self' },
                { match => { path_prefix => '/' }, upstream => 'api' },
            ],
        },
        static => {
            server_names => ['b.test'],
            mode => 'terminate',
            tls => { certificates => ['b'] },
            routes => [ { match => { path_prefix => '/' }, status => 200,
                          body => "hello\n" } ],
        },
    },
};
$t->write_conf($conf);
my $file = $t->dir . '/hamlyn.json';

# ---- text ----
my ($rc, $out) = $t->hamlyn('--trust-report', '-c', $file);
is($rc, 0, 'text report exits 0') or diag($out);

sub line_of {
    my ($text, $re) = @_;
    for my $l (split /\n/, $text) { return $l if $l =~ $re }
    return '';
}

like(line_of($out, qr/^listener public/), qr/127\.0\.0\.1:$port/,
     'listener header line with its address');
like(line_of($out, qr/site db \(db\.test\)/),
     qr/TLS end to end: client \S+ backend; the proxy sees SNI, addresses, bytes, timing/,
     'passthrough site: TLS end to end');
like(line_of($out, qr/upstream db:/), qr/passthrough.*PROXY protocol v2 out/,
     'passthrough leg notes PROXY protocol v2 out');
like(line_of($out, qr/site api \(a\.test\)/), qr/TLS terminated at the edge/,
     'terminate site: TLS ends at the edge');
like(line_of($out, qr/upstream api:/),
     qr/TLS verified \(CA \S*ca\.pem, name backend\.test\), mTLS as proxy-client/,
     'verified leg with CA, name and mTLS');
like(line_of($out, qr/upstream old:/), qr/plaintext/, 'plaintext leg');
like(line_of($out, qr/RISK: plaintext to upstream old/), qr/"\Q$plain_risk\E"/,
     'plaintext risk quoted on a RISK: line');
like(line_of($out, qr/upstream self:/), qr/verify off: certificate NOT verified/, 'verify-off leg, in the words of CLI.md');
like(line_of($out, qr/RISK: .*upstream self/), qr/"\Q$verify_risk\E"/,
     'verify-off risk quoted on a RISK: line');
is(scalar(() = $out =~ /RISK:/g), 2, 'exactly two RISK lines');
like(line_of($out, qr/site static/), qr/\[default site\]/,
     'the default site is marked');
like($out, qr/fixed responses:.*\/admin\/ \S+ 404/, 'fixed response of site api');

my $api_block = ($out =~ /(  site api .*?)(?:\n\n|\z)/s)[0] // '';
like(line_of($api_block, qr/backend sees:/), qr/X-Client-Cert \(proxy-asserted/,
     'api backend sees the proxy-asserted client cert header');
like(line_of($api_block, qr/client TLS:/), qr/client certificate optional/,
     'client TLS facts: client auth optional');
my $strip = line_of($api_block, qr/headers stripped:/);
like($strip, qr/X-Forwarded-For/, 'forwarded=replace strips X-Forwarded-For');
like($strip, qr/X-Real-IP/, '... and X-Real-IP');
like($strip, qr/X-Client-Cert/, '... and the client_cert_header');
like($strip, qr/X-User-Id/, '... and strip_request entries');
like($strip, qr/Connection/, '... and hop-by-hop headers');

# ---- JSON ----
($rc, $out) = $t->hamlyn('--trust-report=json', '-c', $file);
is($rc, 0, 'json report exits 0') or diag($out);
my $doc = eval { JSON::PP->new->utf8->decode($out) };
ok($doc, 'json report decodes') or diag($@ . $out);
$doc //= {};

my ($l) = @{ $doc->{listeners} // [] };
is($l->{name}, 'public', 'listener name');
is_deeply($l->{listen}, ["127.0.0.1:$port"], 'listener addresses');
my %site = map { $_->{name} => $_ } @{ $l->{sites} // [] };
is_deeply([sort keys %site], [qw(api db static)], 'three sites incl. the default');

my $db = $site{db} // {};
is($db->{mode}, 'passthrough', 'db mode');
is($db->{tls_ends}, 'backend', 'db: TLS ends at the backend');
is($db->{legs}[0]{kind}, 'passthrough', 'db leg kind');
is($db->{legs}[0]{proxy_protocol_out}, 'v2', 'db leg PROXY v2');
ok((grep { $_ eq 'real_client_certificate' } @{ $db->{backend_sees} // [] }),
   'db backend sees the real client certificate');
is_deeply($db->{stripped_headers}, [], 'db: nothing stripped');

my $api = $site{api} // {};
is($api->{tls_ends}, 'edge', 'api: TLS ends at the edge');
is($api->{client_tls}{client_auth}, 'optional', 'api client_auth');
is($api->{client_tls}{min_version}, 'TLSv1.2', 'api min version default');
my %leg = map { ($_->{upstream} // '(fixed)') => $_ } @{ $api->{legs} // [] };
is(scalar(keys %leg), 4, 'api has four legs');
is($leg{api}{kind}, 'tls_verified', 'api leg verified');
ok($leg{api}{mtls}, 'api leg mTLS');
is($leg{api}{server_name}, 'backend.test', 'api leg server_name');
like($leg{api}{ca} // '', qr/ca\.pem$/, 'api leg CA');
is($leg{old}{kind}, 'plaintext', 'old leg plaintext');
is($leg{old}{accepted_risk}, $plain_risk, 'old leg accepted_risk');
is($leg{self}{kind}, 'tls_unverified', 'self leg unverified');
is($leg{self}{accepted_risk}, $verify_risk, 'self leg accepted_risk');
ok(!$leg{self}{mtls}, 'self leg no mTLS');
is($leg{'(fixed)'}{kind}, 'fixed_response', 'fixed response leg');
ok((grep { $_ eq 'header:X-Client-Cert' } @{ $api->{backend_sees} // [] }),
   'api backend sees header X-Client-Cert');
my %st = map { $_ => 1 } @{ $api->{stripped_headers} // [] };
ok($st{$_}, "api strips $_")
    for qw(Forwarded X-Forwarded-For X-Forwarded-Proto X-Forwarded-Host
           X-Real-IP X-Client-Cert X-User-Id Connection);

my $static = $site{static} // {};
ok($static->{default}, 'static is the default site');
is(scalar @{ $static->{legs} // [] }, 1, 'static has one leg');
is($static->{legs}[0]{kind}, 'fixed_response', 'static leg is a fixed response');
is_deeply($static->{backend_sees}, ['none'], 'static: no backend sees anything');

is(scalar @{ $doc->{accepted_risks} // [] }, 2, 'two accepted risks listed');

# "config" is the file's absolute path, also for a relative -c given in
# the root folder (it read "//tmp/...").
{
    require Cwd;
    my $abs = Cwd::abs_path($file);
    my $bin = Cwd::abs_path($ENV{HAMLYN_BIN} // './hamlyn');
    (my $rel = $abs) =~ s{^/}{};
    my $json = `cd / && '$bin' --trust-report=json -c '$rel' 2>/dev/null`;
    my $d = eval { decode_json($json) } // {};
    is($d->{config}, $abs, 'config: absolute path of a -c relative to /');
}

# ---- the other combinations ----
# terminate -> TLS verified without mTLS but with pins; verify off with
# pins (no chain); a client_cert_header without client certificates (the
# backend never sees one: stripped only); forwarded off (no identity at
# all) and append; passthrough without PROXY protocol.
my $pin = 'sha256/' . ('A' x 43) . '=';
my $conf2 = {
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        pt     => { servers => ['127.0.0.1:9'] },
        ver    => { servers => ['127.0.0.1:8443'],
                    tls => { server_name => 'backend.test', ca => "$certs/ca.pem", pins => [$pin] } },
        pinned => { servers => ['127.0.0.1:8444'],
                    tls => { verify => JSON::PP::false, pins => [$pin],
                             accepted_risk => 'pinned self-signed key' } },
        plain  => { servers => ['127.0.0.1:8080'], plaintext => { accepted_risk => 'same host' } },
    },
    listeners => [ { name => 'l2', listen => ["127.0.0.1:$port"], sites => [qw(pt v p0 ap)] } ],
    sites => {
        pt => { server_names => ['pt.test'], mode => 'passthrough', upstream => 'pt' },
        v  => { server_names => ['v.test'], mode => 'terminate', tls => { certificates => ['a'] },
                headers => { client_cert_header => 'X-Cert' }, upstream => 'ver' },
        p0 => { server_names => ['p0.test'], mode => 'terminate', tls => { certificates => ['a'] },
                headers => { forwarded => 'off' }, upstream => 'plain' },
        ap => { server_names => ['ap.test'], mode => 'terminate',
                tls => { certificates => ['a'],
                         client_auth => { mode => 'required', ca => "$certs/client-ca.pem" } },
                headers => { forwarded => 'append', client_cert_header => 'X-Cert' },
                upstream => 'pinned' },
    },
};
$t->write_conf($conf2);
($rc, $out) = $t->hamlyn('--trust-report=json', '-c', $file);
is($rc, 0, 'second report exits 0') or diag($out);
my $d2 = eval { decode_json($out) } // {};
my %s2 = map { $_->{name} => $_ } @{ $d2->{listeners}[0]{sites} // [] };
is_deeply($s2{pt}{backend_sees}, ['real_client_certificate'],
          'passthrough without PROXY protocol: the real client certificate only');
my $lv = $s2{v}{legs}[0] // {};
is($lv->{kind}, 'tls_verified', 'verified leg without mTLS');
ok(!$lv->{mtls}, '... no mTLS');
is($lv->{client_certificate}, undef, '... no client certificate');
is_deeply($lv->{pins}, [$pin], '... its pins');
ok(!(grep { $_ eq 'header:X-Cert' } @{ $s2{v}{backend_sees} }),
   'client_cert_header without client certificates: the backend never sees it');
ok((grep { $_ eq 'X-Cert' } @{ $s2{v}{stripped_headers} }), '... but the client\'s copy is stripped');
is_deeply($s2{p0}{backend_sees}, ['none'], 'forwarded off, no client certificate: none');
is($s2{p0}{legs}[0]{kind}, 'plaintext', 'plaintext leg');
is($s2{p0}{legs}[0]{accepted_risk}, 'same host', '... with its accepted risk');
ok(!(grep { /^X-Forwarded|^Forwarded$/ } @{ $s2{p0}{stripped_headers} }),
   'forwarded off: the forwarding headers pass');
my $la = $s2{ap}{legs}[0] // {};
is($la->{kind}, 'tls_unverified', 'verify off with pins: unverified chain');
is_deeply($la->{pins}, [$pin], '... checked against the pins');
is($la->{accepted_risk}, 'pinned self-signed key', '... with its accepted risk');
ok((grep { $_ eq 'header:X-Cert' } @{ $s2{ap}{backend_sees} }),
   'client_auth required + client_cert_header: the proxy-asserted header');
is($s2{ap}{forwarded}, 'append', 'forwarded append');
ok(!(grep { $_ eq 'X-Forwarded-For' } @{ $s2{ap}{stripped_headers} }),
   'forwarded append: X-Forwarded-For is not stripped');
is(scalar @{ $d2->{accepted_risks} }, 2, 'two accepted risks');
($rc, $out) = $t->hamlyn('--trust-report', '-c', $file);
is($rc, 0, 'second text report exits 0');
like(line_of($out, qr/upstream ver:/), qr/TLS verified.*no mTLS|TLS verified.*no client certificate/,
     'text: verified without mTLS');
like(line_of($out, qr/upstream ver:/), qr/\Q$pin\E/, 'text: the pin');
like(line_of($out, qr/upstream pinned:/), qr/verify off, pinned: chain not verified \(pins \Q$pin\E\)/,
     'text: verify off with pins');
like(line_of($out, qr/RISK: .*upstream pinned/), qr/"pinned self-signed key"/, 'text: the pinned leg\'s risk');
like(line_of($out, qr/RISK: .*upstream plain/), qr/"same host"/, 'text: the plaintext risk');
# the three identities of CLI.md, in words, on the "backend sees" lines
my %blk = map { my $n = $_; ($n => ($out =~ /(  site \Q$n\E .*?)(?:\n\n|\z)/s)[0] // '') } qw(pt v p0 ap);
like(line_of($blk{pt}, qr/backend sees:/), qr/real client certificate/, 'text: passthrough: real client certificate');
like(line_of($blk{ap}, qr/backend sees:/), qr/X-Cert \(proxy-asserted/, 'text: the proxy-asserted header');
like(line_of($blk{p0}, qr/backend sees:/), qr/backend sees:\s+none\b/, 'text: none');

# ---- invalid configuration ----
$conf->{sites}{api}{routes}[3]{upstream} = 'apj';
$t->write_conf($conf);
($rc, $out) = $t->hamlyn('--trust-report', '-c', $file);
is($rc, 1, 'invalid config: exit 1');
like($out, qr/no upstream named "apj"/, 'invalid config: error printed');
unlike($out, qr/RISK:|listener public/, 'invalid config: no report');
($rc, $out) = $t->hamlyn('--trust-report=json', '-c', $file);
is($rc, 1, 'invalid config, json: exit 1');

done_testing();
