#!/usr/bin/perl
# 11-process.t: the master/worker process model against the real binary:
# worker count and CPU pinning, IPv4 and IPv6 listening, one SO_REUSEPORT
# socket per worker kept by the master, restart of a killed worker on the
# same sockets (and crash-loop backoff), USR1 log reopening, HUP reload
# (refused with every error for a broken file), USR2 binary upgrade and
# its roll-back, QUIT/-s quit graceful stop with exit 0, TERM fast stop,
# workers dying with their master, and runtime.user.  Under load:
# t/12-reload-load.t.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use IO::Socket::INET;
use IPC::Open2 qw(open2);
use JSON::PP ();
use IO::Select;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);

my $ncpu = `nproc`; chomp $ncpu; $ncpu ||= 1;

sub conf_for {
    my ($t, $runtime, @listen) = @_;
    return {
        runtime => $runtime,
        upstreams => { be => { servers => ['127.0.0.1:' . $t->port] } },
        listeners => [{ name => 'pub', listen => [@listen],
                        sites => ['s'], default_site => 's' }],
        sites => { s => { server_names => ['a.test'], mode => 'passthrough',
                          upstream => 'be' } },
    };
}

sub connects {
    my ($host, $port) = @_;
    my $s;
    if ($host =~ /:/) {
        require IO::Socket::IP;
        $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
                                 Proto => 'tcp', Timeout => 2);
    } else {
        $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                   Proto => 'tcp', Timeout => 2);
    }
    close $s if $s;
    return $s ? 1 : 0;
}

sub cpus_allowed {
    my ($pid) = @_;
    my $st = Hamlyn::Test::_slurp("/proc/$pid/status");
    return $st =~ /^Cpus_allowed_list:\s*(\S+)/m ? $1 : '?';
}

sub uid_of {
    my ($pid) = @_;
    my $st = Hamlyn::Test::_slurp("/proc/$pid/status");
    return $st =~ /^Uid:\s*(\d+)/m ? $1 : -1;
}

# Socket inodes of the listening sockets a process holds.
sub socket_inodes {
    my ($pid) = @_;
    my %i;
    for my $fd (glob "/proc/$pid/fd/*") {
        my $l = readlink($fd) // next;
        $i{$1} = 1 if $l =~ /^socket:\[(\d+)\]$/;
    }
    return \%i;
}

sub wait_for {
    my ($cond, $timeout) = @_;
    my $deadline = time + $timeout;
    while (time < $deadline) {
        return 1 if $cond->();
        sleep 0.05;
    }
    return $cond->() ? 1 : 0;
}

