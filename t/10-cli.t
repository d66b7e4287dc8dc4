#!/usr/bin/perl
# 10-cli.t: the command line of shared/CLI.md and man/hamlyn.8 against the
# real binary: -V/--version, -h, bad options, -t on good and broken
# configurations (every error with its JSON path, exit codes, nothing
# started), -s without a running master, --trust-report, and -d with
# -s stop.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);

my $t = Hamlyn::Test->new;

# A configuration the loader accepts: one passthrough site (its upstream
# needs neither tls nor plaintext).
sub good_conf {
    my ($port, $be) = @_;
    return {
        upstreams => { be => { servers => ["127.0.0.1:$be"] } },
        listeners => [{ name => 'pub', listen => ["127.0.0.1:$port"],
                        sites => ['s'], default_site => 's' }],
        sites => { s => { server_names => ['a.test'], mode => 'passthrough',
                          upstream => 'be' } },
    };
}

sub connects {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 2);
    close $s if $s;
    return $s ? 1 : 0;
}

# --- -V / --version / -h
my ($rc, $out) = $t->hamlyn('-V');
is($rc, 0, '-V exits 0');
like($out, qr/^hamlyn version \d+\.\d+\.\d+$/m, '-V: version line first');
like($out, qr/BoringSSL/, '-V names BoringSSL');
like($out, qr/^libuv: \d+\.\d+\.\d+$/m, '-V: libuv version');
like($out, qr/^http-parser: \d+\.\d+\.\d+$/m, '-V: http-parser version');
like($out, qr/^jansson: \d+\.\d+/m, '-V: jansson version');
like($out, qr/^configure arguments:(?: \S.*)?$/m, '-V: configure arguments (no trailing blank)');
unlike($out, qr/[ \t]$/m, '-V: no line ends in white space');
like($out, qr/^modules: .*\bsni_route\b/m, '-V lists the sni_route module');
SKIP: {
    skip 'built --without-upstream_tls', 1 unless Hamlyn::Test::has('upstream_tls');
    like($out, qr/^modules: .*\bupstream_tls\b/m,
         '-V lists the upstream_tls module (upstream TLS profiles, design card)');
}
SKIP: {
    skip 'built --without-upstream_tls or --without-health_check', 1
        unless Hamlyn::Test::has('upstream_tls') && Hamlyn::Test::has('health_check');
    like($out, qr/^modules: .*\bupstream_tls\b.*\bhealth_check\b/m,
         '... before health_check, whose checks use its contexts');
}
ok(Hamlyn::Test::has('sni_route'), 'harness has() sees sni_route');
ok(!Hamlyn::Test::has('no_such_module'), 'has() is false for an unknown module');

my ($rc2, $out2) = $t->hamlyn('--version');
is($rc2, 0, '--version exits 0');
is((split /\n/, $out2)[0], (split /\n/, $out)[0], '--version prints the same first line');

($rc, $out) = $t->hamlyn('-h');
is($rc, 0, '-h exits 0');
like($out, qr/Usage: hamlyn .*-c FILE.*-t.*-s SIGNAL/s, '-h prints the usage');

($rc, $out) = $t->hamlyn('--bogus');
is($rc, 2, 'unknown option exits 2');
like($out, qr/invalid option: "--bogus"/, 'unknown option is named');
like($out, qr/Usage:/, 'unknown option prints the usage');

($rc, $out) = $t->hamlyn('-c');
is($rc, 2, '-c without a file exits 2');
like($out, qr/requires an argument/, '-c without a file: message');

# --- -t on a good configuration: ok, and nothing started
my $port = $t->port;
my $conf = $t->write_conf(good_conf($port, $t->port));
($rc, $out) = $t->hamlyn('-t', '-c', $conf);
is($rc, 0, '-t on a good configuration exits 0') or diag($out);
like($out, qr/^hamlyn: configuration \Q$conf\E is ok$/m, '-t prints "configuration FILE is ok"');
ok(!connects($port), '-t binds nothing');
ok(!-e $t->dir . '/hamlyn.pid', '-t writes no pid file');
# Grouped single-letter options, as nginx takes them (-tc FILE, -tcFILE).
($rc, $out) = $t->hamlyn('-tc', $conf);
is($rc, 0, '-tc FILE: grouped options') or diag($out);
like($out, qr/^hamlyn: configuration \Q$conf\E is ok$/m, '-tc FILE tests FILE');
($rc, $out) = $t->hamlyn("-tc$conf");
like($out, qr/^hamlyn: configuration \Q$conf\E is ok$/m, '-tcFILE tests FILE');
($rc, $out) = $t->hamlyn('-tq', '-c', $conf);
is($rc, 2, 'an unknown letter in a group exits 2');
like($out, qr/invalid option: "-tq"/, '... and names the word');

