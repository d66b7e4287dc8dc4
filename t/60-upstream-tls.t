#!/usr/bin/perl
# 60-upstream-tls.t: re-encryption to upstreams (issue 4, TLS part).  The
# real ./hamlyn terminates a.test and proxies to real TLS backends
# (t/lib/hm_backend.py https): verified chain and name, SNI, upstream mTLS,
# pins, verify:false with an accepted risk, session resumption on a new
# upstream connection, pool reuse, and the failures (unknown CA, name
# mismatch, expired, refused client certificate, handshake timeout) that
# answer 502, forward nothing and log the reason.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use POSIX ();

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;

sub spki_pin {
    my ($pem) = @_;
    my $b64 = `openssl x509 -in $pem -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`;
    chomp $b64;
    return "sha256/$b64";
}

my $be_ok   = $t->backend(mode => 'https', cert => 'backend.test', name => 'OK');
my $be_mtls = $t->backend(mode => 'https', cert => 'backend.test', client_ca => 1, name => 'MTLS');
my $be_exp  = $t->backend(mode => 'https', cert => 'expired', name => 'EXP');
my $be_bad  = $t->backend(mode => 'https', cert => 'backend.test', name => 'BAD');  # for failures
# a TCP server that accepts and never says anything
my $silent = IO::Socket::INET->new(Listen => 16, LocalAddr => '127.0.0.1', LocalPort => 0,
                                   ReuseAddr => 1) or die;
my $silent_port = $silent->sockport;
my $p = $t->port;
# A server whose chain carries a CA certificate that did not sign its
# leaf (client-ca.pem, public): with verify false only the leaf proves
# anything (the handshake shows its key), so a pin of that CA must not
# let it through.
{
    my $dir = $t->dir;
    open my $o, '>', "$dir/forged.pem" or die;
    for my $f ("$certs/backend.test.pem", "$certs/client-ca.pem") {
        open my $i, "<", $f or die; local $/; my $pem = <$i>; print {$o} $pem;
    }
    close $o;
    system('cp', "$certs/backend.test.key", "$dir/forged.key") == 0 or die;
}
my $be_forged = $t->backend(mode => 'https', cert => $t->dir . '/forged', name => 'FORGED');
# A TLS 1.2 server without session tickets (openssl s_server -no_ticket:
# resumption by session ID only); -www answers each request with a page
# that says "New, TLSv1.2" or "Reused, TLSv1.2".
my $sid_port = $t->port;
my $sid_pid = fork // die "fork: $!";
if ($sid_pid == 0) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null';
    { no warnings 'exec';
      exec 'openssl', 's_server', '-accept', "127.0.0.1:$sid_port", '-quiet', '-www',
          '-cert', "$certs/backend.test.pem", '-key', "$certs/backend.test.key",
          '-tls1_2', '-no_ticket'; }
    POSIX::_exit(127);
}
END { local $?; if ($sid_pid) { kill 'TERM', $sid_pid; waitpid($sid_pid, 0) } }
for (1 .. 100) {
    last if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$sid_port");
    select(undef, undef, undef, 0.05);
}

sub up {
    my ($be, %tls) = @_;
    my $port = ref $be ? $be->{port} : $be;
    return { servers => ["127.0.0.1:$port"], connect_timeout_ms => 1000,
             tls => { server_name => 'backend.test', ca => "$certs/ca.pem", %tls } };
}
my $pin = spki_pin("$certs/backend.test.pem");
my @routes = map { { match => { path_prefix => ($_->[0] eq 'close' ? '/close' : "/$_->[0]/") },
                     upstream => $_->[1] } }
    ([close => 'ok'], [ok => 'ok'], [mtls => 'mtls'], [nocert => 'nocert'], [unknownca => 'unknownca'],
     [name => 'name'], [expired => 'expired'], [pin => 'pin'], [badpin => 'badpin'],
     [noverify => 'noverify'], [exppin => 'exppin'], [sessid => 'sessid'], [forgedpin => 'forgedpin'], [timeout => 'timeout'], [ipname => 'ipname'], [mixed => 'mixed']);

