#!/usr/bin/perl
# t/42-upstream-plain.t: plaintext upstream pools behind a terminating
# site: keep-alive reuse across client connections, idle connections the
# server closed are never reused, a request retried on a fresh connection
# when a pooled one dies before answering, pool idle timeout and size,
# round_robin / least_conn / random_two, next server on connect failure,
# the proxy's own 502 and 504, invalid or truncated upstream responses.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use POSIX qw(_exit WNOHANG);
use Time::HiRes qw(sleep time);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $p = $t->port;
my $bea = $t->backend(mode => 'http', name => 'be-a') or BAIL_OUT('backend a');
my $beb = $t->backend(mode => 'http', name => 'be-b') or BAIL_OUT('backend b');
my $dead = $t->port;     # nothing listens here
my $dead2 = $t->port;    # nor here

# A hand-made upstream that answers every connection with fixed bytes.
my @kids;
sub fake_upstream {
    my ($answer) = @_;
    my $port = $t->port;
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                    Listen => 16, ReuseAddr => 1) or die "listen: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        local $SIG{ALRM} = sub { _exit(0) };
        alarm 120;
        while (my $c = $srv->accept) {
            my $buf = '';
            while ($buf !~ /\r\n\r\n/) {
                my $n = sysread($c, $buf, 4096, length $buf);
                last unless $n;
            }
            syswrite($c, $answer);
            close $c;
        }
        _exit(0);
    }
    close $srv;
    push @kids, $pid;
    return $port;
}
END { local $?; kill 'TERM', @kids if @kids; waitpid($_, 0) for @kids }

# An upstream that reads a request head, then never reads again (its
# receive buffer kept small so that the proxy's write queue fills).
sub holding_upstream {
    my $port = $t->port;
    my $srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                    Listen => 16, ReuseAddr => 1) or die "listen: $!";
    setsockopt($srv, SOL_SOCKET, SO_RCVBUF, 65536);
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        local $SIG{ALRM} = sub { _exit(0) };
        alarm 120;
        my @held;
        while (my $c = $srv->accept) {
            my $buf = '';
            sysread($c, $buf, 4096);
            push @held, $c;
        }
        _exit(0);
    }
    close $srv;
    push @kids, $pid;
    return $port;
}

my $bad = fake_upstream("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi");
my $short = fake_upstream("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten..");
my $garbage = fake_upstream("garbage\r\n\r\n");
# A listener that never accepts: connects succeed, no answer ever comes.
my $hung_srv = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Listen => 16, ReuseAddr => 1) or die "listen: $!";
my $hung = $hung_srv->sockport;
my $eof = fake_upstream("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nbody until close");
my $interim = fake_upstream("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                          . "Link: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                          . "Connection: close\r\n\r\nok");
my $holding = holding_upstream();
my $connlen = fake_upstream("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\n"
                           . "Content-Length: 5\r\n\r\nhello");
my $early = fake_upstream("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\n\r\ntoo large");

sub up {
    my ($servers, %o) = @_;
    return { servers => $servers,
             plaintext => { accepted_risk => 'test backends on loopback' },
             connect_timeout_ms => 1000, read_timeout_ms => 800, %o };
}