# ---------------------------------------------------------------------
# Two workers, pinned (auto), IPv4 and IPv6.
{
    my $t = Hamlyn::Test->new(name => '11-process-main');
    my ($p4, $p6) = ($t->port, $t->port);
    $t->write_conf(conf_for($t, { workers => 2, cpu_affinity => 'auto' },
                            "127.0.0.1:$p4", "[::1]:$p6"));
    $t->run or BAIL_OUT('hamlyn did not start');

    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    is(scalar @w, 2, 'runtime.workers 2: two workers');
    my %cpus = map { cpus_allowed($_) => 1 } @w;
    my %want = map { ($_ % $ncpu) => 1 } 0 .. 1;
    is_deeply(\%cpus, \%want, "cpu_affinity auto: workers pinned to CPUs "
              . join(',', sort keys %want));
    ok(connects('127.0.0.1', $p4), 'IPv4 listener accepts');
    ok(connects('::1', $p6), 'IPv6 listener accepts');
    like($t->error_log, qr/\[info\] $m: hamlyn \S+ started, 2 workers, listening on 127\.0\.0\.1:$p4, \[::1\]:$p6/,
         'start line names workers and addresses');

    # One SO_REUSEPORT socket per (address, worker): the master holds all
    # four, each worker exactly the two of its slot.
    my $ms = socket_inodes($m);
    my @ws = map { my $x = socket_inodes($_); [grep { $ms->{$_} } keys %$x] } @w;
    is(scalar(keys %$ms), 4, 'the master holds 2 addresses x 2 workers listening sockets');
    is(scalar @{ $ws[0] }, 2, 'worker 0 holds two of them (one per address)');
    is(scalar @{ $ws[1] }, 2, 'worker 1 holds the two others');
    my %both = map { $_ => 1 } @{ $ws[0] }, @{ $ws[1] };
    is(scalar(keys %both), 4, 'the workers share no listening socket');

    # kill -9 a worker: restarted on the same slot and sockets.
    my ($victim, $other) = @w;
    my $victim_cpu = cpus_allowed($victim);
    my $slot_socks = join ',', sort @{ $ws[0] };
    kill 'KILL', $victim;
    ok(wait_for(sub { my @n = $t->worker_pids; @n == 2 && !grep { $_ == $victim } @n }, 5),
       'a killed worker is replaced');
    my ($new) = grep { $_ != $other } $t->worker_pids;
    ok($new && $new != $victim, 'the new worker has a new pid');
    is($t->master_pid, $m, 'the master stays');
    is(join(',', sort keys %{ socket_inodes($m) }), join(',', sort keys %$ms),
       'the master still holds the very same sockets');
    my $ns = socket_inodes($new);
    is(join(',', sort grep { $ms->{$_} } keys %$ns), $slot_socks,
       'the new worker runs on the dead worker\'s sockets');
    is(cpus_allowed($new), $victim_cpu, 'the new worker is pinned like its predecessor');
    ok(connects('127.0.0.1', $p4), 'IPv4 listener still accepts after the restart');
    ok(connects('::1', $p6), 'IPv6 listener still accepts after the restart');
    ok($t->wait_error_log(qr/\[error\] $m: worker $victim \(slot \d\) was killed by signal 9 .*; restarting in/),
       'the death is logged at error level with the signal');

    # Crash-loop backoff: kill each replacement right after its start.
    my $last = $new;
    for my $round (1 .. 3) {
        kill 'KILL', $last;
        my $prev = $last;
        ok(wait_for(sub { my @n = $t->worker_pids; @n == 2 && !grep { $_ == $prev } @n }, 5),
           "replacement $round started");
        ($last) = grep { $_ != $other } $t->worker_pids;
    }
    like($t->error_log, qr/restarting in 0\.1s.*restarting in 0\.2s/s,
         'workers dying young are restarted with a doubling delay');
    is(scalar($t->worker_pids), 2, 'two workers after the crash loop');

    # USR1 (-s reopen): move the logs away, reopen, new files appear.
    my $el = $t->error_log_path;
    rename $el, "$el.1" or die;
    my ($rc, $out) = $t->hamlyn('-s', 'reopen', '-c', $t->conf_path);
    is($rc, 0, '-s reopen exits 0') or diag($out);
    ok(wait_for(sub { -s $el }, 5), 'reopen: a new error log file is written');
    like(Hamlyn::Test::_slurp($el), qr/log files reopened/, 'reopen is logged in the new file');
    unlike(Hamlyn::Test::_slurp("$el.1"), qr/log files reopened/, 'not in the moved file');
    my $al = $t->access_log_path;
    ok(-e $al, 'the access log exists');
    rename $al, "$al.1" or die;
    $t->signal('USR1');
    ok(wait_for(sub { -e $al }, 5), 'reopen (USR1): a new access log file is created');

    # HUP with a broken file: every error logged, nothing changes.
    my @gen1 = sort { $a <=> $b } $t->worker_pids;
    my $good = Hamlyn::Test::_slurp($t->conf_path);
    my $broken = conf_for($t, { workers => 2, cpu_affinity => 'auto', bogus => 1 },
                          "127.0.0.1:$p4", "[::1]:$p6");
    $broken->{sites}{s}{upstream} = 'nope';
    $t->write_conf($broken);
    ($rc, $out) = $t->hamlyn('-s', 'reload', '-c', $t->conf_path);
    is($rc, 1, '-s reload with a broken file exits 1 (as nginx), the reload did not happen');
    like($out, qr/sites\.s\.upstream.*will keep its configuration/s, '-s reload prints the errors');
    ok($t->wait_error_log(qr/reload of .* failed \(2 errors\); keeping the running configuration/),
       'HUP with a broken file: the reload is refused');
    like($t->error_log, qr/\[error\] $m: reload: .*runtime\.bogus/, 'HUP: error with its JSON path (runtime.bogus)');
    like($t->error_log, qr/\[error\] $m: reload: .*sites\.s\.upstream/, 'HUP: error with its JSON path (sites.s.upstream)');
    is_deeply([sort { $a <=> $b } $t->worker_pids], \@gen1, 'HUP with a broken file: the same workers keep serving');
    ok(connects('127.0.0.1', $p4), 'still accepting after a refused reload');

    # HUP with a valid file: 3 workers, one more address; the sockets of
    # the addresses that stay are kept, the old workers drain and exit.
    my $p4b = $t->port;
    my $c2 = conf_for($t, { workers => 3, cpu_affinity => 'auto' },
                      "127.0.0.1:$p4", "[::1]:$p6", "127.0.0.1:$p4b");
    $t->write_conf($c2);
    my $before_socks = socket_inodes($m);
    $t->signal('HUP');
    ok($t->wait_error_log(qr/configuration reloaded: 3 workers, listening on 127\.0\.0\.1:$p4, \[::1\]:$p6, 127\.0\.0\.1:$p4b; 2 old workers draining/),
       'HUP: "configuration reloaded" with the new workers and addresses');
    ok(wait_for(sub { my @n = $t->worker_pids; @n == 3 && !grep { my $x = $_; grep { $_ == $x } @gen1 } @n }, 10),
       'HUP: three new workers, the old ones gone');
    ok($t->wait_error_log(qr/old worker $gen1[0] exited with status 0/), 'HUP: an old worker drained and exited 0');
    is($t->master_pid, $m, 'HUP: same master');
    my $after_socks = socket_inodes($m);
    is(scalar(grep { $after_socks->{$_} } keys %$before_socks), 4,
       'HUP: the 4 sockets of the unchanged addresses are kept (2 workers x 2)');
    is(scalar(keys %$after_socks), 9, 'HUP: 3 addresses x 3 workers sockets now');
    ok(connects('127.0.0.1', $p4b), 'HUP: the new address accepts');
    ok(connects('127.0.0.1', $p4) && connects('::1', $p6), 'HUP: the old addresses still accept');

    # Back to the first file (2 workers, 2 addresses): the third port closes.
    $t->write_conf($good);
    $t->signal('HUP');
    ok(wait_for(sub { scalar($t->worker_pids) == 2 }, 10), 'HUP again: two workers');
    ok(wait_for(sub { !connects('127.0.0.1', $p4b) }, 10), 'HUP again: the removed address is closed');
    ok(connects('127.0.0.1', $p4), 'HUP again: IPv4 still accepts');

    # QUIT: graceful stop, exit 0, pid file removed, workers gone.
    my @before = $t->worker_pids;
    ok($t->signal('QUIT'), 'QUIT sent');
    is($t->wait_exit(20), 0, 'QUIT: the master exits 0');
    ok(!-e $t->dir . '/hamlyn.pid', 'QUIT: the pid file is removed');
    ok(wait_for(sub { !grep { kill 0, $_ } @before }, 5), 'QUIT: the workers are gone');
    ok(!connects('127.0.0.1', $p4), 'QUIT: the port is closed');
    like($t->error_log, qr/graceful shutdown/, 'QUIT: graceful shutdown logged');
    like($t->error_log, qr/worker \d+ \(slot \d\) exited with status 0/, 'QUIT: workers exit 0');
}

