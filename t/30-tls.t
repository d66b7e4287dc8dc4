#!/usr/bin/perl
# 30-tls.t: TLS termination (issue 3, TLS part).  The real ./hamlyn serves
# terminating and passthrough sites on one port; real clients (openssl
# s_client, curl, t/lib/hm_client.py) check what the TLS layer decides:
# ECDSA or RSA certificate by the client's signature algorithms, TLS 1.2
# and 1.3, min_version, ALPN, session resumption through tickets (also
# with a ticket key file), OCSP stapling, client certificates (required),
# the handshake timeout, and that failures are logged with a reason.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use MIME::Base64 qw(encode_base64);
use JSON::PP;

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $dir = $t->dir;

# --- an OCSP response for a.test-ecdsa, signed by the test CA
sub sh { my ($cmd) = @_; my $o = `$cmd 2>&1`; die "failed: $cmd\n$o" if $?; return $o }
my ($serial) = sh("openssl x509 -in $certs/a.test-ecdsa.pem -noout -serial") =~ /serial=(\w+)/;
open my $ix, '>', "$dir/index.txt" or die;
print $ix "V\t351231000000Z\t\t$serial\tunknown\t/CN=a.test\n";
close $ix;
sh("openssl ocsp -issuer $certs/ca.pem -cert $certs/a.test-ecdsa.pem -no_nonce -reqout $dir/ocsp.req");
sh("openssl ocsp -index $dir/index.txt -rsigner $certs/ca.pem -rkey $certs/ca.key -CA $certs/ca.pem"
   . " -reqin $dir/ocsp.req -respout $dir/a.ocsp -ndays 2");
ok(-s "$dir/a.ocsp", 'OCSP response generated with openssl ocsp');
# ... and one for a.test-rsa (a site pairs it with an ECDSA certificate
# without a response)
my ($rserial) = sh("openssl x509 -in $certs/a.test-rsa.pem -noout -serial") =~ /serial=(\w+)/;
open $ix, '>', "$dir/index-rsa.txt" or die;
print $ix "V\t351231000000Z\t\t$rserial\tunknown\t/CN=a.test\n";
close $ix;
sh("openssl ocsp -issuer $certs/ca.pem -cert $certs/a.test-rsa.pem -no_nonce -reqout $dir/ocsp-rsa.req");
sh("openssl ocsp -index $dir/index-rsa.txt -rsigner $certs/ca.pem -rkey $certs/ca.key -CA $certs/ca.pem"
   . " -reqin $dir/ocsp-rsa.req -respout $dir/a-rsa.ocsp -ndays 2");

# --- a ticket key file (80-byte key, base64 per line) for the second instance
open my $tk, '>', "$dir/tickets.keys" or die;
print $tk "# hamlyn ticket keys\n", encode_base64(join('', map { chr } 0 .. 79), ''), "\n";
close $tk;

my $be = $t->backend(mode => 'tls-echo', cert => 'default.test', name => 'PT');
my $be_http = $t->backend(mode => 'http', name => 'H');
my $p = $t->port;

