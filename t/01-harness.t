#!/usr/bin/perl
# 01-harness.t: self-test of the integration harness (Hamlyn::Test), the test
# PKI (t/certs/mkcerts.sh) and the backends (t/lib/hm_backend.py,
# t/lib/hm_client.py), talking to them directly with openssl and curl.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use JSON::PP;

my $t = Hamlyn::Test->new;
my $certs = $t->certs;

# --- ports: distinct, and bindable
my %seen;
my @ports = map { $t->port } 1 .. 20;
$seen{$_}++ for @ports;
is(scalar(keys %seen), 20, 'port() never hands out the same port twice');
my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $ports[0],
                              Listen => 1, Proto => 'tcp');
ok($s, "port $ports[0] is free to bind");
close $s if $s;

# --- certs
for my $n (qw(a.test b.test wild.test backend.test default.test localhost)) {
    for my $f ("$n-ecdsa", "$n-rsa", $n) {
        ok(-s "$certs/$f.pem" && -s "$certs/$f.key", "$f.pem/.key exist");
    }
    my $v = `openssl verify -CAfile $certs/ca.pem $certs/$n-rsa.pem 2>&1`;
    like($v, qr/: OK$/m, "$n-rsa verifies against ca.pem");
    my $alg = `openssl x509 -in $certs/$n.pem -noout -text`;
    like($alg, qr/id-ecPublicKey/, "$n.pem is the ECDSA cert");
    like($alg, qr/prime256v1|P-256/, "$n.pem uses P-256");
}
like(`openssl x509 -in $certs/wild.test.pem -noout -ext subjectAltName`, qr/DNS:\*\.wild\.test/,
     'wild.test has SAN *.wild.test');
like(`openssl x509 -in $certs/localhost.pem -noout -ext subjectAltName`,
     qr/DNS:localhost.*IP Address:127\.0\.0\.1/s, 'localhost SANs');
like(`openssl x509 -in $certs/a.test-rsa.pem -noout -text`, qr/rsaEncryption.*2048 bit/s,
     'a.test-rsa is RSA-2048');
for my $c (qw(client proxy-client)) {
    like(`openssl verify -CAfile $certs/client-ca.pem -purpose sslclient $certs/$c.pem 2>&1`,
         qr/: OK$/m, "$c verifies against client-ca for clientAuth");
    unlike(`openssl verify -CAfile $certs/ca.pem $certs/$c.pem 2>&1`, qr/: OK$/m,
           "$c is not signed by the server CA");
}
like(`openssl x509 -in $certs/client.pem -noout -subject`, qr/CN\s*=\s*client\.test/, 'client CN');
like(`openssl x509 -in $certs/proxy-client.pem -noout -subject`, qr/CN\s*=\s*proxy\.test/, 'proxy-client CN');
like(`openssl verify -CAfile $certs/ca.pem $certs/expired.pem 2>&1`, qr/expired/,
     'expired.pem fails verification as expired');
like(`openssl x509 -in $certs/expired.pem -noout -enddate`, qr/2021/, 'expired.pem ended in 2021');
like(`openssl verify -CAfile $certs/ca.pem $certs/wrongsan.pem 2>&1`, qr/: OK$/m,
     'wrongsan.pem chains to the CA');
like(`openssl verify -CAfile $certs/ca.pem -verify_hostname backend.test $certs/wrongsan.pem 2>&1`,
     qr/mismatch/i, 'wrongsan.pem does not match backend.test');
unlike(`cat $certs/a.test.pem`, qr/BEGIN CERTIFICATE.*BEGIN CERTIFICATE/s, 'leaf files hold the leaf only');