# ---------------------------------------------------------------------
# cpu_affinity as a list; -s quit; workers as "auto".
{
    my $t = Hamlyn::Test->new(name => '11-process-list');
    my $p = $t->port;
    my $cpu = $ncpu - 1;
    $t->write_conf(conf_for($t, { workers => 'auto', cpu_affinity => [$cpu] },
                            "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    my @w = $t->worker_pids;
    is(scalar @w, $ncpu, 'workers "auto": one per online CPU');
    is_deeply([map { cpus_allowed($_) } @w], [($cpu) x @w],
              "cpu_affinity [$cpu]: every worker on CPU $cpu");
    my ($rc, $out) = $t->hamlyn('-s', 'quit', '-c', $t->conf_path);
    is($rc, 0, '-s quit exits 0') or diag($out);
    is($t->wait_exit(20), 0, '-s quit: the master exits 0');
    ok(!-e $t->dir . '/hamlyn.pid', '-s quit: the pid file is removed');
    ok(wait_for(sub { !grep { kill 0, $_ } @w }, 5), '-s quit: the workers are gone');
}

# ---------------------------------------------------------------------
# TERM: fast stop.  cpu_affinity off: workers keep the master's CPUs.
{
    my $t = Hamlyn::Test->new(name => '11-process-term');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 2, cpu_affinity => 'off' },
                            "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    is_deeply([map { cpus_allowed($_) } @w], [(cpus_allowed($m)) x 2],
              'cpu_affinity off: workers keep the master\'s CPU set');
    my ($rc, $out) = $t->hamlyn('-s', 'stop', '-c', $t->conf_path);
    is($rc, 0, '-s stop exits 0');
    is($t->wait_exit(10), 0, 'TERM: the master exits 0');
    ok(wait_for(sub { !grep { kill 0, $_ } @w }, 5), 'TERM: the workers are gone');
    ok(!-e $t->dir . '/hamlyn.pid', 'TERM: the pid file is removed');
    like($t->error_log, qr/fast shutdown/, 'TERM: fast shutdown logged');
}