my $ap = $t->port;
$t->write_conf({
    admin => { listen => "127.0.0.1:$ap" },
    certificates => {
        a       => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" },
        'proxy' => { cert => "$certs/proxy-client.pem", key => "$certs/proxy-client.key" },
    },
    upstreams => {
        ok        => up($be_ok),
        mtls      => up($be_mtls, client_certificate => 'proxy'),
        nocert    => up($be_mtls),
        unknownca => up($be_bad, ca => "$certs/client-ca.pem"),
        name      => up($be_bad, server_name => 'wrong.test'),
        expired   => up($be_exp),
        pin       => up($be_ok, pins => [$pin]),
        badpin    => up($be_bad, pins => ['sha256/' . ('A' x 43) . '=']),
        # with verify true a pin is checked in addition to the chain: a
        # matching pin does not rescue an expired certificate
        exppin    => up($be_exp, pins => [spki_pin("$certs/expired.pem")]),
        noverify  => up($be_exp, verify => JSON::PP::false, accepted_risk => 'test: self-managed backend',
                        pins => [spki_pin("$certs/expired.pem")]),
        timeout   => up($silent_port),
        # an IP literal as server_name: checked as such, never sent as SNI
        ipname    => up($be_ok, server_name => '127.0.0.1', verify => JSON::PP::false,
                        accepted_risk => 'test: reached by address', pins => [$pin]),
        # no client certificate: the first server refuses the handshake
        # (TLS 1.3: after the proxy's side of it), the second serves
        sessid    => up($sid_port),
        forgedpin => up($be_forged, verify => JSON::PP::false, accepted_risk => 'test: pinned',
                        pins => [spki_pin("$certs/client-ca.pem")]),
        mixed     => { %{ up($be_mtls) }, max_fails => 2,
                       servers => ["127.0.0.1:$be_mtls->{port}", "127.0.0.1:$be_ok->{port}"] },
    },
    listeners => [ { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a'] } ],
    sites => { a => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] }, routes => \@routes } },
});
unless (Hamlyn::Test::has('upstream_tls')) {
    # Built --without-upstream_tls: the configuration is refused up front
    # instead of answering 502 at request time; the TLS-upstream tests
    # below need the module.
    my ($rc, $out) = $t->hamlyn('-t', '-c', $t->dir . '/hamlyn.json');
    isnt($rc, 0, 'without upstream_tls: hamlyn -t refuses upstreams with "tls"');
    like($out, qr/upstreams\.ok\.tls: upstream TLS needs the upstream_tls module/,
         '... with a clear error naming the upstream and the module');
    SKIP: { skip 'upstream_tls not compiled in: re-encryption tests', 1 }
    done_testing;
    exit 0;
}
$t->run or BAIL_OUT('hamlyn did not start');

sub get {
    my ($path) = @_;
    my ($code, $body) = $t->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                                 "https://a.test:$p$path");
    my $j = eval { JSON::PP->new->decode($body) } // {};
    return ($code, $j, $body);
}
sub backend_requests { my ($be) = @_; open my $f, '<', $be->{log} or return 0; my @l = <$f>; return scalar @l }

# --- verified TLS, SNI, pool reuse, resumption
my ($code, $j) = get('/ok/1');
is($code, 200, 'verified TLS upstream: 200');
is($j->{backend}, 'OK', '... from the backend');
is($j->{sni}, 'backend.test', '... SNI = server_name');
ok(defined $j->{tls_resumed} && !$j->{tls_resumed}, '... first upstream connection is a full handshake');
($code, $j) = get('/ok/2');
is($code, 200, 'second request');
is($j->{conn_requests}, 2, 'pool reuse: the second request went over the same upstream connection');
($code, $j) = get('/close');    # the backend answers, then closes that connection
is($code, 200, '/close answered (backend closes the pooled connection)');
is($j->{conn_requests}, 3, '... on the pooled connection');
select(undef, undef, undef, 0.2);
($code, $j) = get('/ok/3');
is($code, 200, 'request on a new upstream connection');
is($j->{conn_requests}, 1, '... it is a new connection (the closed one was not reused)');
ok($j->{tls_resumed}, '... and its TLS session was resumed');