my %routes = (
    '/pool/'  => 'one',   '/rr/'   => 'rr',    '/lc/'   => 'lc',
    '/r2/'    => 'r2',    '/next/' => 'next',  '/down/' => 'down',
    '/bad/'   => 'bad',   '/short/' => 'short', '/garbage/' => 'garbage',
    '/eof/'   => 'eof',   '/interim/' => 'interim',
    '/tiny/'  => 'tiny',  '/nopool/' => 'nopool', '/drop-next' => 'one',
    '/alldown/' => 'alldown', '/onedown/' => 'onedown', '/hung/' => 'hung',
    '/echo' => 'one', '/holding/' => 'holding', '/bytes/' => 'one',
    '/early/' => 'early', '/connlen/' => 'connlen',
);
$t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        one     => up(["127.0.0.1:$bea->{port}"]),
        tiny    => up(["127.0.0.1:$bea->{port}"], pool => { max_idle_per_worker => 4,
                                                            idle_timeout_s => 1 }),
        nopool  => up(["127.0.0.1:$bea->{port}"], pool => { max_idle_per_worker => 0 }),
        rr      => up(["127.0.0.1:$bea->{port}", "127.0.0.1:$beb->{port}"]),
        lc      => up(["127.0.0.1:$bea->{port}", "127.0.0.1:$beb->{port}"],
                      balance => 'least_conn', read_timeout_ms => 5000),
        r2      => up(["127.0.0.1:$bea->{port}", "127.0.0.1:$beb->{port}"],
                      balance => 'random_two'),
        next    => up(["127.0.0.1:$dead", "127.0.0.1:$beb->{port}"]),
        down    => up(["127.0.0.1:$dead"]),
        alldown => up(["127.0.0.1:$dead", "127.0.0.1:$dead2"], max_fails => 1,
                      fail_timeout_s => 120),
        onedown => up(["127.0.0.1:$dead2"], max_fails => 2, fail_timeout_s => 120),
        bad     => up(["127.0.0.1:$bad"]),
        hung    => up(["127.0.0.1:$hung"], read_timeout_ms => 200, max_fails => 2,
                      fail_timeout_s => 120),
        short   => up(["127.0.0.1:$short"]),
        garbage => up(["127.0.0.1:$garbage"]),
        eof     => up(["127.0.0.1:$eof"]),
        interim => up(["127.0.0.1:$interim"]),
        holding => up(["127.0.0.1:$holding"]),
        early   => up(["127.0.0.1:$early"]),
        connlen => up(["127.0.0.1:$connlen"]),
    },
    listeners => [ { name => 'l', listen => ["127.0.0.1:$p"], sites => ['a'],
                     default_site => 'a' } ],
    sites => { a => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      limits => { max_body_bytes => 200_000_000 },
                      routes => [
                          { match => { path_prefix => '/slow', headers => { 'x-up' => 'lc' } },
                            upstream => 'lc' },
                          { match => { path_prefix => '/slow' }, upstream => 'one' },
                          map { { match => { path_prefix => $_ },
                                  upstream => $routes{$_} } } sort keys %routes ] } },
});
$t->run or BAIL_OUT('hamlyn did not start');