# --- write_conf defaults
$t->write_conf({ listeners => [{ listen => ['127.0.0.1:1'] }], runtime => { workers => 3 } });
my $c = decode_json(do { local $/; open my $fh, '<', $t->conf_path or die; <$fh> });
is($c->{runtime}{workers}, 3, 'write_conf keeps the caller\'s runtime keys');
is($c->{runtime}{cpu_affinity}, 'off', 'write_conf fills cpu_affinity');
is($c->{runtime}{pid_file}, $t->dir . '/hamlyn.pid', 'write_conf fills pid_file');
is($c->{runtime}{error_log}{path}, $t->dir . '/error.log', 'write_conf fills error_log');
$t->write_conf({ runtime => { pid_file => undef } });
$c = decode_json(do { local $/; open my $fh, '<', $t->conf_path or die; <$fh> });
ok(!exists $c->{runtime}{pid_file} && $c->{runtime}{workers} == 1, 'a runtime key set to undef is left out');
$t->write_conf('{"listeners": [], "listeners": []}');
like(do { local $/; open my $fh, '<', $t->conf_path or die; <$fh> },
     qr/"listeners": \[\], "listeners": \[\]/, 'a JSON string keeps duplicate keys');
$t->write_conf('{"sites": {');
is(do { local $/; open my $fh, '<', $t->conf_path or die; <$fh> }, '{"sites": {',
   'broken JSON is written as given');

# --- the binary
my ($code, $out) = $t->hamlyn('-V');
is($code, 0, 'hamlyn -V exits 0');
like($out, qr/modules:/, 'hamlyn -V lists modules');
ok(Hamlyn::Test::has('sni_route'), "has('sni_route')");
ok(!Hamlyn::Test::has('no_such_module'), "!has('no_such_module')");

# --- tls-echo through openssl s_client
my $be = $t->backend(mode => 'tls-echo');
ok($be && $be->{port}, 'tls-echo backend started');
my $o = $t->s_client(port => $be->{port}, servername => 'backend.test',
                     input => "ping-123\n", expect => qr/ping-123/);
like($o, qr/^backend=be\d+ sni=backend\.test client=- proxy=-$/m, 'tls-echo info line');
like($o, qr/^ping-123$/m, 'tls-echo echoes');
like($o, qr/Verify return code: 0 \(ok\)/, 'backend cert verifies against ca.pem');
$o = $t->s_client(port => $be->{port}, expect => qr/backend=/);
like($o, qr/sni=- /, 'no SNI is reported as -');

# --- 5 MiB each way through hm_client.py, byte-exact
my $r = $t->tls_client(connect => "127.0.0.1:$be->{port}", servername => 'backend.test',
                       send_bytes => 5 << 20, shut_wr => 1);
ok($r->{ok}, 'hm_client transfer ok') or diag explain $r;
is($r->{rest_bytes}, 5 << 20, '5 MiB echoed');
is($r->{rest_sha256}, Hamlyn::Test::pattern_sha256(5 << 20), 'echo is byte-exact');
is($r->{peer_cn}, 'backend.test', 'peer CN');

# --- sink: hash of what it received, and N bytes downstream
my $sink = $t->backend(mode => 'sink', send_bytes => 1 << 20);
$r = $t->tls_client(connect => "127.0.0.1:$sink->{port}", servername => 'backend.test',
                    send_bytes => 123457, shut_wr => 1);
