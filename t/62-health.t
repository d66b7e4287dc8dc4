#!/usr/bin/perl
# 62-health.t: active health checks (issue 4) end to end.  Two plaintext
# HTTP backends behind one upstream with health_check (interval 1 s,
# fail_after 2, pass_after 1) and passive ejection off (max_fails 0), so
# only the active checks can take a server out of rotation:
#   - both healthy: the checks reach both, traffic goes to both;
#   - one killed: logged DOWN at warn after 2 failed checks, then every
#     request goes to the other and the dead one is not even tried;
#   - brought back on the same port: logged UP, gets traffic again;
#   - all down: 503.
# Plus the TLS transport of the checks: an HTTPS backend verified with the
# test CA stays up, serves, and its checks resume the TLS session; the same
# backend checked under a wrong server_name is marked DOWN (certificate
# name mismatch) and answers 503.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $be1 = $t->backend(mode => 'http', name => 'be1') or BAIL_OUT('be1');
my $be2 = $t->backend(mode => 'http', name => 'be2') or BAIL_OUT('be2');
my $be3 = $t->backend(mode => 'https', name => 'be3') or BAIL_OUT('be3');
my $be4 = $t->backend(mode => 'hostile', name => 'be4') or BAIL_OUT('be4');
my $p = $t->port;
my ($p1, $p2, $p3) = ($be1->{port}, $be2->{port}, $be3->{port});

my $hc = { interval_s => 1, path => '/healthz', fail_after => 2,
           pass_after => 1, timeout_ms => 500 };
$t->write_conf({
    runtime => { error_log => { path => $t->dir . '/error.log',
                                level => 'debug' } },
    certificates => { a => { cert => "$certs/a.test.pem",
                             key  => "$certs/a.test.key" } },
    upstreams => {
        app => {
            servers => ["127.0.0.1:$p1", "127.0.0.1:$p2"],
            plaintext => { accepted_risk => 'test backends on loopback' },
            max_fails => 0,
            health_check => $hc,
        },
        tlsapp => {
            servers => ["127.0.0.1:$p3"],
            tls => { server_name => 'backend.test', ca => "$certs/ca.pem" },
            health_check => { %$hc, fail_after => 1 },
        },
        badname => {
            servers => ["127.0.0.1:$p3"],
            tls => { server_name => 'wrong.test', ca => "$certs/ca.pem" },
            health_check => { %$hc, fail_after => 1 },
        },
        # interim 1xx responses before the final one (hm_backend.py hostile)
        hint => {
            servers => ["127.0.0.1:$be4->{port}"],
            plaintext => { accepted_risk => 'test backends on loopback' },
            health_check => { %$hc, fail_after => 1, path => '/hint200' },
        },
        hintcut => {
            servers => ["127.0.0.1:$be4->{port}"],
            plaintext => { accepted_risk => 'test backends on loopback' },
            health_check => { %$hc, fail_after => 1, path => '/hintcut' },
        },
        hint503 => {
            servers => ["127.0.0.1:$be4->{port}"],
            plaintext => { accepted_risk => 'test backends on loopback' },
            health_check => { %$hc, fail_after => 1, path => '/hint503' },
        },
    },
    listeners => [ { name => 'public', listen => ["127.0.0.1:$p"],
                     sites => ['api'] } ],
    sites => {
        api => {
            server_names => ['a.test'],
            mode => 'terminate',
            tls => { certificates => ['a'] },
            routes => [
                { match => { path_prefix => '/tls/' }, upstream => 'tlsapp' },
                { match => { path_prefix => '/bad/' }, upstream => 'badname' },
                { match => { path_prefix => '/hint/' }, upstream => 'hint' },
                { match => { path_prefix => '/hintcut/' }, upstream => 'hintcut' },
                { match => { path_prefix => '/hint503/' }, upstream => 'hint503' },
                { match => { path_prefix => '/' }, upstream => 'app' },
            ],
        },
    },
});
unless (Hamlyn::Test::has('health_check') && Hamlyn::Test::has('upstream_tls')) {
    # Built without health_check (or without upstream_tls, which the TLS
    # checks use): hamlyn -t refuses this configuration with a clear error.
    my ($rc, $out) = $t->hamlyn('-t', '-c', $t->dir . '/hamlyn.json');
    isnt($rc, 0, 'without health_check/upstream_tls: hamlyn -t refuses the configuration');
    like($out, qr/upstreams\.\w+\.(?:health_check|tls): .* needs? the (?:health_check|upstream_tls) module/,
         '... with a clear error naming the module');
    SKIP: { skip 'health_check or upstream_tls not compiled in: active health check tests', 1 }
    done_testing;
    exit 0;
}
$t->run or BAIL_OUT('hamlyn did not start');

