#!/usr/bin/perl
# 21-passthrough-bad-input.t: hostile and broken clients on a passthrough
# listener (issue 2, "Bad input"): plain HTTP, random bytes, a malformed
# ClientHello, a silent client, a hello that never completes, more
# connections than runtime.max_connections.  Each is closed or refused
# quickly and logged; the same worker keeps serving everyone else.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

plan skip_all => 'sni_route not compiled in' unless Hamlyn::Test::has('sni_route');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $be = $t->backend(mode => 'tls-echo', cert => 'a.test', name => 'A');
my $p = $t->port;       # short ClientHello timeout
my $ph = $t->port;      # long timeout: holds connections for the max test
my $MAX = 5;

$t->write_conf({
    runtime => { max_connections => $MAX },
    upstreams => { a => { servers => ["127.0.0.1:$be->{port}"] } },
    listeners => [
        { name => 'main', listen => ["127.0.0.1:$p"], sites => ['a'], default_site => 'a',
          client_hello_timeout_ms => 500 },
        { name => 'hold', listen => ["127.0.0.1:$ph"], sites => ['a'], default_site => 'a',
          client_hello_timeout_ms => 8000 },
    ],
    sites => { a => { server_names => ['a.test'], mode => 'passthrough', upstream => 'a' } },
});
$t->run or BAIL_OUT('hamlyn did not start');
my @workers = $t->worker_pids;
is(scalar @workers, 1, 'one worker');

sub conn {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . ($port // $p), Timeout => 5)
        or die "connect: $!";
    $s->autoflush(1);
    return $s;
}

# Reads until EOF or $timeout; returns (data, seconds, eof?).
sub read_all {
    my ($s, $timeout) = @_;
    my ($buf, $t0, $eof) = ('', time, 0);
    while (time - $t0 < $timeout) {
        my $rin = ''; vec($rin, fileno($s), 1) = 1;
        next unless select($rin, undef, undef, 0.05);
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!$n) { $eof = 1; last }
    }
    return ($buf, time - $t0, $eof);
}

sub works {
    my $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test',
                           ca => "$certs/ca.pem", send => "ping\n", shut_wr => 1, timeout => 10);
    return ($r->{first_line} // '') =~ /^backend=A / && ($r->{rest_bytes} // 0) == 5;
}

ok(works(), 'a normal client is served');

# --- plain HTTP on the TLS port: 400 and close
{
    my $s = conn();
    print $s "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n";
    my ($d, $secs, $eof) = read_all($s, 3);
    like($d, qr{^HTTP/1\.1 400 Bad Request\r\n}, 'plain HTTP: 400 Bad Request');
    like($d, qr/TLS/, 'the body says this is a TLS port');
    ok($eof && $secs < 2, 'plain HTTP: closed at once');
}
{
    my ($code) = $t->curl("http://127.0.0.1:$p/");
    is($code, 400, 'curl over plain HTTP gets 400');
}

# --- random bytes: closed at once, nothing answered
{
    my $s = conn();
    print $s join('', map { chr(int(rand(256)) | 0x80) } 1 .. 200);
    my ($d, $secs, $eof) = read_all($s, 3);
    ok($eof && $secs < 2, 'random bytes: closed at once');
    is(length $d, 0, 'random bytes: nothing sent back');
}