# ---------------------------------------------------------------------
# Workers die with their master (kill -9 of the master).
{
    my $t = Hamlyn::Test->new(name => '11-process-orphan');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 2 }, "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    kill 'KILL', $m;
    ok(wait_for(sub { !grep { kill(0, $_) && Hamlyn::Test::_is_ours($_) } @w }, 5),
       'workers exit when the master is killed');
    $t->wait_exit(5);
}

# ---------------------------------------------------------------------
# runtime.user: workers switch to it when the master runs as root.
SKIP: {
    skip 'runtime.user needs a root master', 4 if $> != 0;
    my ($nuid) = (getpwnam('nobody'))[2];
    skip 'no user "nobody"', 4 unless defined $nuid;
    my $t = Hamlyn::Test->new(name => '11-process-user');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 1, user => 'nobody' }, "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    my $m = $t->master_pid;
    my @w = $t->worker_pids;
    is(uid_of($m), 0, 'the master stays root');
    is(uid_of($w[0]), $nuid, 'the worker runs as "nobody"');
    ok(connects('127.0.0.1', $p), 'and the listener accepts');
    unlike($t->error_log, qr/workers run as root/, 'no root warning');
    $t->stop;
}

# The root warning without runtime.user.
SKIP: {
    skip 'the root warning needs a root master', 1 if $> != 0;
    my $t = Hamlyn::Test->new(name => '11-process-root');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 1 }, "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    like($t->error_log, qr/\[warn\] \d+: workers run as root: runtime\.user is not set/,
         'root without runtime.user: warning logged');
    $t->stop;
}

# A port that is taken: start fails with exit 1 and the reason.
{
    my $t = Hamlyn::Test->new(name => '11-process-busy');
    my $p = $t->port;
    my $hold = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                                     Listen => 1, Proto => 'tcp') or die;
    $t->write_conf(conf_for($t, { workers => 1 }, "127.0.0.1:$p"));
    my ($rc, $out) = $t->hamlyn('-c', $t->conf_path);
    is($rc, 1, 'a port in use: exit 1');
    like($t->error_log, qr/listeners\[0\]\.listen\[0\]: cannot listen on 127\.0\.0\.1:$p: bind\(\) failed: Address already in use/,
         'a port in use: the listener and the reason are logged');
    close $hold;
}

# shutdown_timeout_s 0 and nothing in flight: a clean stop, without a
# "shutdown timeout reached; closing 0 connections" warning.
{
    my $t = Hamlyn::Test->new(name => '11-process-quit0');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 2, shutdown_timeout_s => 0 }, "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    $t->signal('QUIT');
    is($t->wait_exit(10), 0, 'shutdown_timeout_s 0: QUIT exits 0');
    unlike($t->error_log, qr/shutdown timeout \(0s\) reached; closing 0 connections/,
           '... with no warning about closing 0 connections');
    like($t->error_log, qr/all connections finished/, '... the workers finished cleanly');
}