# --- -t on a broken configuration: every error, each with its JSON path
my $bad = good_conf($port, $t->port);
$bad->{runtime} = { bogus_key => 1 };
$bad->{sites}{s}{upstream} = 'nope';
$bad->{listeners}[0]{sites} = ['s', 'missing_site'];
$conf = $t->write_conf($bad);
($rc, $out) = $t->hamlyn('-t', '-c', $conf);
is($rc, 1, '-t on a broken configuration exits 1');
like($out, qr/runtime\.bogus_key/, 'error names runtime.bogus_key');
like($out, qr/sites\.s\.upstream\b.*nope/, 'error names sites.s.upstream and the dangling name');
like($out, qr/listeners\[0\]\.sites\[1\]/, 'error names listeners[0].sites[1]');
unlike($out, qr/is ok/, 'no "is ok" for a broken configuration');
like($out, qr/test failed/, 'a summary line says the test failed');

# --- JSON syntax error: line and column
$conf = $t->write_conf(qq({"listeners": [\n  {"name": "x",,}\n]}\n));
($rc, $out) = $t->hamlyn('-t', '-c', $conf);
is($rc, 1, '-t on invalid JSON exits 1');
like($out, qr/line 2/, 'invalid JSON: the line is named');

# --- missing file
($rc, $out) = $t->hamlyn('-t', '-c', $t->dir . '/does-not-exist.json');
is($rc, 1, '-t on a missing file exits 1');
like($out, qr/does-not-exist\.json/, 'missing file: the file is named');

# --- -s without a running master / with a bad signal name
$conf = $t->write_conf(good_conf($port, $t->port));
($rc, $out) = $t->hamlyn('-s', 'quit', '-c', $conf);
is($rc, 1, '-s quit without a running master exits 1');
like($out, qr/pid file .*hamlyn\.pid/, '-s: the pid file is named');
($rc, $out) = $t->hamlyn('-s', 'quit', '-c', $t->dir . '/nowhere.json');
is($rc, 1, '-s with a missing configuration file exits 1');
like($out, qr/nowhere\.json cannot be read as JSON \(unable to open .*No such file or directory\)/,
     '-s: why the file cannot be read');
($rc, $out) = $t->hamlyn('-s', 'bogus', '-c', $conf);
is($rc, 2, '-s with an unknown signal exits 2');
like($out, qr/invalid signal "bogus"/, '-s: unknown signal named');

# A stale pid file (no such process).
open my $fh, '>', $t->dir . '/hamlyn.pid' or die;
print $fh "999999999\n";
close $fh;
($rc, $out) = $t->hamlyn('-s', 'stop', '-c', $conf);
is($rc, 1, '-s with a stale pid file exits 1');
like($out, qr/not running|invalid pid/, '-s: stale pid file reported');

# A stale pid file whose pid now belongs to another program (after a crash
# or a reboot): nothing is sent, that program keeps running.
{
    my $other = fork // die;
    if ($other == 0) { exec 'sleep', '30'; POSIX::_exit(127) }
    open my $fh2, '>', $t->dir . '/hamlyn.pid' or die;
    print $fh2 "$other\n";
    close $fh2;
    ($rc, $out) = $t->hamlyn('-s', 'stop', '-c', $conf);
    is($rc, 1, '-s with a pid file naming another program exits 1');
    like($out, qr/process $other .* is not hamlyn: .*stale pid file\); nothing sent/,
         '... and says why');
    ok(kill(0, $other) && waitpid($other, POSIX::WNOHANG()) == 0, '... and the other program was not signalled');
    kill 'KILL', $other;
    waitpid($other, 0);
}
unlink $t->dir . '/hamlyn.pid';