my %conf = (
    certificates => {
        'a-ecdsa' => { cert => "$certs/a.test-ecdsa.pem", key => "$certs/a.test-ecdsa.key",
                       ocsp => "$dir/a.ocsp" },
        'a-rsa'   => { cert => "$certs/a.test-rsa.pem", key => "$certs/a.test-rsa.key" },
        'a-rsa-o' => { cert => "$certs/a.test-rsa.pem", key => "$certs/a.test-rsa.key",
                       ocsp => "$dir/a-rsa.ocsp" },
        'b'       => { cert => "$certs/b.test.pem", key => "$certs/b.test.key" },
        'wild'    => { cert => "$certs/wild.test.pem", key => "$certs/wild.test.key" },
    },
    upstreams => { pt => { servers => ["127.0.0.1:$be->{port}"] },
                   h  => { servers => ["127.0.0.1:$be_http->{port}"],
                           plaintext => { accepted_risk => 'test backend on loopback' } } },
    listeners => [ { name => 'main', listen => ["127.0.0.1:$p"],
                     sites => [qw(a b m o pt r s)] } ],
    sites => {
        a  => { server_names => ['a.test'], mode => 'terminate',
                tls => { certificates => ['a-ecdsa', 'a-rsa'], handshake_timeout_ms => 1000 },
                routes => [ { match => { path_prefix => '/' }, status => 200, body => "site a\n" } ] },
        b  => { server_names => ['b.test'], mode => 'terminate',
                tls => { certificates => ['b'], min_version => 'TLSv1.3', alpn => [] },
                routes => [ { match => { path_prefix => '/' }, status => 200, body => "site b\n" } ] },
        m  => { server_names => ['m.wild.test'], mode => 'terminate',
                tls => { certificates => ['wild'],
                         client_auth => { mode => 'required', ca => "$certs/client-ca.pem" } },
                headers => { client_cert_header => 'X-Client-Cert' },
                routes => [ { match => { path_prefix => '/' }, upstream => 'h' } ] },
        o  => { server_names => ['o.wild.test'], mode => 'terminate',
                tls => { certificates => ['wild'],
                         client_auth => { mode => 'optional', ca => "$certs/client-ca.pem" } },
                # strip_request "X-*" takes the client's X- headers only,
                # never those the proxy sets (X-Client-Cert, X-Forwarded-*)
                headers => { client_cert_header => 'X-Client-Cert', strip_request => ['X-*'] },
                routes => [ { match => { path_prefix => '/' }, upstream => 'h' } ] },
        pt => { server_names => ['default.test'], mode => 'passthrough', upstream => 'pt' },
        # ECDSA and RSA, but a TLS 1.2 cipher list of RSA suites only
        r  => { server_names => ['r.test'], mode => 'terminate',
                tls => { certificates => ['a-ecdsa', 'a-rsa'],
                         ciphers => 'ECDHE-RSA-AES128-GCM-SHA256' },
                routes => [ { status => 200, body => "site r\n" } ] },
        # an ECDSA certificate without OCSP response beside an RSA one with
        s  => { server_names => ['s.test'], mode => 'terminate',
                tls => { certificates => ['b', 'a-rsa-o'] },
                routes => [ { status => 200, body => "site s\n" } ] },
    },
);
$t->write_conf(\%conf);
$t->run or BAIL_OUT('hamlyn did not start');

sub sc {
    my (%o) = @_;
    my $name = delete $o{name};
    return scalar $t->s_client(port => $p, servername => $name, input => "", %o);
}