# The same four requests in the admin metrics (one worker, nothing else
# has reached an upstream yet): two connections, the second resumed, and
# two requests sent on the pooled one.
{
    my ($mc, $mb) = $t->curl("http://127.0.0.1:$ap/metrics");
    is($mc, 200, 'admin /metrics');
    my %m = $mb =~ /^(hamlyn_upstream_\w+|hamlyn_tls_resumed_total) (\d+)$/mg;
    is($m{hamlyn_upstream_connections_total}, 2, 'metrics: 2 upstream connections');
    is($m{hamlyn_upstream_tls_handshakes_total}, 2, 'metrics: 2 upstream TLS handshakes');
    is($m{hamlyn_upstream_tls_resumed_total}, 1, 'metrics: 1 of them resumed');
    is($m{hamlyn_upstream_requests_total}, 4, 'metrics: 4 upstream requests');
    is($m{hamlyn_upstream_pool_reuses_total}, 2, 'metrics: 2 of them on a pooled connection');
    is($m{hamlyn_tls_resumed_total}, 0, 'metrics: no client handshake resumed (curl, one each)');
}

# --- a server without session tickets: resumption by session ID
{
    my @seen;
    for my $i (1 .. 3) {
        my ($c, undef, $body) = get("/sessid/$i");
        push @seen, $c == 200 && $body =~ /\b(New|Reused), TLSv1\.2\b/ ? $1 : "status $c";
    }
    is_deeply(\@seen, [qw(New Reused Reused)],
              'TLS 1.2 server without tickets: new upstream connections resume by session ID');
}

# --- upstream mTLS
($code, $j) = get('/mtls/1');
is($code, 200, 'mTLS upstream: 200');
is($j->{client_cert}, 'proxy.test', '... the backend saw the proxy client certificate');

# --- pins, verify:false
($code, $j) = get('/pin/1');
is($code, 200, 'matching SPKI pin (in addition to the chain): 200');
($code, $j) = get('/noverify/1');
is($code, 200, 'verify:false with accepted_risk and a pin reaches an expired-cert backend');
is($j->{backend}, 'EXP', '... the right one');
# RFC 6066 3: SNI carries host names only; nginx sends none for an IP.
($code, $j) = get('/ipname/1');
is($code, 200, 'server_name an IP literal: 200');
ok(!defined $j->{sni}, '... and no SNI was sent') or diag("sni: $j->{sni}");

# --- failures: 502, nothing forwarded, reason logged
my $bad_before = backend_requests($be_bad);
my %fail = (
    unknownca => qr/unknown CA/,
    name      => qr/name mismatch/,
    expired   => qr/certificate expired/,
    badpin    => qr/pin mismatch/,
    exppin    => qr/certificate expired/,
    forgedpin => qr/pin mismatch/,
    nocert    => qr/certificate required/i,
    timeout   => qr/TLS handshake timed out/,
);
for my $k (sort keys %fail) {
    my ($c) = get("/$k/secret");
    is($c, 502, "$k: 502");
    # (a TLS 1.3 client certificate refusal arrives after the handshake,
    # while the response head is read)
    ok($t->wait_error_log(qr/upstream (?:"$k" )?127\.0\.0\.1:\d+:? .*$fail{$k}/),
       "$k: reason logged ($fail{$k})");
}
is(backend_requests($be_bad), $bad_before, 'no request reached the backend behind a failed TLS check');
my $mtls_log = do { local $/; open my $f, '<', $be_mtls->{log} or die; <$f> };
unlike($mtls_log // '', qr{/nocert/}, 'refused client certificate: the request was not served');
like($t->error_log, qr/\[error\].*upstream "expired".*certificate has expired/,
     'expired logged at error with the verification text');

# --- a refused client certificate is a TLS failure like the others: the
# request goes to the next server, the refusal counts against the server
# (max_fails 2: ejected after two) and is logged as a connect failure
my %got;
for my $i (1 .. 6) {
    my ($c, $jj) = get("/mixed/$i");
    $got{"$c " . ($jj->{backend} // '-')}++;
}
is_deeply(\%got, { '200 OK' => 6 },
          'upstream with a server refusing the proxy (no client certificate): every GET served by the next server')
    or diag(explain \%got);
my @refused = $t->error_log =~ /\[error\].*upstream "mixed" 127\.0\.0\.1:$be_mtls->{port}: [^\n]*certificate required[^\n]*\(while connecting to upstream\)/g;
is(scalar @refused, 2, '... the refusal logged as a connect failure, and after max_fails (2) the server is ejected')
    or diag($t->error_log);

$t->stop;
done_testing;