# --- --trust-report
($rc, $out) = $t->hamlyn('--trust-report', '-c', $conf);
is($rc, 0, '--trust-report exits 0') or diag($out);
like($out, qr/passthrough/, 'trust report: the passthrough site is described');
($rc, $out) = $t->hamlyn('--trust-report=json', '-c', $conf);
is($rc, 0, '--trust-report=json exits 0');
my $doc = eval { JSON::PP->new->decode($out) };
ok(ref $doc, '--trust-report=json prints one JSON document') or diag($out);
($rc, $out) = $t->hamlyn('--trust-report=yaml', '-c', $conf);
is($rc, 2, '--trust-report=yaml is refused with exit 2');
$conf = $t->write_conf($bad);
($rc, $out) = $t->hamlyn('--trust-report', '-c', $conf);
is($rc, 1, '--trust-report on a broken configuration exits 1');

# --- -d: daemon, then -s stop
$port = $t->port;
$conf = $t->write_conf(good_conf($port, $t->port));
my $t0 = time;
($rc, $out) = $t->hamlyn('-d', '-c', $conf);
is($rc, 0, '-d: the launching process exits 0') or diag($out);
ok(time - $t0 < 10, '-d returns promptly');
my $pidf = $t->dir . '/hamlyn.pid';
ok(-s $pidf, '-d: the pid file exists when the launcher returns');
my ($dpid) = (Hamlyn::Test::_slurp($pidf) =~ /(\d+)/);
ok($dpid && kill(0, $dpid), '-d: the daemon runs');
my $stat = $dpid ? Hamlyn::Test::_slurp("/proc/$dpid/stat") : '';
my @st = (split ' ', ($stat =~ /\) (.*)$/s)[0] // '');
is($st[1], 1, '-d: the daemon was re-parented to init') if @st;
my $sid = $st[3];
isnt($sid, getsid(0), '-d: the daemon runs in its own session') if @st;
is(readlink("/proc/$dpid/fd/1"), '/dev/null', '-d: stdout is /dev/null') if $dpid;
ok(connects($port), '-d: the daemon listens');

# -t (and --trust-report) take precedence over -s, as with nginx: they
# signal nothing ("test the configuration" must never stop a server).
($rc, $out) = $t->hamlyn('-t', '-s', 'stop', '-c', $conf);
is($rc, 0, '-t -s stop: exit 0 (the test)') or diag($out);
like($out, qr/^hamlyn: configuration \Q$conf\E is ok$/m, '-t -s stop: the configuration is tested');
($rc, $out) = $t->hamlyn('--trust-report', '-s', 'quit', '-c', $conf);
is($rc, 0, '--trust-report -s quit: exit 0');
like($out, qr/passthrough/, '--trust-report -s quit: the report is printed');
sleep 0.3;
ok($dpid && kill(0, $dpid), '-t/--trust-report with -s: the daemon still runs');
ok(connects($port), '... and still listens');

# -s works from a file broken since the start (only runtime.pid_file is read).
my $broken_now = good_conf($port, $t->port);
$broken_now->{sites}{s}{upstream} = 'nope';
$conf = $t->write_conf($broken_now);
($rc, $out) = $t->hamlyn('-s', 'stop', '-c', $conf);
is($rc, 0, '-s stop exits 0, even with a broken file') or diag($out);
my $deadline = time + 10;
sleep 0.05 while $dpid && kill(0, $dpid) && time < $deadline;
ok(!kill(0, $dpid), '-s stop: the daemon exited');
ok(!-e $pidf, '-s stop: the pid file was removed');
ok(!connects($port), '-s stop: the port is closed');
like($t->error_log, qr/fast shutdown/, 'the error log records the fast shutdown');