# --- certificate choice
my $out = sc(name => 'a.test', args => ['-brief']);
like($out, qr/(?:Peer )?signature type: ECDSA/i, 'ECDSA-capable client gets the ECDSA certificate');
like($out, qr/Verification: OK/, 'chain verifies against the test CA');
$out = sc(name => 'a.test', args => ['-brief', '-sigalgs', 'RSA-PSS+SHA256:RSA-PSS+SHA384:RSA+SHA256']);
like($out, qr/(?:Peer )?signature type: RSA-PSS/i, 'RSA-only client (TLS 1.3) gets the RSA certificate');
$out = sc(name => 'a.test', args => ['-brief', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
like($out, qr/Protocol version: TLSv1\.2/, 'TLS 1.2 handshake');
like($out, qr/Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256/,
     'TLS 1.2 client offering only ECDHE-RSA suites gets the RSA certificate');
$out = sc(name => 'a.test', args => ['-brief', '-tls1_2']);
like($out, qr/Ciphersuite: ECDHE-ECDSA-/, 'TLS 1.2 client with ECDSA suites gets ECDSA');
$out = sc(name => 'a.test', args => ['-brief', '-tls1_3']);
like($out, qr/Protocol version: TLSv1\.3/, 'TLS 1.3 handshake');
# TLS 1.3 binds an ECDSA scheme to its curve: a client offering
# ecdsa_secp384r1_sha384 (and RSA) cannot take the P-256 key: RSA, no failure
$out = sc(name => 'a.test', args => ['-brief', '-tls1_3', '-sigalgs', 'ECDSA+SHA384:RSA-PSS+SHA256']);
like($out, qr/(?:Peer )?signature type: RSA-PSS/i,
     'TLS 1.3 client with ECDSA P-384 and RSA schemes only gets the RSA certificate');
$out = sc(name => 'a.test', args => ['-brief', '-tls1_3', '-sigalgs', 'ECDSA+SHA256:RSA-PSS+SHA256']);
like($out, qr/(?:Peer )?signature type: ECDSA/i, '... with ecdsa_secp256r1_sha256 the ECDSA one');
# TLS 1.2: supported_groups also bounds the ECDSA certificate's curve
# (RFC 8422 5.1): a client of X25519 only cannot take the P-256 key
$out = sc(name => 'a.test', args => ['-brief', '-tls1_2', '-curves', 'X25519']);
like($out, qr/Ciphersuite: ECDHE-RSA-/, 'TLS 1.2 client without P-256 in supported_groups gets the RSA certificate');
$out = sc(name => 'a.test', args => ['-brief', '-tls1_2', '-curves', 'X25519:P-256']);
like($out, qr/Ciphersuite: ECDHE-ECDSA-/, '... with P-256 the ECDSA one');

# A TLS 1.2 cipher list without ECDSA suites: TLS 1.2 clients get the RSA
# certificate (the ECDSA one would leave no shared cipher), TLS 1.3 ones
# still the ECDSA one.
$out = sc(name => 'r.test', args => ['-brief', '-tls1_2']);
like($out, qr/Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256/,
     'ciphers of RSA suites only: a TLS 1.2 client gets the RSA certificate');
$out = sc(name => 'r.test', args => ['-brief', '-tls1_3']);
like($out, qr/(?:Peer )?signature type: ECDSA/i, '... a TLS 1.3 client the ECDSA one');

# --- versions
($out) = $t->s_client(port => $p, servername => 'b.test', input => "", args => ['-brief', '-tls1_2']);
unlike($out, qr/Protocol version/, 'min_version TLSv1.3 refuses a TLS 1.2 client');
like($out, qr/alert|error/i, '... with an alert');
$out = sc(name => 'b.test', args => ['-brief']);
like($out, qr/Protocol version: TLSv1\.3/, 'min_version TLSv1.3 site accepts TLS 1.3');

# --- ALPN
$out = sc(name => 'a.test', args => ['-alpn', 'h2,http/1.1']);
like($out, qr{ALPN protocol: http/1\.1}, 'ALPN: http/1.1 chosen over h2');
$out = sc(name => 'a.test', args => ['-alpn', 'h2']);
like($out, qr{No ALPN negotiated}, 'ALPN: h2 alone is not negotiated, handshake continues');
like($out, qr{Verification: OK|Verify return code: 0}, '... and the handshake completes');
$out = sc(name => 'b.test', args => ['-alpn', 'http/1.1']);
like($out, qr{No ALPN negotiated}, 'ALPN: "alpn": [] disables it (not even http/1.1)');
like($out, qr{Verification: OK|Verify return code: 0}, '... and the handshake completes');

# --- OCSP stapling
$out = sc(name => 'a.test', args => ['-status']);
like($out, qr/OCSP Response Status: successful/, 'OCSP response stapled for the ECDSA cert');
like($out, qr/Cert Status: good/, '... saying good');
like($out, qr/Serial Number: \Q$serial\E/i, '... for the ECDSA certificate');
# the ECDSA certificate's response is never stapled to the RSA one
$out = sc(name => 'a.test', args => ['-status', '-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256']);
like($out, qr/OCSP response: no response sent/, 'RSA certificate without OCSP file: no staple (TLS 1.3)');
$out = sc(name => 'a.test', args => ['-status', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
like($out, qr/OCSP response: no response sent/, '... nor with TLS 1.2');
$out = sc(name => 's.test', args => ['-status', '-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256']);
like($out, qr/Serial Number: \Q$rserial\E/i, 'RSA certificate with OCSP file: its own response stapled');
$out = sc(name => 's.test', args => ['-status', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
like($out, qr/Serial Number: \Q$rserial\E/i, '... also with TLS 1.2');
$out = sc(name => 's.test', args => ['-status']);
like($out, qr/OCSP response: no response sent/, '... and the ECDSA one beside it, without a file, none');
$out = sc(name => 'b.test', args => ['-status']);
like($out, qr/OCSP response: no response sent/, 'single certificate without OCSP file: no staple');

# --- session resumption (tickets), TLS 1.3 and TLS 1.2
for my $v ('-tls1_3', '-tls1_2') {
    unlink "$dir/sess";
    $out = sc(name => 'a.test', args => [$v, '-sess_out', "$dir/sess"], input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
              expect => qr/\r\n\r\n/);
    like($out, qr/^New,/m, "$v: first connection is a full handshake");
    ok(-s "$dir/sess", "$v: session saved by the client");
    $out = sc(name => 'a.test', args => [$v, '-sess_in', "$dir/sess"]);
    like($out, qr/^Reused,/m, "$v: second connection resumed the session");
}
# TLS 1.3 tickets come with the end of the handshake, not with the first
# response: a client that sends nothing (and waits a moment: the tickets
# follow its Finished) still gets one and resumes.
unlink "$dir/sess";
$out = sc(name => 'a.test', args => ['-tls1_3', '-sess_out', "$dir/sess"], hold => 1);
like($out, qr/^New,/m, 'TLS 1.3, no request: full handshake');
ok(-s "$dir/sess", 'TLS 1.3, no request: a ticket arrived all the same');
$out = sc(name => 'a.test', args => ['-tls1_3', '-sess_in', "$dir/sess"]);
like($out, qr/^Reused,/m, 'TLS 1.3, no request: the next connection resumes');

# A session of site a never resumes into another site, least of all one
# requiring a client certificate (tickets of both versions, session IDs).
for my $v (['-tls1_3'], ['-tls1_2'], ['-tls1_2', '-no_ticket']) {
    my $what = join ' ', @$v;
    unlink "$dir/sess";
    sc(name => 'a.test', args => [@$v, '-sess_out', "$dir/sess"], input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
       expect => qr/\r\n\r\n/);
    ok(-s "$dir/sess", "$what: session of site a saved");
    $out = sc(name => 'r.test', args => [@$v, '-sess_in', "$dir/sess"], input => "GET / HTTP/1.1\r\nHost: r.test\r\n\r\n",
              expect => qr/\r\n\r\n/);
    like($out, qr/^New,/m, "$what: ... is not resumed by site r (same certificates)");
    $out = sc(name => 'm.wild.test', args => [@$v, '-sess_in', "$dir/sess"],
              input => "GET / HTTP/1.1\r\nHost: m.wild.test\r\n\r\n", expect => qr/\r\n\r\n|alert/);
    unlike($out, qr/^Reused,/m, "$what: ... nor by site m (client_auth required)");
    unlike($out, qr{HTTP/1\.1 200}, "$what: ... which answers nothing without a certificate");
}

# --- client certificates
($out) = $t->s_client(port => $p, servername => 'm.wild.test', args => ['-brief'],
                      input => "GET / HTTP/1.1\r\nHost: m.wild.test\r\n\r\n", expect => qr/HTTP\/1|alert|error/i);
unlike($out, qr{HTTP/1\.1 200}, 'client_auth required: no certificate, no response');
like($out, qr/alert|error/i, '... the handshake fails with an alert');
my ($code, $body) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "m.wild.test:$p:127.0.0.1",
                             '--cert', "$certs/client.pem", '--key', "$certs/client.key",
                             "https://m.wild.test:$p/");
is($code, 200, 'client_auth required: a client certificate from client-ca is accepted');
{
    my $j = eval { JSON::PP->new->decode($body) } // {};
    my ($cc) = map { $_->[1] } grep { lc $_->[0] eq 'x-client-cert' } @{ $j->{headers} // [] };
    my ($fp) = sh("openssl x509 -in $certs/client.pem -noout -fingerprint -sha256") =~ /=([0-9A-F:]+)/;
    $fp =~ s/://g;
    SKIP: {
        skip 'client_cert_header needs headers_sanitise', 2
            unless Hamlyn::Test::has('headers_sanitise');
        like($cc // '', qr/CN=client\.test/, 'verified client certificate: subject passed in client_cert_header');
        like($cc // '', qr/\Q@{[lc $fp]}\E/i, '... with its SHA-256 fingerprint');
    }
}
($code) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "m.wild.test:$p:127.0.0.1",
                   '--cert', "$certs/a.test.pem", '--key', "$certs/a.test.key",
                   "https://m.wild.test:$p/");
isnt($code, 200, 'client_auth required: a certificate from another CA is refused');

# client_auth optional: served without a certificate (and without the
# header, even a forged one), with one from the CA the header is set, with
# one from another CA the handshake fails.
SKIP: {
    skip 'client_cert_header needs headers_sanitise', 6 unless Hamlyn::Test::has('headers_sanitise');
    my @o = ('--cacert', "$certs/ca.pem", '--resolve', "o.wild.test:$p:127.0.0.1");
    my ($c1, $b1) = $t->curl(@o, '-H', 'X-Client-Cert: forged', "https://o.wild.test:$p/");
    is($c1, 200, 'client_auth optional: a client without a certificate is served');
    my $j = eval { JSON::PP->new->decode($b1) } // {};
    ok(!(grep { lc $_->[0] eq 'x-client-cert' } @{ $j->{headers} // [] }),
       '... without client_cert_header (its forged copy removed)');
    ($c1, $b1) = $t->curl(@o, '--cert', "$certs/client.pem", '--key', "$certs/client.key",
                          "https://o.wild.test:$p/");
    is($c1, 200, 'client_auth optional: a client certificate from the CA is accepted');
    $j = eval { JSON::PP->new->decode($b1) } // {};
    like((map { $_->[1] } grep { lc $_->[0] eq 'x-client-cert' } @{ $j->{headers} // [] })[0] // '',
         qr/^subject="CN=client\.test/, '... and passed in client_cert_header');
    is_deeply([map { $_->[1] } grep { lc $_->[0] eq 'x-forwarded-for' } @{ $j->{headers} // [] }],
              ['127.0.0.1'], '... with X-Forwarded-For (strip_request "X-*" leaves the proxy\'s own)');
    ($c1) = $t->curl(@o, '--cert', "$certs/a.test.pem", '--key', "$certs/a.test.key",
                     "https://o.wild.test:$p/");
    isnt($c1, 200, 'client_auth optional: a certificate from another CA ends the handshake');
}

# The client's own copies of client_cert_header (any case, repeated) never
# reach the backend: only the proxy's one does.
SKIP: {
    skip 'client_cert_header needs headers_sanitise', 2 unless Hamlyn::Test::has('headers_sanitise');
    my $o = $t->s_client(port => $p, servername => 'm.wild.test', cert => 'client', args => ['-quiet'],
                         input => "GET / HTTP/1.1\r\nHost: m.wild.test\r\nx-client-cert: forged1\r\n"
                                . "X-CLIENT-CERT: forged2\r\nX-Client-Cert: forged3\r\nConnection: close\r\n\r\n",
                         expect => qr/\}\s*$/);
    my ($jb) = $o =~ /(\{.*\})/s;
    my $j = eval { JSON::PP->new->decode($jb // '') } // {};
    my @cc = map { $_->[1] } grep { lc $_->[0] eq 'x-client-cert' } @{ $j->{headers} // [] };
    is(scalar @cc, 1, 'client_cert_header: one copy reaches the backend, whatever the client sent');
    like($cc[0] // '', qr/^subject="CN=client\.test/, '... the proxy\'s own');
}

# The whole client_cert_header value, for a certificate with every SAN type
# (IP addresses in their canonical text, RFC 5952) and a subject that
# needs escaping.
SKIP: {
    skip 'client_cert_header needs headers_sanitise', 1
        unless Hamlyn::Test::has('headers_sanitise');
    open my $ext, '>', "$dir/cc2.ext" or die;
    print $ext "subjectAltName=DNS:a.example,IP:10.0.0.1,IP:fd00::5,"
             . "email:me\@example.com,URI:spiffe://x/y\nextendedKeyUsage=clientAuth\n";
    close $ext;
    sh("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $dir/cc2.key"
       . " -subj '/CN=say \"hi\"/O=Org' -out $dir/cc2.csr");
    sh("openssl x509 -req -in $dir/cc2.csr -CA $certs/client-ca.pem -CAkey $certs/client-ca.key"
       . " -set_serial 4242 -days 2 -extfile $dir/cc2.ext -out $dir/cc2.pem");
    my ($fp) = sh("openssl x509 -in $dir/cc2.pem -noout -fingerprint -sha256") =~ /=([0-9A-F:]+)/;
    $fp =~ s/://g;
    my ($c2, $b2) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "m.wild.test:$p:127.0.0.1",
                             '--cert', "$dir/cc2.pem", '--key', "$dir/cc2.key",
                             "https://m.wild.test:$p/");
    my $j = eval { JSON::PP->new->decode($b2) } // {};
    my ($cc) = map { $_->[1] } grep { lc $_->[0] eq 'x-client-cert' } @{ $j->{headers} // [] };
    is($cc, 'subject="O=Org,CN=say \\\\\\"hi\\\\\\""; sans="DNS:a.example,IP:10.0.0.1,IP:fd00::5,'
            . 'email:me@example.com,URI:spiffe://x/y"; sha256=' . lc($fp),
       'client_cert_header: subject, every SAN type, SHA-256, as hamlyn.json(5) documents');
}

# --- curl end to end, and passthrough on the same port
($code, $body) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                          "https://a.test:$p/");
is($code, 200, 'curl over TLS to the terminating site');
my $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'default.test', no_verify => 1,
                       send => "hello\n", shut_wr => 1, timeout => 10);
like($r->{first_line} // '', qr/^backend=PT /, 'passthrough site on the same port reaches its backend');

# --- handshake timeout: a silent client after a valid ClientHello
{
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$p", Timeout => 5) or die;
    # a complete ClientHello for a.test, then silence: hamlyn answers with its
    # flight and waits for ours; the handshake timeout (1 s) closes it.
    my $ch = `python3 -c '
import ssl, sys
c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE
i, o = ssl.MemoryBIO(), ssl.MemoryBIO()
s = c.wrap_bio(i, o, server_hostname="a.test")
try: s.do_handshake()
except ssl.SSLWantReadError: pass
sys.stdout.buffer.write(o.read())'`;
    ok(length($ch) > 100, 'built a ClientHello');
    my $t0 = time;
    syswrite($s, $ch);
    my $closed = 0;
    while (time - $t0 < 5) {
        my $n = sysread($s, my $buf, 65536);
        if (!$n) { $closed = 1; last }
    }
    my $el = time - $t0;
    ok($closed, 'silent client is disconnected');
    ok($el >= 0.8 && $el < 3, sprintf('... after the 1 s handshake timeout (%.2f s)', $el));
}
ok($t->wait_error_log(qr/TLS handshake failed: timeout/), 'timeout logged');
like($t->error_log, qr/TLS handshake failed: timeout.*\(while doing the TLS handshake\)/,
     'the log line names the action ("while doing the TLS handshake")');
unlike($t->error_log, qr/while during/, 'no "while during" in log lines');
ok($t->wait_error_log(qr/\[info\].*TLS handshake failed: .*(certificate|cert)/),
   'client certificate failure logged at info with a reason');
ok($t->wait_error_log(qr/TLS handshake failed: .*(unsupported protocol|version)/i),
   'version refusal logged with a reason');
# A TLS 1.3 client refusing our certificate sends its alert before it has
# keys (in clear text): logged as that alert, not as "bad packet length".
$out = $t->s_client(port => $p, servername => 'r.test', ca => '', input => "",
                    args => ['-tls1_3', '-verify_return_error']);
like($out, qr/verify error|unable to get local issuer/i, 'a TLS 1.3 client without our CA refuses the certificate');
ok($t->wait_error_log(qr/sni=r\.test: TLS handshake failed: tlsv1 alert unknown ca/),
   '... logged as its alert (unknown ca)');
unlike($t->error_log, qr/bad packet length/, '... not as "bad packet length"');
$t->stop;

# --- a site with several names covered by different certificates: the
# certificate is the one for the SNI, then by signature algorithms
{
    my $tn = Hamlyn::Test->new(name => '30-tls-names');
    my $pn = $tn->port;
    my %cn = (certificates => $conf{certificates},
              listeners => [ { name => 'main', listen => ["127.0.0.1:$pn"], sites => ['multi'],
                               default_site => 'multi' } ],
              sites => { multi => { server_names => ['a.test', 'b.test', '*.wild.test'], mode => 'terminate',
                                    tls => { certificates => ['a-ecdsa', 'a-rsa', 'b', 'wild'] },
                                    routes => [ { status => 200, body => "multi\n" } ] } });
    $tn->write_conf(\%cn);
    $tn->run or BAIL_OUT('hamlyn (several names) did not start');
    for my $c (['a.test', [], qr/CN = a\.test.*signature type: ECDSA/is],
               ['a.test', ['-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256'], qr/CN = a\.test.*signature type: RSA-PSS/is],
               ['b.test', [], qr/CN = b\.test/],
               ['b.test', ['-tls1_2'], qr/CN = b\.test/],
               ['x.wild.test', [], qr/CN = \*\.wild\.test/],
               ['X.Wild.Test', [], qr/CN = \*\.wild\.test/]) {
        my ($name, $args, $want) = @$c;
        my $o = $tn->s_client(port => $pn, servername => $name, input => "",
                              args => ['-brief', '-verify_hostname', lc $name, @$args]);
        like($o, $want, "several names: $name @$args gets its own certificate");
        like($o, qr/Verification: OK/, '... which verifies for that name');
    }
    my $o = $tn->s_client(port => $pn, servername => undef, input => "", args => ['-brief']);
    like($o, qr/CN = a\.test/, 'several names: no SNI gets the first (ECDSA) certificate');
    $tn->stop;
}

# --- ticket key file: tickets survive a restart (same keys), and a ticket
# from another key set is not accepted.
my $t2 = Hamlyn::Test->new(name => '30-tls-keys');
my $p2 = $t2->port;
my %c2 = %conf;
$c2{runtime} = { tls_session_ticket_keys => "$dir/tickets.keys", workers => 2 };
$c2{listeners} = [ { name => 'main', listen => ["127.0.0.1:$p2"], sites => [qw(a)] } ];
$c2{sites} = { a => $conf{sites}{a} };
delete $c2{upstreams};
$t2->write_conf(\%c2);
$t2->run or BAIL_OUT('hamlyn (ticket keys) did not start');
unlink "$dir/sess2";
$out = $t2->s_client(port => $p2, servername => 'a.test', input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                     expect => qr/\r\n\r\n/, args => ['-sess_out', "$dir/sess2"]);
like($out, qr/^New,/m, 'ticket key file: full handshake first');
$t2->stop;
$t2->run or BAIL_OUT('hamlyn (ticket keys) did not restart');
$out = $t2->s_client(port => $p2, servername => 'a.test', input => "", args => ['-sess_in', "$dir/sess2"]);
like($out, qr/^Reused,/m, 'ticket key file: the session resumes after a restart (same keys)');

# Two workers: TLS 1.2 session IDs (a client that takes no ticket) and TLS
# 1.3 tickets resume whichever worker gets the next connection.
for my $v (['-tls1_2', '-no_ticket'], ['-tls1_3']) {
    my $what = join ' ', @$v;
    unlink "$dir/sess4";
    $out = $t2->s_client(port => $p2, servername => 'a.test', input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                         expect => qr/\r\n\r\n/, args => [@$v, '-sess_out', "$dir/sess4"]);
    like($out, qr/^New,/m, "$what, 2 workers: full handshake first");
    like($out, qr/Session-ID: [0-9A-F]{64}/, "$what: the server gave the session an ID") if $v->[0] eq '-tls1_2';
    my $reused = 0;
    for (1 .. 10) {
        $out = $t2->s_client(port => $p2, servername => 'a.test', input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                             expect => qr/\r\n\r\n/, args => [@$v, '-sess_in', "$dir/sess4"]);
        $reused++ if $out =~ /^Reused,/m;
    }
    is($reused, 10, "$what, 2 workers: 10 of 10 later connections resumed");
}
my %pids = map { ($_->{pid} // 0) => 1 } grep { ($_->{sni} // '') eq 'a.test' } @{ $t2->access_log };
note('connections served by workers ' . join(', ', sort keys %pids));
$t2->stop;

# A second instance sharing the key file resumes the session too, unless
# its site of the same name asks for client certificates: a session made
# without one must not get past client_auth "required" (nor "optional":
# the backend would learn nothing of the missing certificate's reason).
my $t3 = Hamlyn::Test->new(name => '30-tls-keys2');
my $p3 = $t3->port;
my %c3 = %c2;
$c3{listeners} = [ { name => 'main', listen => ["127.0.0.1:$p3"], sites => [qw(a)] } ];
$t3->write_conf(\%c3);
$t3->run or BAIL_OUT('hamlyn (second instance, ticket keys) did not start');
$out = $t3->s_client(port => $p3, servername => 'a.test', input => "", args => ['-sess_in', "$dir/sess2"]);
like($out, qr/^Reused,/m, 'ticket key file: another instance sharing it resumes the session');
$t3->stop;
for my $mode (qw(required optional)) {
    my $a = JSON::PP->new->decode(JSON::PP->new->encode($conf{sites}{a}));
    $a->{tls}{client_auth} = { mode => $mode, ca => "$certs/client-ca.pem" };
    $c3{sites} = { a => $a };
    $t3->write_conf(\%c3);
    $t3->run or BAIL_OUT("hamlyn (client_auth $mode, ticket keys) did not start");
    for my $v ('-tls1_2', '-tls1_3') {
        unlink "$dir/sess3";
        $t2->run or BAIL_OUT('hamlyn (ticket keys) did not restart');
        $t2->s_client(port => $p2, servername => 'a.test', input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                      expect => qr/\r\n\r\n/, args => [$v, '-sess_out', "$dir/sess3"]);
        $t2->stop;
        ok(-s "$dir/sess3", "$v: session of the instance without client_auth saved");
        $out = $t3->s_client(port => $p3, servername => 'a.test', input => "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
                             expect => qr/\r\n\r\n|alert/, args => [$v, '-sess_in', "$dir/sess3"]);
        unlike($out, qr/^Reused,/m, "$v: ... does not resume where client_auth is $mode");
        if ($mode eq 'required') {
            unlike($out, qr{HTTP/1\.1 200}, "$v: ... and gets no answer without a certificate");
        } else {
            like($out, qr{HTTP/1\.1 200}, "$v: ... and gets a full handshake");
        }
    }
    $t3->stop;
}

# --- Ed25519 beside RSA: Ed25519 only to clients that offer the ed25519
# scheme (and, with TLS 1.2, an ECDHE-ECDSA suite); RSA to the others,
# which failed their handshake when the Ed25519 certificate came first.
{
    my $te = Hamlyn::Test->new(name => '30-tls-ed25519');
    my $pe = $te->port;
    my $ed = $te->dir;
    sh("openssl req -x509 -newkey ed25519 -nodes -days 30 -subj /CN=a.test "
       . "-addext subjectAltName=DNS:a.test -keyout $ed/ed.key -out $ed/ed.pem");
    $te->write_conf({
        certificates => { ed  => { cert => "$ed/ed.pem", key => "$ed/ed.key" },
                          rsa => { cert => "$certs/a.test-rsa.pem", key => "$certs/a.test-rsa.key" } },
        listeners => [{ name => 'pub', listen => ["127.0.0.1:$pe"], sites => ['a'] }],
        sites => { a => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['ed', 'rsa'] },
                          routes => [ { status => 200, body => "ed\n" } ] } },
    });
    $te->run or BAIL_OUT('hamlyn (Ed25519 and RSA) did not start');
    my $o = $te->s_client(port => $pe, servername => 'a.test', input => "", args => ['-brief', '-tls1_3']);
    like($o, qr/(?:Peer )?signature type: ed25519/i, 'Ed25519 and RSA: a client offering ed25519 gets Ed25519');
    $o = $te->s_client(port => $pe, servername => 'a.test', input => "",
                       args => ['-brief', '-tls1_3', '-sigalgs', 'RSA-PSS+SHA256:ECDSA+SHA256']);
    like($o, qr/(?:Peer )?signature type: RSA-PSS/i, '... a TLS 1.3 client without ed25519 gets RSA');
    $o = $te->s_client(port => $pe, servername => 'a.test', input => "",
                       args => ['-brief', '-tls1_2', '-sigalgs', 'RSA-PSS+SHA256:RSA+SHA256']);
    like($o, qr/Ciphersuite: ECDHE-RSA-/, '... so does a TLS 1.2 one');
    $o = $te->s_client(port => $pe, servername => 'a.test', input => "",
                       args => ['-brief', '-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
    like($o, qr/Ciphersuite: ECDHE-RSA-AES128-GCM-SHA256/,
         '... and a TLS 1.2 one offering ed25519 but no ECDHE-ECDSA suite');
    $te->stop;
}

done_testing;