# The open file limit: a master started with a soft limit of 1024 raises
# it for its workers towards what max_connections (default 10000) may
# use; when even the hard limit is too low (and it cannot raise that), it
# says so.
{
    my $t = Hamlyn::Test->new(name => '11-process-nofile');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 1 }, "127.0.0.1:$p"));
    my $bin = $ENV{HAMLYN_BIN} // './hamlyn';
    my $conf = $t->conf_path;
    is(system('sh', '-c', "ulimit -Sn 1024 && exec $bin -d -c '$conf'"), 0,
       'started (-d) with a soft open file limit of 1024');
    my @w = $t->worker_pids;
    my $lim = Hamlyn::Test::_slurp("/proc/$w[0]/limits");
    my ($soft, $hard) = $lim =~ /^Max open files\s+(\d+)\s+(\d+)/m;
    ok(defined $soft && $soft > 1024 && ($soft >= 61024 || $soft == $hard),
       "the worker's soft limit went up (" . ($soft // '?') . ", hard " . ($hard // '?') . ')');
    if (defined $soft && $soft < 11024) {
        like($t->error_log, qr/\[warn\] \d+: runtime\.max_connections 10000 exceeds the open file limit of $soft/,
             '... too low for max_connections: logged');
    } else {
        unlike($t->error_log, qr/exceeds the open file limit/, '... enough: no warning');
    }
    $t->hamlyn('-s', 'stop', '-c', $conf);
    ok(wait_for(sub { !$t->master_pid }, 10), 'stopped');
}

# Another hamlyn (another configuration and pid file) on the same port:
# SO_REUSEPORT would let it bind and silently take a share of the first
# one's connections; it is refused with "Address already in use", like a
# port held by any other process.  The admin port too.
{
    my $t1 = Hamlyn::Test->new(name => '11-process-taken');
    my ($p, $pa, $q) = ($t1->port, $t1->port, $t1->port);
    $t1->write_conf({ %{ conf_for($t1, { workers => 2 }, "127.0.0.1:$p") },
                      admin => { listen => "127.0.0.1:$pa" } });
    $t1->run or BAIL_OUT('hamlyn did not start');
    my $t2 = Hamlyn::Test->new(name => '11-process-taken2');
    $t2->write_conf(conf_for($t2, { workers => 1 }, "127.0.0.1:$p"));
    my ($rc, $out) = $t2->hamlyn('-c', $t2->conf_path, '-d');
    $t2->hamlyn('-s', 'stop', '-c', $t2->conf_path) if $rc == 0;
    is($rc, 1, 'another hamlyn on a port in use: exit 1');
    like($t2->error_log, qr/listeners\[0\]\.listen\[0\]: cannot listen on 127\.0\.0\.1:$p: bind\(\) failed: Address already in use/,
         '... the listener and the reason are logged') or diag($t2->error_log);
    $t2->write_conf({ %{ conf_for($t2, { workers => 1 }, "127.0.0.1:$q") },
                      admin => { listen => "127.0.0.1:$pa" } });
    ($rc, $out) = $t2->hamlyn('-c', $t2->conf_path, '-d');
    $t2->hamlyn('-s', 'stop', '-c', $t2->conf_path) if $rc == 0;
    is($rc, 1, 'another hamlyn on an admin port in use: exit 1');
    like($t2->error_log, qr/admin\.listen: cannot listen on 127\.0\.0\.1:$pa: bind\(\) failed: Address already in use/,
         '... logged');
    ok(connects('127.0.0.1', $p), 'the first hamlyn still accepts');
    is($t1->stop, 0, 'the first hamlyn stops normally');
}

# A second master for the same config (same pid file) is refused: exit 1,
# the reason names the running master and the pid file, which still names
# the first master; a stale pid file (dead pid) is replaced, with a log line.
{
    my $t = Hamlyn::Test->new(name => '11-process-second');
    my $p = $t->port;
    $t->write_conf(conf_for($t, { workers => 1 }, "127.0.0.1:$p"));
    $t->run or BAIL_OUT('hamlyn did not start');
    my $m = $t->master_pid;
    my $pf = $t->dir . '/hamlyn.pid';
    my ($rc, $out) = $t->hamlyn('-c', $t->conf_path);
    is($rc, 1, 'second instance with the same pid file: exit 1');
    like($out, qr/another hamlyn master \(pid $m\) is running with pid file \Q$pf\E/,
         'second instance: the reason names the running master and the pid file')
        or diag($out);
    like(Hamlyn::Test::_slurp($pf), qr/^$m\b/, 'the pid file still names the first master');
    ok(kill(0, $m), 'the first master still runs');
    ok(connects('127.0.0.1', $p), 'and still accepts');
    is($t->stop, 0, 'the first master stops normally');

    # stale: a pid that no longer exists
    my $dead = fork // die;
    if ($dead == 0) { POSIX::_exit(0) }
    waitpid($dead, 0);
    open my $fh, '>', $pf or die;
    print $fh "$dead\n";
    close $fh;
    ($rc, $out) = $t->hamlyn('-c', $t->conf_path, '-d');
    is($rc, 0, 'stale pid file: hamlyn starts (daemon)') or diag($out);
    my $nm = wait_for(sub { my $x = Hamlyn::Test::_slurp($pf); $x =~ /^(\d+)/ && $1 != $dead }, 5);
    ok($nm, 'stale pid file: replaced by the new master\'s pid');
    like($t->error_log, qr/\Q$pf\E names pid $dead, which is not a running hamlyn; replacing/,
         'stale pid file: logged');
    $t->stop;
}

# ---------------------------------------------------------------------
# QUIT with a connection in flight: it keeps working until it ends, then
# the master exits 0; with a short shutdown_timeout_s it is closed at the
# deadline.  (Real TLS client through the passthrough relay to a real
# tls-echo backend.)
sub read_line {
    my ($fh, $timeout) = @_;
    my $buf = '';
    my $sel = IO::Select->new($fh);
    my $deadline = time + $timeout;
    while ($buf !~ /\n/) {
        my $left = $deadline - time;
        return undef if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($fh, my $b, 1);
        return length $buf ? $buf : undef unless $n;
        $buf .= $b;
    }
    return $buf;
}

sub eof_within {
    my ($fh, $timeout) = @_;
    my $sel = IO::Select->new($fh);
    my $deadline = time + $timeout;
    while (time < $deadline) {
        next unless $sel->can_read($deadline - time);
        my $n = sysread($fh, my $b, 4096);
        return 1 if !$n;
    }
    return 0;
}

# ---------------------------------------------------------------------
# USR2 binary upgrade: the new master adopts the very same sockets, the
# old one drains and exits 0; a new binary that cannot start is rolled
# back (pid file restored, old master keeps serving).
sub pid_in {
    my ($f) = @_;
    my $s = Hamlyn::Test::_slurp($f);
    return $s =~ /(\d+)/ ? $1 : 0;
}

sub reaped {
    my ($pid) = @_;
    my $r = waitpid($pid, WNOHANG);
    return $r == $pid ? $? : undef;
}

{
    my $t = Hamlyn::Test->new(name => '11-process-upgrade');
    my ($p4, $p6) = ($t->port, $t->port);
    my $c = conf_for($t, { workers => 2 }, "127.0.0.1:$p4", "[::1]:$p6");
    $t->write_conf($c);
    $t->run or BAIL_OUT('hamlyn did not start');
    my $pf = $t->dir . '/hamlyn.pid';
    my $m = $t->master_pid;
    my @old_workers = $t->worker_pids;
    my $socks = join ',', sort keys %{ socket_inodes($m) };

    # A new binary that fails (broken configuration): roll-back.
    my $broken = conf_for($t, { workers => 2 }, "127.0.0.1:$p4", "[::1]:$p6");
    $broken->{sites}{s}{upstream} = 'nope';
    $t->write_conf($broken);
    my ($rc, $out) = $t->hamlyn('-s', 'upgrade', '-c', $t->conf_path);
    is($rc, 0, '-s upgrade exits 0');
    ok($t->wait_error_log(qr/\[error\] $m: binary upgrade failed: new master \d+ exited with status 1 before it was ready; the old binary keeps serving/, 10),
       'failed upgrade: rolled back, with the reason');
    is(pid_in($pf), $m, 'failed upgrade: the pid file names the old master again');
    ok(!-e "$pf.oldbin", 'failed upgrade: no pid file .oldbin left');
    is_deeply([sort { $a <=> $b } $t->worker_pids], [sort { $a <=> $b } @old_workers],
              'failed upgrade: the old workers keep serving');
    ok(connects('127.0.0.1', $p4), 'failed upgrade: still accepting');

    # A good one.
    $t->write_conf($c);
    $t->signal('USR2');
    ok(wait_for(sub { my $n = pid_in($pf); $n && $n != $m }, 15), 'upgrade: the pid file names a new master');
    my $n = pid_in($pf);
    my $st;
    ok(wait_for(sub { defined($st = reaped($m)) }, 15), 'upgrade: the old master exits');
    is($st, 0, 'upgrade: the old master exits 0');
    ok(!-e "$pf.oldbin", 'upgrade: pid file .oldbin removed at the end');
    like($t->error_log, qr/\[info\] $m: binary upgrade: new master $n is serving; draining the old workers/,
         'upgrade: the old master logs the hand-over');
    like($t->error_log, qr/\[info\] $n: hamlyn \S+ started, 2 workers, .* \(binary upgrade\)/,
         'upgrade: the new master logs its start');
    is(join(',', sort keys %{ socket_inodes($n) }), $socks,
       'upgrade: the new master holds the very same listening sockets');
    my @nw = Hamlyn::Test::_children($n);
    is(scalar @nw, 2, 'upgrade: the new master runs 2 workers');
    ok(!grep({ kill 0, $_ } @old_workers), 'upgrade: the old workers are gone');
    ok(connects('127.0.0.1', $p4) && connects('::1', $p6), 'upgrade: IPv4 and IPv6 still accept');

    # The new master answers the CLI through the pid file.
    ($rc, $out) = $t->hamlyn('-s', 'quit', '-c', $t->conf_path);
    is($rc, 0, 'upgrade: -s quit reaches the new master');
    ok(wait_for(sub { !kill(0, $n) }, 15), 'upgrade: the new master stops');
    ok(!-e $pf, 'upgrade: its pid file is removed');
}


$SIG{PIPE} = 'IGNORE';
for my $case ('finish', 'deadline', 'reload', 'upgrade') {
    my $t = Hamlyn::Test->new(name => "11-process-drain-$case");
    my $certs = $t->certs;
    my $be = $t->backend(mode => 'tls-echo') or BAIL_OUT('no backend');
    my $p = $t->port;
    $t->write_conf({
        runtime => { workers => 1,
                     shutdown_timeout_s => $case eq 'finish' ? 30 : 1 },
        upstreams => { be => { servers => ["127.0.0.1:$be->{port}"] } },
        listeners => [{ name => 'pub', listen => ["127.0.0.1:$p"], sites => ['s'] }],
        sites => { s => { server_names => ['backend.test'], mode => 'passthrough',
                          upstream => 'be' } },
    });
    $t->run or BAIL_OUT('hamlyn did not start');
    my $cpid = open2(my $out, my $in, 'sh', '-c',
                     "exec openssl s_client -quiet -connect 127.0.0.1:$p "
                     . "-servername backend.test -CAfile $certs/ca.pem 2>/dev/null");
    $in->autoflush(1);
    like(read_line($out, 10) // '', qr/^backend=\S+ sni=backend\.test/,
         "$case: a passthrough connection reaches the backend");
    print $in "before\n";
    is(read_line($out, 5), "before\n", "$case: echo before QUIT");

    my $m = $t->master_pid;
    if ($case eq 'reload') {
        my ($old) = $t->worker_pids;
        $t->signal('HUP');
        ok($t->wait_error_log(qr/configuration reloaded/), 'reload: reloaded');
        ok(wait_for(sub { grep { $_ != $old } $t->worker_pids }, 5), 'reload: a new worker runs');
        print $in "during\n";
        is(read_line($out, 5), "during\n", 'reload: the connection in flight still works');
        ok(kill(0, $old), 'reload: the old worker waits for its connection');
        my $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'backend.test',
                               ca => "$certs/ca.pem", send => "new\n", shut_wr => 1,
                               timeout => 10);
        like($r->{first_line} // '', qr/^backend=/, 'reload: a new connection is served');
        kill 'TERM', $cpid;
        waitpid($cpid, 0);
        ok(wait_for(sub { !kill(0, $old) }, 10), 'reload: the old worker exits once its connection ended');
        ok($t->wait_error_log(qr/old worker $old exited with status 0/), 'reload: logged');
        is($t->master_pid, $m, 'reload: same master');
        $t->stop;
        next;
    }
    if ($case eq 'upgrade') {
        my $pf = $t->dir . '/hamlyn.pid';
        $t->signal('USR2');
        ok(wait_for(sub { my $n = pid_in($pf); $n && $n != $m }, 15),
           'upgrade: a new master took over the pid file');
        my $n = pid_in($pf);
        print $in "during\n";
        is(read_line($out, 5), "during\n", 'upgrade: the connection in flight still works');
        ok(kill(0, $m), 'upgrade: the old master waits for its draining worker');
        my $r = $t->tls_client(connect => "127.0.0.1:$p", servername => 'backend.test',
                               ca => "$certs/ca.pem", send => "new\n", shut_wr => 1,
                               timeout => 10);
        like($r->{first_line} // '', qr/^backend=/, 'upgrade: a new connection is served');
        kill 'TERM', $cpid;
        waitpid($cpid, 0);
        my $st;
        ok(wait_for(sub { defined($st = reaped($m)) }, 15),
           'upgrade: the old master exits once its connection ended');
        is($st, 0, 'upgrade: ... with status 0');
        kill 'QUIT', $n;
        ok(wait_for(sub { !kill(0, $n) }, 15), 'upgrade: the new master stops on QUIT');
        next;
    }
    $t->signal('QUIT');
    if ($case eq 'finish') {
        sleep 1;
        ok(kill(0, $m), 'finish: the master waits for the connection in flight');
        ok(!connects('127.0.0.1', $p),
           'finish: new clients are refused while it drains (the listening sockets are closed)');
        print $in "after\n";
        is(read_line($out, 5), "after\n", 'finish: the connection still works after QUIT');
        kill 'TERM', $cpid;
        waitpid($cpid, 0);
        is($t->wait_exit(10), 0, 'finish: the master exits 0 once the connection ended');
        like($t->error_log, qr/all connections finished/, 'finish: the worker drained');
    } else {
        ok(eof_within($out, 8), 'deadline: the connection is closed at shutdown_timeout_s');
        is($t->wait_exit(10), 0, 'deadline: the master exits 0');
        like($t->error_log, qr/shutdown timeout \(1s\) reached; closing 1 connections/,
             'deadline: the forced close is logged');
        kill 'TERM', $cpid;
        waitpid($cpid, 0);
    }
    ok(!-e $t->dir . '/hamlyn.pid', "$case: the pid file is removed");
}

# A configuration reached through a symbolic link (/etc/hamlyn/hamlyn.json
# -> a checkout): its relative paths are relative to the link's folder, as
# the loader sees it, for -s and for the new master of an upgrade too
# (they looked next to the link's target: -s stop found no pid file, and
# the upgraded master moved the pid file and logs there).
{
    my $t = Hamlyn::Test->new(name => '11-process-symlink');
    my $p = $t->port;
    my $d = $t->dir;
    mkdir "$d/real" or die;
    mkdir "$d/link" or die;
    my $c = conf_for($t, { workers => 1, pid_file => 'h.pid', error_log => { path => 'e.log' } },
                     "127.0.0.1:$p");
    open my $fh, '>', "$d/real/h.json" or die;
    print $fh JSON::PP->new->encode($c);
    close $fh;
    symlink('../real/h.json', "$d/link/h.json") or die "symlink: $!";
    my ($rc, $out) = $t->hamlyn('-d', '-c', "$d/link/h.json");
    is($rc, 0, 'symlinked configuration: started') or diag($out);
    my $m = pid_in("$d/link/h.pid");
    ok($m && kill(0, $m), 'the pid file is next to the link');
    ($rc, $out) = $t->hamlyn('-s', 'upgrade', '-c', "$d/link/h.json");
    is($rc, 0, '-s upgrade through the link') or diag($out);
    ok(wait_for(sub { my $n = pid_in("$d/link/h.pid"); $n && $n != $m }, 15),
       'upgrade: the new master writes its pid next to the link too');
    ok(!-e "$d/real/h.pid", '... not next to the target');
    my $n = pid_in("$d/link/h.pid");
    ok(wait_for(sub { !kill(0, $m) }, 15), 'upgrade: the old master is gone');
    ($rc, $out) = $t->hamlyn('-s', 'stop', '-c', "$d/link/h.json");
    is($rc, 0, '-s stop through the link finds the master') or diag($out);
    ok(wait_for(sub { !kill(0, $n) }, 10), '... which stops');
    kill 'TERM', $n if kill(0, $n);
}

# ---- error_log.format "json" --------------------------------------------
{
    my $t = Hamlyn::Test->new(name => '11-process-jsonlog');
    my $p = $t->port;
    my $d = $t->dir;
    my $bad = conf_for($t, { workers => 1, error_log => { path => 'e.log', format => 'xml' } },
                       "127.0.0.1:$p");
    $t->write_conf($bad);
    my ($rc, $out) = $t->hamlyn('-t', '-c', $t->conf_path);
    is($rc, 1, 'error_log.format "xml": -t exits 1');
    like($out, qr/runtime\.error_log\.format: .*"text".*"json"/, '... naming the key and the choices');

    my $c = conf_for($t, { workers => 1, pid_file => 'h.pid',
                           error_log => { path => 'e.log', level => 'info', format => 'json' } },
                     "127.0.0.1:$p");
    $t->write_conf($c);
    ($rc, $out) = $t->hamlyn('-d', '-c', $t->conf_path);
    is($rc, 0, 'json error log: started') or diag($out);
    my $m = pid_in("$d/h.pid");
    # A client that sends no ClientHello: a connection line (info).
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p, Timeout => 2);
    print $s "GET / HTTP/1.1\r\n\r\n" if $s;
    sleep 1;
    close $s if $s;
    ($rc, $out) = $t->hamlyn('-s', 'quit', '-c', $t->conf_path);
    ok(wait_for(sub { !kill(0, $m) }, 10), 'json error log: the master quit');
    my @lines = split /\n/, Hamlyn::Test::_slurp("$d/e.log");
    ok(@lines >= 4, 'json error log: lines written (' . scalar(@lines) . ')');
    my @obj = grep { defined } map { my $l = $_; eval { JSON::PP::decode_json($l) } } @lines;
    is(scalar @obj, scalar @lines, 'json error log: every line is one JSON object');
    is(scalar(grep { !(defined $_->{time} && $_->{time} =~ /^\d{4}-\d\d-\d\dT[\d:.]+Z$/
                       && $_->{level} =~ /^(debug|info|warn|error)$/
                       && $_->{pid} =~ /^\d+$/ && defined $_->{msg}) } @obj), 0,
       'json error log: each has time, level, pid and msg');
    ok((grep { $_->{pid} == $m && $_->{msg} =~ /^hamlyn \S+ started, 1 worker, listening on 127\.0\.0\.1:$p$/ } @obj),
       'json error log: the start line, from the master');
    my ($conn) = grep { defined $_->{conn} } @obj;
    ok($conn, 'json error log: a connection line');
    is($conn && $conn->{peer} =~ /^127\.0\.0\.1:\d+$/ ? 1 : 0, 1, '... with the client address as peer');
    ok($conn && $conn->{conn} =~ /^\d+$/ && defined $conn->{action}, '... its conn id and what it was doing');
    unlike(join("\n", @lines), qr/\[info\]/, 'json error log: no text lines');
}

done_testing;