my $want = Hamlyn::Test::pattern_sha256(123457);
my ($sum, $cnt) = ($r->{last_line} // '') =~ /sha256=(\w+) bytes=(\d+)$/;
is($sum, $want, 'sink hash of what it received');
is($cnt, 123457, 'sink byte count');
is($r->{recv_bytes} - length("sha256=$want bytes=123457\n"), 1 << 20, 'sink sent 1 MiB first');

# --- client certificate required
my $mtls = $t->backend(mode => 'tls-echo', client_ca => 1, cert => 'b.test');
$r = $t->tls_client(connect => "127.0.0.1:$mtls->{port}", servername => 'b.test',
                    cert => 'client', send => "x\n", shut_wr => 1);
like($r->{first_line}, qr/client=client\.test/, 'backend sees the client certificate');
$r = $t->tls_client(connect => "127.0.0.1:$mtls->{port}", servername => 'b.test',
                    send => "x\n", shut_wr => 1);
unlike($r->{first_line} // '', qr/backend=/, 'no client certificate: refused');

# --- http backend: keep-alive, chunked request body, request log
my $h = $t->backend(mode => 'http', name => 'web');
my ($st, $body, $hdr) = $t->curl("http://127.0.0.1:$h->{port}/a?b=1");
is($st, 200, 'http backend answers 200');
my $j = decode_json($body);
is($j->{path}, '/a?b=1', 'request target reported');
my $ka = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$h->{port}", Timeout => 5) or die;
print $ka "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
my $two = do { local $/; <$ka> };
like($two, qr/"conn_requests": 2/, 'keep-alive: second request on the same connection');
is($j->{backend}, 'web', 'backend name');
is($hdr->{'content-type'}, 'application/json', 'headers parsed');
($st, $body) = $t->curl('-H', 'Transfer-Encoding: chunked', '--data-binary', 'hello world',
                        "http://127.0.0.1:$h->{port}/post");
$j = decode_json($body);
is($j->{body_len}, 11, 'chunked request body decoded');
is($j->{method}, 'POST', 'method');
ok((grep { lc $_->[0] eq 'transfer-encoding' } @{ $j->{headers} }), 'headers listed in order');
($st) = $t->curl("http://127.0.0.1:$h->{port}/status/503");
is($st, 503, '/status/503');
($st, $body) = $t->curl("http://127.0.0.1:$h->{port}/bytes/100000");
is(length $body, 100000, '/bytes/N');
($st, $body, $hdr) = $t->curl("http://127.0.0.1:$h->{port}/chunked");
is($hdr->{'transfer-encoding'}, 'chunked', '/chunked is chunked');
like(do { local $/; open my $fh, '<', $h->{log} or die; <$fh> },
     qr{^GET /a\?b=1 HTTP/1\.1$}m, 'request lines logged');

# --- https backend and PROXY protocol
my $hs = $t->backend(mode => 'https', proxy_protocol => 1);
($st, $body) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "backend.test:$hs->{port}:127.0.0.1",
                        "https://backend.test:$hs->{port}/");
is($st, 200, 'https backend');
is(decode_json($body)->{sni}, 'backend.test', 'https backend reports SNI');
my $hp = $t->backend(mode => 'http', proxy_protocol => 1);
my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$hp->{port}", Timeout => 5) or die;
print $sock "PROXY TCP4 192.0.2.7 127.0.0.1 4242 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
my $resp = do { local $/; <$sock> };
like($resp, qr/"proxy": "192\.0\.2\.7:4242"/, 'PROXY v1 source recorded');
$sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$hp->{port}", Timeout => 5) or die;
print $sock "\r\n\r\n\0\r\nQUIT\n" . pack('CCn', 0x21, 0x11, 12) . pack('C4C4nn', 198, 51, 100, 9, 127, 0, 0, 1, 5555, 80)
    . "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
$resp = do { local $/; <$sock> };
like($resp, qr/"proxy": "198\.51\.100\.9:5555"/, 'PROXY v2 source recorded');

# --- run / worker_pids / signal / wait_exit / stop against the real binary
SKIP: {
    skip 'sni_route not compiled in', 9 unless Hamlyn::Test::has('sni_route');
    my $lp = $t->port;
    $t->write_conf({
        listeners => [{ name => 'pub', listen => ["127.0.0.1:$lp"], sites => ['s'] }],
        upstreams => { s => { servers => ["127.0.0.1:$be->{port}"] } },
        sites => { s => { server_names => ['backend.test'], mode => 'passthrough', upstream => 's' } },
    });
    ok($t->run, 'run() starts hamlyn and sees the port listening');
    my $m = $t->master_pid;
    ok($m && -s $t->dir . '/hamlyn.pid', 'pid file written where write_conf put it');
    my @w = $t->worker_pids;
    is(scalar @w, 1, 'one worker (write_conf default)');
    ok($t->wait_error_log(qr/\S/, 5), 'error log in the test dir');
    ok($t->signal('QUIT'), 'signal QUIT sent');
    is($t->wait_exit(10), 0, 'QUIT: the master exits 0');
    my $until = time + 5;
    select(undef, undef, undef, 0.05) while grep({ Hamlyn::Test::_alive_pid($_) } @w) && time < $until;
    ok(!grep({ Hamlyn::Test::_alive_pid($_) } @w), 'the worker is gone too');
    ok($t->run, 'run() again');
    is($t->stop, 0, 'stop() (TERM): exit 0');
}

# --- stop_backend really stops it
$t->stop_backend($h);
ok(!IO::Socket::INET->new(PeerAddr => "127.0.0.1:$h->{port}", Timeout => 2), 'stopped backend refuses');

done_testing;