# --- runtime.user/group with a key only root can read, and -s reopen.
# The master (root) reads the key, binds and opens the logs; the workers
# run as nobody:nogroup and still serve TLS with it, write the access log,
# and after the logs were moved away, -s reopen gives them new files.
SKIP: {
    skip 'runtime.user needs a root master', 9 if $> != 0;
    my ($nuid) = (getpwnam('nobody'))[2];
    my ($ngid) = (getgrnam('nogroup'))[2];
    skip 'no nobody:nogroup', 9 unless defined $nuid && defined $ngid;
    my $u = Hamlyn::Test->new(name => '10-cli-user');
    my $certs = $u->certs;
    my $d = $u->dir;
    for my $x (qw(pem key)) {
        open my $in, '<', "$certs/a.test.$x" or die; local $/; my $data = <$in>; close $in;
        open my $o, '>', "$d/a.$x" or die; print $o $data; close $o;
    }
    chmod 0600, "$d/a.key";
    chown 0, 0, "$d/a.key";
    my $p = $u->port;
    $u->write_conf({
        runtime => { workers => 2, user => 'nobody', group => 'nogroup' },
        certificates => { a => { cert => 'a.pem', key => 'a.key' } },
        listeners => [{ listen => ["127.0.0.1:$p"], sites => ['s'] }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['a'] },
                          routes => [{ status => 200, body => "hi\n" }] } },
    });
    $u->run or BAIL_OUT('hamlyn did not start');
    my @w = $u->worker_pids;
    my $ids = join ' ', map {
        my $st = Hamlyn::Test::_slurp("/proc/$_/status") // '';
        ($st =~ /^Uid:\s*(\d+)/m ? $1 : '?') . ':' . ($st =~ /^Gid:\s*(\d+)/m ? $1 : '?')
    } @w;
    is($ids, join(' ', ("$nuid:$ngid") x 2), 'both workers run as nobody:nogroup');
    my ($code, $body) = $u->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1",
                                 "https://a.test:$p/");
    is($code, 200, 'TLS with a key only root can read (mode 0600)');
    is($body, "hi\n", '... the fixed answer');
    ok($u->wait_access_log(1), 'the workers write the access log');
    my $acc = "$d/access.log";
    rename $acc, "$acc.1" or die "rename: $!";
    rename "$d/error.log", "$d/error.log.1" or die "rename: $!";
    my ($src, $sout) = $u->hamlyn('-s', 'reopen', '-c', $u->conf_path);
    is($src, 0, '-s reopen exits 0') or diag($sout);
    my $end = time + 10;
    sleep 0.05 until -e $acc || time > $end;
    ok(-e $acc, '-s reopen: a new access log');
    is((stat $acc)[4], $nuid, '... owned by the workers\' user');
    for (1 .. 4) {
        $u->curl('--cacert', "$certs/ca.pem", '--resolve', "a.test:$p:127.0.0.1", "https://a.test:$p/$_");
    }
    $end = time + 10;
    sleep 0.05 until (-s $acc // 0) > 0 && scalar(() = (Hamlyn::Test::_slurp($acc) // '') =~ /\n/g) >= 4
                     || time > $end;
    my @lines = grep { /\S/ } split /\n/, Hamlyn::Test::_slurp($acc) // '';
    is(scalar @lines, 4, 'the workers write the new access log after the reopen');
    like(Hamlyn::Test::_slurp("$d/error.log") // '', qr/log files reopened/, 'a new error log too');
    $u->stop;
}

# --- make install keeps an operator's configuration (as nginx does): the
# shipped one always lands as hamlyn.json.default, hamlyn.json only when
# there is none; the demo certificate likewise.  -o hamlyn: install what is
# built, never rebuild from a test.
SKIP: {
    skip 'make install runs in the source tree only', 6 if $ENV{HAMLYN_BIN};
    my $stage = $t->dir . '/stage';
    my $etc = "$stage/etc/hamlyn";
    my $install = sub {
        my $o = `make -s -o hamlyn install DESTDIR=$stage PREFIX=/usr 2>&1`;
        return ($? >> 8, $o);
    };
    my ($irc, $iout) = $install->();
    is($irc, 0, 'make install into a staging folder') or diag $iout;
    ok(-x "$stage/usr/sbin/hamlyn" && -f "$stage/usr/share/man/man8/hamlyn.8"
       && -f "$stage/usr/share/man/man5/hamlyn.json.5",
       'binary and both man pages installed');
    is(Hamlyn::Test::_slurp("$etc/hamlyn.json"), Hamlyn::Test::_slurp('conf/hamlyn.json'),
       'first install writes the default configuration');
    open my $fh, '>', "$etc/hamlyn.json" or die $!;
    print $fh "{\"operator\": \"edited\"}\n";
    close $fh;
    my $pem = Hamlyn::Test::_slurp("$etc/certs/demo.pem");
    ($irc, $iout) = $install->();
    is(Hamlyn::Test::_slurp("$etc/hamlyn.json"), "{\"operator\": \"edited\"}\n",
       'a second make install keeps the edited configuration') or diag $iout;
    is(Hamlyn::Test::_slurp("$etc/hamlyn.json.default"), Hamlyn::Test::_slurp('conf/hamlyn.json'),
       'and installs the shipped one as hamlyn.json.default');
    is(Hamlyn::Test::_slurp("$etc/certs/demo.pem"), $pem, 'and keeps the certificate');
}

sub getsid {
    my $s = Hamlyn::Test::_slurp("/proc/$$/stat");
    return (split ' ', ($s =~ /\) (.*)$/s)[0])[3];
}

done_testing;