sub curl {
    my ($path, @args) = @_;
    return $t->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                    @args, "https://a.test:$p$path");
}
sub j { my ($b) = @_; return eval { decode_json($b) } // {} }

# ---- pool reuse across client connections ------------------------------

{
    my ($c1, $b1) = curl('/pool/1');
    my ($c2, $b2) = curl('/pool/2');
    is($c1, 200, 'first request');
    is($c2, 200, 'second request, another client connection');
    is(j($b2)->{conn_requests}, j($b1)->{conn_requests} + 1,
       'the upstream connection was taken from the pool');
}

# ---- an idle pooled connection closed by the server is never reused ----

{
    my ($c1, $b1) = curl('/tiny/1');
    is($c1, 200, 'request that leaves an idle pooled connection');
    my $port = $bea->{port};
    $t->stop_backend($bea);
    $bea = $t->backend(mode => 'http', name => 'be-a', port => $port)
        or BAIL_OUT('backend a restart');
    sleep 0.3;
    my ($c2, $b2) = curl('/tiny/2');
    is($c2, 200, 'request after the server closed the idle connection');
    is(j($b2)->{conn_requests}, 1, 'served on a new upstream connection');
}

# ---- pool idle timeout and size ---------------------------------------

{
    my ($c1, $b1) = curl('/tiny/a');
    my ($c2, $b2) = curl('/tiny/b');
    is(j($b2)->{conn_requests}, j($b1)->{conn_requests} + 1, 'pooled before the idle timeout');
    sleep 2.5;
    my ($c3, $b3) = curl('/tiny/c');
    is($c3, 200, 'request after pool idle_timeout_s');
    is(j($b3)->{conn_requests}, 1, 'idle connection was closed by the pool sweep');

    my ($n1, $x1) = curl('/nopool/1');
    my ($n2, $x2) = curl('/nopool/2');
    is(j($x2)->{conn_requests}, 1, 'max_idle_per_worker 0: no reuse');
}

# ---- a pooled connection that dies on reuse: retried on a fresh one ----

{
    my ($c1, $b1) = curl('/drop-next');
    is($c1, 200, 'the backend will drop the next request on this connection');
    my ($c2, $b2) = curl('/pool/after-drop');
    is($c2, 200, 'pooled connection died before answering: request retried');
    is(j($b2)->{conn_requests}, 1, 'the retry went over a new upstream connection');
    is(j($b2)->{path}, '/pool/after-drop', 'the retried request is the same request');

    # RFC 9110 9.2.2: a POST (not idempotent) is never re-sent, even
    # without a body: the upstream may have acted on its head.
    ($c1) = curl('/drop-next');
    is($c1, 200, 'the backend will drop the next request on this connection');
    my ($c3) = curl('/pool/post-after-drop', '-X', 'POST');
    is($c3, 502, 'POST on a pooled connection that died: 502, not retried');
    my ($c4) = curl('/pool/after-post');
    is($c4, 200, 'the next request gets a working connection');
}

# ---- balance -----------------------------------------------------------

{
    my %seen;
    for my $i (1 .. 6) {
        my ($c, $b) = curl("/rr/$i");
        $seen{ j($b)->{backend} // 'none' }++;
    }
    is($seen{'be-a'}, 3, 'round_robin: half to a');
    is($seen{'be-b'}, 3, 'round_robin: half to b');

    my $bg = fork;
    if ($bg == 0) {
        { no warnings 'exec';
          exec 'curl', '-s', '-o', '/dev/null', '-H', 'X-Up: lc', '--cacert', "$certs/ca.pem",
              '--resolve', "a.test:$p:127.0.0.1", "https://a.test:$p/slow?ms=2000"; }
        _exit(127);
    }
    sleep 0.5;
    my ($c1, $b1) = curl('/lc/x');
    my ($c2, $b2) = curl('/lc/y');
    waitpid($bg, 0);
    my $first = j($b1)->{backend};
    ok($first && $first eq j($b2)->{backend}, 'least_conn: requests avoid the busy server');
    isnt($first, undef, 'least_conn answered');

    my %r2;
    for my $i (1 .. 8) {
        my ($c, $b) = curl("/r2/$i");
        $r2{$c}++;
    }
    is($r2{200}, 8, 'random_two: every request answered');
}

# ---- connect failure: next server; all failing: 502 --------------------

{
    my %codes;
    my %be;
    for my $i (1 .. 4) {
        my ($c, $b) = curl("/next/$i");
        $codes{$c}++;
        $be{ j($b)->{backend} // 'none' }++;
    }
    is($codes{200}, 4, 'connect failure: the next server answered every request');
    is($be{'be-b'}, 4, 'all served by the live server');
    like($t->error_log, qr/connect|refused/i, 'connect failure logged');

    my ($c, $b, $h) = curl('/down/x');
    is($c, 502, 'no server reachable: 502');
    like($b, qr/502/, '502 short body');
    like($t->error_log, qr/while connecting to upstream/, 'error log names the action');
}

# ---- every server down (passive ejection): 503 without connecting -------

{
    my $attempts = sub {
        my ($name) = @_;
        my @l = $t->error_log =~ /upstream "\Q$name\E" 127\.0\.0\.1:\d+: /g;
        return scalar @l;
    };
    my ($c, $b) = curl('/alldown/1');
    is($c, 502, 'two dead servers, first request: both tried, 502');
    is($attempts->('alldown'), 2, 'two connection attempts logged');
    ($c, $b) = curl('/alldown/2');
    is($c, 503, 'both ejected (max_fails 1): 503');
    like($b, qr/503/, '503 short body');
    ($c) = curl('/alldown/3');
    is($c, 503, 'still 503 while the servers are down');
    is($attempts->('alldown'), 2, 'no connection attempted for the 503s');
    like($t->error_log, qr/upstream "alldown": no server available \(all down\)/,
         '503 logged with its reason');

    my @codes = map { (curl("/onedown/$_"))[0] } 1 .. 4;
    is_deeply(\@codes, [502, 502, 503, 503],
              'single server: 502 until ejected after max_fails 2, then 503');
    is($attempts->('onedown'), 2, 'single server: no connection once ejected');
    my ($log) = grep { ($_->{path} // '') eq '/alldown/2' } @{ $t->access_log };
    is($log->{outcome}, 'no_upstream', 'access log: outcome of the 503');
}

# ---- 504, invalid and truncated responses -------------------------------

{
    my $t0 = time;
    my ($c, $b) = curl('/slow?ms=3000');
    is($c, 504, 'read_timeout_ms before the response head: 504');
    ok(time - $t0 < 2.5, '504 after read_timeout_ms');
    like($t->error_log, qr/timed out.*while reading response header from upstream/,
         'timeout logged with its action');

    # A response head timeout counts against the server even though each
    # request connects anew (the connect alone is no success).
    my @codes = map { (curl("/hung/$_"))[0] } 1 .. 3;
    is_deeply(\@codes, [504, 504, 503],
              'server that never answers: 504 until ejected after max_fails 2, then 503');
    like($t->error_log, qr/\[error\].*upstream "hung" 127\.0\.0\.1:$hung: timed out \(while reading response header from upstream\)/,
         'the timeout is logged as upstream "NAME" ADDRESS: REASON');

    ($c) = curl('/bad/x');
    is($c, 502, 'bare-LF response from the upstream: 502');
    ($c) = curl('/garbage/x');
    is($c, 502, 'garbage response: 502');

    my ($sc, $sb, $sh, $exit) = curl('/short/x');
    isnt($exit, 0, 'truncated upstream body: the client sees an incomplete response');
    like($t->error_log, qr/upstream "short" 127\.0\.0\.1:$short: closed the connection in the middle of the response body/,
         'truncation logged, naming the upstream');
}

# ---- read_timeout_ms counts from the end of the request ---------------
# A request body that keeps arriving for longer than read_timeout_ms (800)
# is not a slow upstream: the answer is the upstream's, not a 504.  An
# upstream that stops reading the body is: 504, with its action.

{
    my $out = $t->raw_tls("POST /echo HTTP/1.1\r\nHost: a.test\r\nContent-Length: 8\r\n\r\n"
                          . join('<<PAUSE>>', qw(ab cd ef gh)),
                          port => $p, pause => 0.4, idle => 1);
    like($out, qr{^HTTP/1\.1 200 }, 'body uploaded over 1.2 s, read_timeout_ms 800: 200');
    like($out, qr/\r\n\r\nabcdefgh/, '... with the whole body');

    my $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test',
                           no_verify => 1, timeout => 15, send_bytes => 150_000_000,
                           send_head => "POST /holding/x HTTP/1.1\r\nHost: a.test\r\n"
                                        . "Content-Length: 150000000\r\n\r\n");
    like($r->{first_line} // '', qr{^HTTP/1\.1 504 }, 'upstream stops reading the body: 504');
    ok(($r->{elapsed_s} // 99) < 5, sprintf('... after read_timeout_ms (%.2f s)',
                                           $r->{elapsed_s} // 99));
    ok($t->wait_error_log(qr/timed out \(while sending request to upstream\)/),
       'logged as a timeout while sending the request');

    # A client that stops reading a download for longer than read_timeout_ms
    # holds the upstream back: its own idle_timeout_ms applies, not the
    # upstream's read_timeout_ms.
    my $n = 30_000_000;
    $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'a.test',
                        no_verify => 1, timeout => 20, read_delay => 1.5,
                        send => "GET /bytes/$n HTTP/1.1\r\nHost: a.test\r\n"
                                . "Connection: close\r\n\r\n");
    like($r->{first_line} // '', qr{^HTTP/1\.1 200 }, 'download, client pauses 1.5 s: 200');
    cmp_ok($r->{recv_bytes} // 0, '>', $n, '... and the whole body arrives');
    unlike($t->error_log, qr/timed out \(while reading response body/,
           'a paused client is not an upstream timeout');
}

# ---- an answer before the end of the request body ---------------------
# The rest of the body is never read: the connection closes after the
# answer, and its head says so.

{
    my $out = $t->raw_tls("POST /early/x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\nab",
                          port => $p, idle => 2);
    like($out, qr{^HTTP/1\.1 413 }, 'upstream answers before the body ended: forwarded');
    like($out, qr{\r\nConnection: close\r\n}, '... announcing Connection: close');
    like($out, qr/too large\n\[\[EOF\]\]$/, '... and the connection closes after it');
}

# ---- Connection naming Content-Length drops nothing ---------------------
# (RFC 9110 7.6.1): the response stays framed, the next one follows.

{
    my $out = $t->raw_tls("GET /connlen/x HTTP/1.1\r\nHost: a.test\r\n\r\n"
                          . "GET /connlen/y HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
                          port => $p, idle => 2);
    my @st = $out =~ m{HTTP/1\.1 (\d{3}) }g;
    is_deeply(\@st, [200, 200], 'upstream lists Content-Length in Connection: both answers');
    like($out, qr{^HTTP/1\.1 200 [^\r]*\r\n(?:[^\r]+\r\n)*Content-Length: 5\r\n}s,
         '... the first still carries its Content-Length');
}

# ---- close-delimited and interim upstream responses --------------------

{
    my ($c, $b, $h) = curl('/eof/x');
    is($c, 200, 'close-delimited upstream response');
    is($b, 'body until close', 'its body, complete');
    is($h->{'transfer-encoding'}, 'chunked', 're-framed as chunked for an HTTP/1.1 client');
    ($c, $b, $h) = curl('/eof/y', '--http1.0');
    is($b, 'body until close', 'HTTP/1.0 client: raw body');
    is($h->{connection}, 'close', 'HTTP/1.0 client: delimited by close');
    ($c, $b, $h) = curl('/interim/x');
    is($c, 200, 'interim 100 and 103 from the upstream are not forwarded');
    is($b, 'ok', 'final response after interim ones');
    unlike($h->{':raw'}, qr/103|Early/, 'no interim head reached the client');
}

# ---- the access log names upstream and outcome -------------------------

{
    my $log = $t->access_log;
    my ($down) = grep { ($_->{path} // '') eq '/down/x' } @$log;
    is($down->{status}, 502, 'access log: 502');
    is($down->{outcome}, 'upstream_error', 'access log: outcome of a 502');
    my ($to) = grep { ($_->{path} // '') eq '/slow?ms=3000' } @$log;
    is($to->{outcome}, 'upstream_timeout', 'access log: outcome of a 504');
}

$t->stop;
done_testing;