# --- a malformed ClientHello: alert decode_error
{
    my $s = conn();
    # handshake record holding a "ClientHello" whose body is garbage
    my $body = "\x03\x03" . ("\xff" x 40);
    my $hs = "\x01" . substr(pack('N', length $body), 1) . $body;
    print $s "\x16\x03\x01" . pack('n', length $hs) . $hs;
    my ($d, $secs, $eof) = read_all($s, 3);
    is(substr($d, 0, 1), "\x15", 'malformed hello: an alert record comes back');
    is(ord(substr($d, 6, 1) // "\0"), 50, 'alert decode_error (50)');
    ok($eof && $secs < 2, 'malformed hello: closed');
}

# --- a silent client: closed after client_hello_timeout_ms (500)
{
    my $s = conn();
    my ($d, $secs, $eof) = read_all($s, 5);
    ok($eof, 'silent client: closed');
    ok($secs >= 0.4 && $secs < 3, sprintf('silent client: closed after the timeout (%.2f s)', $secs));
}

# --- a ClientHello that never completes: closed after the timeout
{
    my $s = conn();
    # a record header announcing 512 bytes, then only some of them
    print $s "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" . ("\x11" x 32);
    my ($d, $secs, $eof) = read_all($s, 5);
    ok($eof, 'incomplete hello: closed');
    ok($secs >= 0.4 && $secs < 3, sprintf('incomplete hello: closed after the timeout (%.2f s)', $secs));
}

ok(works(), 'still serving after bad input');

# --- more than max_connections
{
    # A relayed session established before the limit is reached keeps
    # working while new connections are refused.
    my $h = $t->hold_relay(port => $p, ca => "$certs/ca.pem");
    my $ready = readline($h->{fh});
    like($ready // '', qr/READY/, 'long-lived relayed session established');

    my @hold = map { conn($ph) } 1 .. $MAX - 1;   # now at the limit
    sleep 0.3;
    my $s = conn();
    my ($d, $secs, $eof) = read_all($s, 3);
    ok($eof && $secs < 1, sprintf('over max_connections: refused at once (%.2f s)', $secs));
    my $s2 = conn($ph);
    ($d, $secs, $eof) = read_all($s2, 3);
    ok($eof && $secs < 1, 'refused on the other listener too');

    my $res = $t->release_relay($h);
    like($res // '', qr/^RESULT backend=A .* one two$/, 'the established session kept working');
    close $_ for @hold;
    sleep 0.3;
}
ok($t->wait_error_log(qr/max_connections \($MAX\) reached/, 3), 'refusal logged (info)');
{
    # at most one line a second, but every refusal counted: the second
    # one (within the same second) is logged a second later
    my ($sum, $deadline) = (0, time + 3);
    while (time < $deadline) {
        $sum = 0;
        $sum += $1 for $t->error_log =~ /max_connections \(\d+\) reached: refused (\d+) connection/g;
        last if $sum >= 2;
        sleep 0.1;
    }
    is($sum, 2, 'error log: both refusals counted (lines of "refused N")');
}
ok(works(), 'served again once below the limit');

# --- access log outcomes
my $log = $t->wait_access_log(12, 5);
my %out;
$out{$_->{outcome} // ''}++ for @$log;
ok($out{not_tls} && $out{not_tls} >= 3, 'not_tls logged (plain HTTP, curl, random bytes)')
    or diag explain \%out;
ok($out{bad_hello}, 'bad_hello logged');
ok(($out{timeout} // 0) >= 2, 'timeouts logged (silent, incomplete hello)');
ok(($out{too_many_connections} // 0) >= 2, 'too_many_connections logged');
ok(($out{ok} // 0) >= 3, 'ok logged (the three normal clients)');
my ($to) = grep { ($_->{outcome} // '') eq 'timeout' } @$log;
ok($to && !defined $to->{sni} && $to->{listener} eq 'main', 'timeout line: listener, no sni');

# --- nothing crashed
is_deeply([$t->worker_pids], \@workers, 'same worker process after all bad input');
unlike($t->error_log, qr/assert|signal \d+|exited/i, 'no crash in the error log');

$t->stop;

# --- with the default max_connections (TCP_DEFER_ACCEPT on), a
# client_hello_timeout_ms under the 1 s deferral still holds: a silent
# client is closed after 300 ms, not after the kernel's 1 s
{
    my $t2 = Hamlyn::Test->new(name => '21-defer');
    my ($p2, $p3) = ($t2->port, $t2->port);
    $t2->write_conf({
        upstreams => { a => { servers => ["127.0.0.1:$be->{port}"] } },
        listeners => [{ listen => ["127.0.0.1:$p2"], sites => ['a'], default_site => 'a',
                        client_hello_timeout_ms => 300 },
                      { name => 'deferred', listen => ["127.0.0.1:$p3"], sites => ['a'],
                        default_site => 'a', client_hello_timeout_ms => 1000 }],
        sites => { a => { server_names => ['a.test'], mode => 'passthrough', upstream => 'a' } },
    });
    $t2->run or BAIL_OUT('hamlyn did not start');
    my ($d, $secs, $eof) = read_all(conn($p2), 3);
    ok($eof && $secs >= 0.25 && $secs < 0.8,
       sprintf('default max_connections: silent client closed after 300 ms (%.2f s)', $secs));
    my $r = $t2->tls_client(connect => "127.0.0.1:$p2", servername => 'a.test',
                            ca => "$certs/ca.pem", send => "ping\n", shut_wr => 1, timeout => 10);
    like($r->{first_line} // '', qr/^backend=A /, '... and a normal client is served');
    # 1000 ms: the kernel holds the silent client for the 1 s deferral,
    # which the access log's duration_ms counts (it said 0)
    ($d, $secs, $eof) = read_all(conn($p3), 3);
    ok($eof && $secs >= 0.9 && $secs < 2, sprintf('deferred listener: silent client closed after 1 s (%.2f s)', $secs));
    my $l = $t2->wait_access_log(3, 3);
    my ($to) = grep { ($_->{listener} // '') eq 'deferred' } @$l;
    ok($to && $to->{outcome} eq 'timeout' && $to->{duration_ms} >= 900,
       'deferred listener: timeout line with the whole wait in duration_ms ('
       . ($to ? $to->{duration_ms} : '?') . ' ms)');
    $t2->stop;
}

done_testing;