# get($path): (status, backend name or '')
sub get {
    my ($path) = @_;
    my ($code, $body) = $t->curl('--cacert', "$certs/ca.pem", '--resolve',
                                 "a.test:$p:127.0.0.1", "https://a.test:$p$path");
    my $j = eval { decode_json($body) } // {};
    return ($code, $j->{backend} // '');
}

# wait_for($what, $timeout_s): polls $what->() every 0.1 s; true if it
# became true in time.
sub wait_for {
    my ($what, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        return 1 if $what->();
        sleep 0.1;
    }
    return $what->();
}

sub slurp { my ($f) = @_; open my $fh, '<', $f or return ''; local $/; <$fh> }
sub count_log { my ($re) = @_; my @m = $t->error_log =~ /$re/g; scalar @m }

my $down2 = qr/\[warn\].*upstream app server 127\.0\.0\.1:$p2 is DOWN: health check failed 2 times \([^)]+\)/;
my $up2   = qr/\[warn\].*upstream app server 127\.0\.0\.1:$p2 is UP: health check passed 1 time \(HTTP 200\)/;
my $down1 = qr/upstream app server 127\.0\.0\.1:$p1 is DOWN/;

# ---- both healthy ----
ok(wait_for(sub { slurp($be1->{log}) =~ m{GET /healthz} && slurp($be2->{log}) =~ m{GET /healthz} }, 5),
   'health checks reach both backends');
my %seen;
for (1 .. 10) {
    my ($code, $who) = get('/x');
    $seen{"$code $who"}++;
}
ok(($seen{'200 be1'} // 0) >= 3 && ($seen{'200 be2'} // 0) >= 3
   && $seen{'200 be1'} + $seen{'200 be2'} == 10,
   'both healthy: traffic to both (round robin)') or diag(explain \%seen);

# ---- TLS checks ----
my ($code, $who) = get('/tls/x');
is("$code $who", '200 be3', 'TLS upstream with a passing TLS health check serves');
ok(wait_for(sub { $t->error_log =~ /upstream tlsapp server 127\.0\.0\.1:$p3: health check passed \(HTTP 200, TLS session resumed\)/ }, 5),
   'TLS health checks resume the TLS session (shared per-server cache)');
ok(wait_for(sub { $t->error_log =~ /upstream badname server 127\.0\.0\.1:$p3 is DOWN: health check failed 1 time/ }, 5),
   'TLS health check under a wrong server_name marks the server DOWN');
is((get('/bad/x'))[0], '503', 'its only server down: 503');
# ---- interim responses before the final one (RFC 9110 15.2) ----
ok(wait_for(sub { $t->error_log =~ /upstream hint server 127\.0\.0\.1:\d+: health check passed \(HTTP 200\)/
                  && $t->error_log =~ /upstream hintcut server 127\.0\.0\.1:\d+: health check passed \(HTTP 204\)/ }, 6),
   'health check: 103 and 100 before the final status are skipped, also when cut inside the 1xx head')
    or diag($t->error_log);
ok(wait_for(sub { $t->error_log =~ /upstream hint503 server 127\.0\.0\.1:\d+ is DOWN: health check failed 1 time \(HTTP 503\)/ }, 6),
   'health check: the final status after a 103 decides (503: DOWN)');
unlike($t->error_log, qr/upstream hint(?:cut)? server .* is DOWN/, '... and a 1xx alone never marks a server DOWN');
unlike($t->error_log, qr/upstream tlsapp server .* is DOWN/,
       'the verified TLS upstream never went down');

# ---- one backend dies ----
$t->stop_backend($be2);
ok(wait_for(sub { $t->error_log =~ $down2 }, 8),
   'killed backend logged DOWN at warn after fail_after checks')
    or diag($t->error_log);
my $mark = length $t->error_log;
%seen = ();
for (1 .. 10) {
    my ($c, $w) = get('/x');
    $seen{"$c $w"}++;
}
is_deeply(\%seen, { '200 be1' => 10 }, 'one down: every request goes to the other')
    or diag(explain \%seen);
my $after = substr($t->error_log, $mark);
unlike($after, qr/upstream "app" 127\.0\.0\.1:$p2:/,
       'the down server is not even tried (no connect errors)');

# ---- it comes back ----
my $be2b = $t->backend(mode => 'http', name => 'be2', port => $p2)
    or BAIL_OUT('be2 restart');
ok(wait_for(sub { $t->error_log =~ $up2 }, 8), 'restarted backend logged UP at warn');
%seen = ();
for (1 .. 10) {
    my ($c, $w) = get('/x');
    $seen{"$c $w"}++;
}
ok(($seen{'200 be2'} // 0) >= 4, 'back up: it gets traffic again')
    or diag(explain \%seen);
is(($seen{'200 be1'} // 0) + ($seen{'200 be2'} // 0), 10, '... every request answered');

# ---- all down ----
$t->stop_backend($be1);
$t->stop_backend($be2b);
ok(wait_for(sub { $t->error_log =~ $down1 && count_log($down2) >= 2 }, 8),
   'both logged DOWN');
($code) = get('/x');
is($code, '503', 'all servers down: 503');
my $last = $t->access_log->[-1] // {};
is($last->{status}, 503, 'access log: 503');
is($last->{outcome}, 'no_upstream', 'access log: no upstream available');

$t->stop;
done_testing();
