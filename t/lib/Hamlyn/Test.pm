package Hamlyn::Test;

# Hamlyn::Test: the integration-test harness (in the style of Test::Nginx).
#
# Where it sits: every t/*.t script creates one Hamlyn::Test object, writes a
# configuration with write_conf(), starts the real ./hamlyn with run(), drives
# it with real clients (curl, openssl s_client, t/lib/hm_client.py) against
# real backends (t/lib/hm_backend.py, started with backend()), then reads the
# logs.  Everything it starts is stopped by PID at the end (END/DESTROY); the
# temp dir t/tmp/<test>-<pid> is removed unless the test failed or
# HM_KEEP_TMP=1.  Core Perl modules only.
#
#   my $t = Hamlyn::Test->new;         # t/tmp/<test>-<pid>: $t->dir
#   my $p = $t->port;                  # free port on 127.0.0.1, never twice
#   my $certs = $t->certs;             # absolute dir of t/certs/mkcerts.sh output
#   $t->write_conf({...} | $json_text);          # $t->conf_path; defaults filled
#   $t->run(@args) or BAIL_OUT("hamlyn did not start");
#   $t->master_pid; $t->pid; $t->worker_pids;     # from the pid file and /proc
#   $t->signal('HUP'); $t->wait_exit($s); $t->stop;   # stop/wait_exit: exit code
#   $t->error_log (text), $t->error_log_json, $t->access_log (arrayref),
#   $t->wait_access_log($n, $s), $t->wait_error_log(qr//, $s), $t->diag_logs
#   my ($rc, $out) = $t->hamlyn(@args);           # synchronous run
#   Hamlyn::Test::has('jwt');                     # module listed by hamlyn -V
#   my $be = $t->backend(mode => 'tls-echo'|'sink'|'http'|'https', cert =>,
#       client_ca => 1, proxy_protocol => 1, send_bytes => N, name =>);
#       # {port, pid, name, log (HTTP request lines), stderr}; $t->stop_backend($be)
#   my ($code, $body, $hdr, $exit, $err) = $t->curl(@curl_args);
#   my $out = $t->s_client(port =>, servername =>, input =>, expect => qr//,
#       cert => 'client', args => [...]);
#   my $r = $t->tls_client(connect => "127.0.0.1:$p", servername =>,
#       send_bytes => N, shut_wr => 1, cert => 'client', no_verify => 1);
#       # hashref from t/lib/hm_client.py (ok, error, first_line, rest_sha256...)
#   Hamlyn::Test::pattern_sha256($n);  # sha256 of the first $n pattern bytes
#   my $h = $t->held_python($py, @args); my $json = $t->release_held($h);
#   my $h = $t->hold_relay(port =>, ca =>); ...; $t->release_relay($h);
#   my $out = $t->raw_tls($bytes, port =>, sni =>, idle =>, pause =>);
#
# Environment: HAMLYN_BIN (default ./hamlyn), HM_KEEP_TMP=1 (keep the dir).

use strict;
use warnings;

use Cwd qw(abs_path getcwd);
use Fcntl qw(:flock O_RDWR O_CREAT);
use File::Basename qw(basename dirname);
use File::Path qw(make_path remove_tree);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h _exit setsid);
use Scalar::Util qw(weaken);
use Test::More ();
use Time::HiRes qw(sleep time);

our $VERSION = '1.0';

my $TOP = abs_path(dirname(__FILE__) . '/../../..');    # checkout top dir
my $TMP = "$TOP/t/tmp";
my @OBJECTS;          # live harness objects, for END
my %PORTS_USED;       # ports handed out by this process
my %PORT_LOCKS;       # port => filehandle holding a cross-process lock
my %HAS_CACHE;

sub _bin { return $ENV{HAMLYN_BIN} // './hamlyn' }

sub _diag { Test::More::diag(@_) }

# new(%opt): create the temp dir t/tmp/<testname>-<pid>.  Options: name.
sub new {
    my ($class, %opt) = @_;
    my $name = $opt{name} // basename($0, '.t');
    $name =~ s/[^\w.-]/_/g;
    my $self = bless {
        name      => $name,
        dir       => "$TMP/$name-$$",
        backends  => [],
        nbackend  => 0,
        owner_pid => $$,
    }, $class;
    remove_tree($self->{dir}) if -d $self->{dir};
    make_path($self->{dir});
    push @OBJECTS, $self;
    weaken($OBJECTS[-1]);
    return $self;
}

sub dir       { $_[0]{dir} }
sub conf_path { "$_[0]{dir}/hamlyn.json" }
sub conf      { $_[0]{conf} }           # the hashref last written (if any)
sub top       { $TOP }

# ---------------------------------------------------------------- ports

# port(): a TCP port free on 127.0.0.1 (and ::1 where available), chosen at
# random below the kernel's ephemeral range so that outgoing connections do
# not take it, never handed out twice by this process, and locked across
# processes (flock on /tmp/hamlyn-test-ports/PORT, shared by every checkout
# on the machine) until this process exits.
my $PORT_DIR = ($ENV{TMPDIR} // '/tmp') . '/hamlyn-test-ports';
sub port {
    my ($self) = @_;
    make_path($PORT_DIR);
    chmod 01777, $PORT_DIR;
    my ($lo, $hi) = (20000, 32000);
    if (open my $fh, '<', '/proc/sys/net/ipv4/ip_local_port_range') {
        my ($elo) = split ' ', scalar <$fh>;
        $hi = $elo - 1 if $elo && $elo - 1 < $hi && $elo - 1 > $lo + 1000;
    }
    for (1 .. 500) {
        my $p = $lo + int(rand($hi - $lo));
        next if $PORTS_USED{$p};
        sysopen(my $lk, "$PORT_DIR/$p", O_RDWR | O_CREAT) or next;
        unless (flock($lk, LOCK_EX | LOCK_NB)) { close $lk; next }
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $p,
                                      Proto => 'tcp', Listen => 1, ReuseAddr => 0);
        unless ($s) { close $lk; next }
        close $s;
        if (eval { require IO::Socket::IP; 1 }) {
            my $s6 = IO::Socket::IP->new(LocalHost => '::1', LocalPort => $p,
                                         Proto => 'tcp', Listen => 1, V6Only => 1);
            if (!$s6 && $! != POSIX::EADDRNOTAVAIL() && $! != POSIX::EAFNOSUPPORT()) {
                close $lk; next;
            }
            close $s6 if $s6;
        }
        $PORTS_USED{$p} = 1;
        $PORT_LOCKS{$p} = $lk;
        return $p;
    }
    die "Hamlyn::Test: no free port found\n";
}

# ---------------------------------------------------------------- certs

# certs(): absolute path of the test certificates, generated once per
# checkout into t/tmp/certs under a lock (t/certs/mkcerts.sh, which
# regenerates them when the script changed).
my $CERTS_OK;
sub certs {
    my $dir = "$TMP/certs";
    return $dir if $CERTS_OK;
    make_path($TMP);
    open my $lk, '>', "$TMP/certs.lock" or die "certs.lock: $!";
    flock($lk, LOCK_EX) or die "flock: $!";
    my $out = `sh '$TOP/t/certs/mkcerts.sh' '$dir' 2>&1`;
    die "Hamlyn::Test: mkcerts.sh failed: $out\n" if $? != 0 || !-f "$dir/.done";
    close $lk;
    $CERTS_OK = 1;
    return $dir;
}

# ---------------------------------------------------------------- config

sub _jkv {
    my ($js, $k, $v) = @_;
    return $js->encode([$k]) =~ s/^\[|\]$//gr . ': ' . $js->encode([$v]) =~ s/^\[|\]$//gr;
}

sub _runtime_defaults {
    my ($self) = @_;
    my $d = $self->{dir};
    return (
        workers            => 1,
        cpu_affinity       => 'off',
        pid_file           => "$d/hamlyn.pid",
        error_log          => { path => "$d/error.log", level => 'info' },
        access_log         => { path => "$d/access.log" },
        shutdown_timeout_s => 5,
    );
}

# write_conf($hashref | $json_text): write $t->dir/hamlyn.json.  A hashref is
# encoded with the runtime defaults filled in where the caller set none
# (workers 1, cpu_affinity off, pid_file, error_log, access_log and
# shutdown_timeout_s in $t->dir); a runtime key set to undef is left out.  A string is written as given (so broken
# JSON and duplicate keys reach hamlyn untouched); when it is a valid JSON
# object, the missing runtime defaults are inserted textually right after its
# opening brace (or after "runtime": {), keeping every other byte and the
# line numbers.  Returns the path.
sub write_conf {
    my ($self, $conf) = @_;
    my %def = $self->_runtime_defaults;
    my $text;
    if (ref $conf) {
        my %c = %$conf;
        if (!defined $c{runtime} || ref $c{runtime} eq 'HASH') {
            my %rt = %{ $c{runtime} // {} };
            for my $k (keys %def) { $rt{$k} = $def{$k} unless exists $rt{$k} }
            # A key set to undef means "leave it out" (e.g. no pid_file).
            delete $rt{$_} for grep { !defined $rt{$_} } keys %rt;
            $c{runtime} = \%rt;
        }
        # A build without headers_sanitise refuses every header rule of
        # a terminating site, the default "forwarded": "replace" included
        # (man/hamlyn.8, MODULES): the header assertions skip there, so the
        # rules are left out and forwarding is off.
        if (ref $c{sites} eq 'HASH' && !has('headers_sanitise')) {
            my %s = %{ $c{sites} };
            for my $n (keys %s) {
                next unless ref $s{$n} eq 'HASH'
                    && ($s{$n}{mode} // '') eq 'terminate';
                $s{$n} = { %{ $s{$n} }, headers => { forwarded => 'off' } };
            }
            $c{sites} = \%s;
        }
        $self->{conf} = \%c;
        $text = JSON::PP->new->canonical->pretty->encode(\%c);
    } else {
        $text = $conf;
        my $dec = eval { JSON::PP->new->decode($conf) };
        if (ref $dec eq 'HASH') {
            my $js = JSON::PP->new->canonical;
            if (ref $dec->{runtime} eq 'HASH') {
                my @add = grep { !exists $dec->{runtime}{$_} } sort keys %def;
                if (@add) {
                    my $ins = join ', ', map { _jkv($js, $_, $def{$_}) } @add;
                    $ins .= ', ' if %{ $dec->{runtime} };
                    $text =~ s/("runtime"\s*:\s*\{)/$1$ins/;
                    $dec->{runtime}{$_} = $def{$_} for @add;
                }
            } elsif (!exists $dec->{runtime}) {
                my $rt = $js->encode({ %def });
                my $sep = %$dec ? ', ' : '';
                $text =~ s/^(\s*\{)/$1"runtime": $rt$sep/;
                $dec->{runtime} = { %def };
            }
            $self->{conf} = $dec;
        } else {
            $self->{conf} = undef;
        }
    }
    open my $fh, '>', $self->conf_path or die "write_conf: $!";
    print $fh $text;
    close $fh;
    return $self->conf_path;
}

# Ports of every listen address in the configuration (listeners[].listen,
# admin.listen).
sub _listen_ports {
    my ($self) = @_;
    my $c = $self->{conf};
    unless ($c) {
        open my $fh, '<', $self->conf_path or return ();
        local $/;
        $c = eval { JSON::PP->new->decode(scalar <$fh>) } or return ();
    }
    my @addrs;
    for my $l (@{ ref $c->{listeners} eq 'ARRAY' ? $c->{listeners} : [] }) {
        next unless ref $l eq 'HASH';
        my $a = $l->{listen};
        push @addrs, ref $a eq 'ARRAY' ? @$a : defined $a ? ($a) : ();
    }
    push @addrs, $c->{admin}{listen} if ref $c->{admin} eq 'HASH' && $c->{admin}{listen};
    my %p;
    for (@addrs) { $p{$1} = 1 if /(?:^|:)(\d+)$/ }
    return sort { $a <=> $b } keys %p;
}

sub _rt { my ($self, $k) = @_; my $c = $self->{conf}; return $c && ref $c->{runtime} eq 'HASH' ? $c->{runtime}{$k} : undef }

sub _path {
    my ($self, $p) = @_;
    return undef unless defined $p;
    return $p if $p =~ m{^/};
    return "$self->{dir}/$p";    # the conf file lives in $t->dir
}

sub _pid_file { my ($self) = @_; return $self->_path($self->_rt('pid_file')) }

# Ports in LISTEN state, from /proc/net/tcp{,6} (no connection is made, so
# readiness checks leave no trace in the access log).
sub _listening_ports {
    my %p;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my @f = split;
            next unless @f > 3 && $f[3] eq '0A';
            $p{ hex((split /:/, $f[1])[-1]) } = 1;
        }
    }
    return \%p;
}

# ---------------------------------------------------------------- processes

sub _spawn {
    my ($self, $argv, $out, $err, %o) = @_;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or _exit(126);
        open STDERR, '>>', $err or _exit(126);
        { no warnings q(exec); exec { $argv->[0] } @$argv; }
        print STDERR "exec $argv->[0]: $!\n";
        _exit(127);
    }
    return $pid;
}

# run(@args): start `hamlyn -c CONF @args` (stdout/stderr to $t->dir/
# stdout.log, stderr.log), then wait up to 10 s until every listen port is
# in LISTEN state, the pid file (when configured) exists and the configured
# number of workers runs.  Returns 1, or 0 with the logs in diag.
sub run {
    my ($self, @args) = @_;
    my $pf = $self->_pid_file;
    unlink $pf if $pf && -f $pf;
    $self->{exit_status} = undef;
    $self->{pid} = $self->_spawn([_bin(), '-c', $self->conf_path, @args],
                                 "$self->{dir}/stdout.log", "$self->{dir}/stderr.log");
    $self->{started} = 1;
    my $daemon = grep { $_ eq '-d' } @args;
    my @ports = $self->_listen_ports;
    my $w = $self->_rt('workers') // 1;
    $w = _nproc() if $w eq 'auto';
    my $deadline = time + 10;
    my $why = 'timeout';
    while (time < $deadline) {
        if (!$daemon && !$self->_alive_child) {
            $why = 'hamlyn exited (' . $self->_status_text . ')';
            last;
        }
        my $l = _listening_ports();
        my $ok = !grep { !$l->{$_} } @ports;
        $ok &&= -s $pf if $pf;
        $ok &&= ($self->master_pid && $self->worker_pids >= $w) if $ok;
        return 1 if $ok;
        sleep 0.05;
    }
    _diag("Hamlyn::Test: run failed: $why; waited for ports @ports"
          . ($pf ? ", pid file $pf" : '') . ", $w worker(s)");
    $self->diag_logs;
    return 0;
}

sub _nproc { my $n = `nproc 2>/dev/null`; chomp $n; return $n || 1 }

# True while the spawned process has not exited (reaps it when it has).
sub _alive_child {
    my ($self) = @_;
    return 0 unless $self->{pid};
    return 0 if defined $self->{exit_status};
    my $r = waitpid($self->{pid}, WNOHANG);
    if ($r == $self->{pid}) { $self->{exit_status} = $?; return 0 }
    return $r == 0 ? 1 : 0;
}

sub _status_text {
    my ($self) = @_;
    my $s = $self->{exit_status};
    return 'running' unless defined $s;
    return 'signal ' . ($s & 127) if $s & 127;
    return 'exit ' . ($s >> 8);
}

sub diag_logs {
    my ($self) = @_;
    for my $f (qw(stderr.log stdout.log error.log)) {
        my $p = "$self->{dir}/$f";
        next unless -s $p;
        my $txt = _slurp($p);
        $txt = substr($txt, -4000) if length $txt > 4000;
        _diag("--- $f ---\n$txt");
    }
}

# pid / master_pid: the master (the pid file's pid when present, else the
# process run() spawned).
sub master_pid {
    my ($self) = @_;
    my $pf = $self->_pid_file;
    if ($pf && -s $pf) {
        my $p = _slurp($pf);
        return $1 if $p =~ /(\d+)/ && _alive_pid($1);
    }
    return $self->{pid} if $self->{pid} && $self->_alive_child;
    return undef;
}
sub pid { $_[0]->master_pid }

# Children of PID (not zombies), from /proc/*/stat.
sub _children {
    my ($ppid) = @_;
    my @k;
    for my $st (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $st or next;
        my $l = <$fh> // next;
        my ($pid, $rest) = $l =~ /^(\d+) \(.*\) (.*)$/s or next;
        my ($state, $pp) = split ' ', $rest;
        push @k, $pid if $pp == $ppid && $state ne 'Z';
    }
    return sort { $a <=> $b } @k;
}

# worker_pids(): the master's live child processes (in list context; their
# count in scalar context).
sub worker_pids {
    my ($self) = @_;
    my $m = $self->master_pid or return wantarray ? () : 0;
    my @w = _children($m);
    return wantarray ? @w : scalar @w;
}

# signal(NAME): send signal NAME (QUIT, TERM, HUP, USR1, USR2 ...) to the master.
sub signal {
    my ($self, $sig) = @_;
    my $m = $self->master_pid or return 0;
    $sig =~ s/^SIG//;
    return kill($sig, $m);
}

# wait_exit($timeout_s = 10): wait until the master (the pid file's, else
# the process run() spawned) and the process run() spawned have both exited
# (after an upgrade they differ).  Returns the exit code of the process
# run() spawned (128+N for signal N; 0 when it was reaped earlier, e.g.
# after -d), or undef on timeout.
sub wait_exit {
    my ($self, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my $m = $self->master_pid;
    my $spawned = $self->{pid};
    while (1) {
        my $child_done = !$spawned || !$self->_alive_child;
        my $m_done = !$m || (($spawned && $m == $spawned) ? $child_done : !_alive_pid($m));
        if ($child_done && $m_done) {
            $self->{pid} = undef;
            my $s = $self->{exit_status};
            return 0 unless $spawned && defined $s;
            return ($s & 127) ? 128 + ($s & 127) : $s >> 8;
        }
        return undef if time > $deadline;
        sleep 0.05;
    }
}

# True while PID exists and is not a zombie.
sub _alive_pid {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $l = <$fh> // return 0;
    return $l !~ /^\d+ \(.*\) [ZX] /s;
}

# stop(): TERM the master (and the process run() spawned, if that is
# another one, as mid-upgrade), wait up to 5 s, then KILL; reap; also end
# any worker that outlived its master (by PID, with a diag).  Returns what
# wait_exit() returns.
sub stop {
    my ($self) = @_;
    my $m = $self->master_pid;
    my $sp = $self->{pid} && $self->_alive_child ? $self->{pid} : undef;
    return undef unless $m || $self->{pid};
    my @masters = grep { defined } $m, (($sp && (!$m || $sp != $m)) ? $sp : ());
    my @w = map { _children($_) } @masters;
    kill 'TERM', @masters if @masters;
    my $code = $self->wait_exit(5);
    unless (defined $code) {
        _diag("Hamlyn::Test: master(s) @masters ignored TERM for 5 s, sending KILL");
        kill 'KILL', grep { _alive_pid($_) } @masters;
        $code = $self->wait_exit(5);
    }
    my $deadline = time + 3;
    while (my @left = grep { _is_ours($_) } @w) {
        if (time > $deadline) {
            _diag("Hamlyn::Test: worker(s) @left outlived the master; KILL");
            kill 'KILL', @left;
            last;
        }
        sleep 0.05;
    }
    $self->{pid} = undef;
    return $code;
}

# A process that still exists and runs the hamlyn binary (guards PID reuse).
sub _is_ours {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $l = <$fh> // return 0;
    return 0 if $l =~ /^\d+ \(.*\) [ZX] /s;
    my $exe = readlink("/proc/$pid/exe") // '';
    my $bin = abs_path(_bin()) // _bin();
    return $exe =~ /\Q$bin\E/ || $exe =~ /hamlyn/;
}

# ---------------------------------------------------------------- logs

sub _slurp {
    my ($p) = @_;
    open my $fh, '<', $p or return '';
    local $/;
    my $s = <$fh>;
    return $s // '';
}

# Public helpers for tests: slurp(FILE) (text, '' when unreadable) and
# alive_pid(PID) (exists and is not a zombie).
sub slurp     { return _slurp(pop) }
sub alive_pid { return _alive_pid(pop) }

sub error_log_path {
    my ($self) = @_;
    my $e = $self->_rt('error_log');
    my $p = ref $e eq 'HASH' ? $e->{path} : undef;
    return "$self->{dir}/stderr.log" if !defined $p || $p eq 'stderr';
    return $self->_path($p);
}

sub access_log_path {
    my ($self) = @_;
    my $a = $self->_rt('access_log');
    my $p = ref $a eq 'HASH' ? $a->{path} : undef;
    return "$self->{dir}/stdout.log" if defined $p && $p eq 'stdout';
    return $self->_path($p // 'access.log');
}

# error_log(): the text of the error log.
sub error_log { return _slurp($_[0]->error_log_path) }

# error_log_json(): its lines decoded as JSON objects (non-JSON skipped).
sub error_log_json { return _json_lines($_[0]->error_log_path) }

# access_log(): arrayref of the access log's lines decoded from JSON
# (a non-JSON line is skipped with a diag).
sub access_log { return _json_lines($_[0]->access_log_path, 1) }

sub _json_lines {
    my ($p, $loud) = @_;
    my @r;
    open my $fh, '<', $p or return \@r;
    while (my $l = <$fh>) {
        next unless $l =~ /\S/;
        my $d = eval { JSON::PP->new->decode($l) };
        if (ref $d) { push @r, $d } elsif ($loud) { _diag("not JSON in $p: $l") }
    }
    return \@r;
}

# wait_access_log($n, $timeout_s = 5): wait until the access log has at
# least $n lines; returns the arrayref (possibly shorter on timeout).
sub wait_access_log {
    my ($self, $n, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    my $l;
    while (1) {
        $l = _json_lines($self->access_log_path);
        return $l if @$l >= $n || time > $deadline;
        sleep 0.05;
    }
}

# wait_error_log(qr/.../, $timeout_s = 5): wait until the error log matches;
# returns true if it did.
sub wait_error_log {
    my ($self, $re, $timeout) = @_;
    my $deadline = time + ($timeout // 5);
    while (1) {
        return 1 if $self->error_log =~ $re;
        return 0 if time > $deadline;
        sleep 0.05;
    }
}

# ---------------------------------------------------------------- commands

# _capture(\@argv, %o): run a command with optional stdin input and a
# timeout (default 30 s); returns (exit code, stdout+stderr, stderr-only
# when o{split}).  On timeout the command is killed and exit code is 124.
sub _capture {
    my ($argv, %o) = @_;
    my $timeout = $o{timeout} // 30;
    pipe(my $r, my $w) or die "pipe: $!";
    pipe(my $ir, my $iw) or die "pipe: $!";
    my ($er, $ew);
    pipe($er, $ew) or die "pipe: $!" if $o{split};
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $r; close $iw; close $er if $er;
        open STDIN, '<&', $ir or _exit(126);
        open STDOUT, '>&', $w or _exit(126);
        open STDERR, '>&', ($ew // $w) or _exit(126);
        { no warnings q(exec); exec { $argv->[0] } @$argv; }
        print STDERR "exec $argv->[0]: $!\n";
        _exit(127);
    }
    close $w; close $ir; close $ew if $ew;
    my $input = $o{input} // '';
    my $expect = $o{expect};
    my $hold = $o{hold_stdin};   # keep stdin open until expect/idle
    my ($out, $err) = ('', '');
    my $deadline = time + $timeout;
    my $sel = IO::Select->new($r, $er ? $er : ());
    my $wsel = IO::Select->new($iw);
    $iw->blocking(0);
    my $stdin_open = 1;
    my $last = time;
    my $timed_out = 0;
    my ($reaped, $status, $grace);
    while ($sel->count) {
        my $left = $deadline - time;
        if ($left <= 0) { $timed_out = 1; last }
        # A child that daemonized may leave our pipe open in a grandchild:
        # once the direct child has exited, read for 0.5 s more, then stop.
        if (!$reaped && waitpid($pid, WNOHANG) == $pid) {
            ($reaped, $status, $grace) = (1, $?, time + 0.5);
        }
        last if $reaped && time > $grace;
        if ($stdin_open && length $input == 0) {
            my $close = !$hold;
            $close ||= $expect && $out =~ $expect;
            $close ||= !$expect && $o{idle} && time - $last > $o{idle};
            if ($close) { close $iw; $stdin_open = 0 }
        }
        my ($rr, $ww) = IO::Select->select($sel, ($stdin_open && length $input) ? $wsel : undef,
                                           undef, $left < 0.05 ? $left : 0.05);
        for my $fh (@{ $rr // [] }) {
            my $n = sysread($fh, my $buf, 65536);
            if (!$n) { $sel->remove($fh); close $fh; next }
            $out .= $buf;
            $err .= $buf if $er && $fh == $er;
            $last = time;
        }
        if ($ww && @$ww) {
            my $n = syswrite($iw, $input);
            if (defined $n) { substr($input, 0, $n, '') }
            else { $input = '' }
        }
    }
    close $iw if $stdin_open;
    close $_ for $sel->handles;
    unless ($reaped) {
        kill 'KILL', $pid if $timed_out;
        waitpid($pid, 0);
        $status = $?;
    }
    my $code = $timed_out ? 124 : ($status & 127) ? 128 + ($status & 127) : $status >> 8;
    return ($code, $out, $err);
}

# hamlyn(@args): run the binary synchronously; returns (exit code,
# combined stdout+stderr).
sub hamlyn {
    my ($self, @args) = @_;
    my ($c, $o) = _capture([_bin(), @args], timeout => 30);
    return ($c, $o);
}

# has($module): true when `hamlyn -V` lists $module among its modules.
# Callable as Hamlyn::Test::has('sni_route') or $t->has('sni_route').
sub has {
    my $m = pop;
    unless (%HAS_CACHE) {
        my ($c, $o) = _capture([_bin(), '-V'], timeout => 10);
        for my $l (split /\n/, $o) {
            next unless $l =~ /modules?\s*:\s*(.*)/i;
            $HAS_CACHE{$_} = 1 for grep { length } split /[\s,]+/, $1;
        }
        $HAS_CACHE{''} = 0;
    }
    return $HAS_CACHE{$m} ? 1 : 0;
}

# s_client(%opt): run `openssl s_client` against 127.0.0.1:port.
#   port (required), host ('127.0.0.1'), servername (undef = -noservername),
#   args => [...] (more s_client options), input => bytes to send,
#   expect => qr// (keep stdin open until the output matches),
#   cert/key (client certificate; a bare name means $certs/NAME.pem/.key),
#   ca (default $certs/ca.pem; set ca => '' for none), timeout (10 s).
# Returns the combined output (scalar) or (output, exit code) (list).
sub s_client {
    my ($self, %o) = @_;
    my $certs = certs();
    my @a = ('openssl', 's_client', '-connect', ($o{host} // '127.0.0.1') . ":$o{port}");
    push @a, defined $o{servername} ? ('-servername', $o{servername}) : ('-noservername');
    my $ca = $o{ca} // "$certs/ca.pem";
    push @a, '-CAfile', $ca if length $ca;
    if (my $c = $o{cert}) {
        my $k = $o{key} // $c;
        $c = "$certs/$c.pem" unless $c =~ m{/};
        $k = "$certs/$k.key" unless $k =~ m{/};
        push @a, '-cert', $c, '-key', $k;
    }
    push @a, @{ $o{args} // [] };
    my ($code, $out) = _capture(\@a, input => $o{input}, expect => $o{expect},
                                hold_stdin => defined $o{expect} || $o{hold},
                                idle => $o{idle} // 0.5, timeout => $o{timeout} // 10);
    return wantarray ? ($out, $code) : $out;
}

# curl(@args): run curl -sS --max-time 10 with @args (pass '--max-time', N
# yourself to change it).  Returns (http_code, body, headers, exit, stderr)
# where headers is a hashref of lower-cased name => value (repeated headers
# joined with ", "), plus ':status' and ':raw' (the last response head).
sub curl {
    my ($self, @args) = @_;
    my $n = ++$self->{ncurl};
    my $hf = "$self->{dir}/curl-$n.headers";
    my $bf = "$self->{dir}/curl-$n.body";
    my @mt = (grep { $_ eq '--max-time' || $_ eq '-m' } @args) ? () : ('--max-time', 10);
    my ($c, $out, $err) = _capture(['curl', '-sS', @mt, '-D', $hf, '-o', $bf,
                                    '-w', '%{http_code}', @args],
                                   timeout => 60, split => 1);
    my $code = $out;
    $code =~ s/\Q$err\E//;
    $code = ($code =~ /(\d{3})\s*$/) ? $1 : '000';
    my $raw = _slurp($hf);
    my @blocks = grep { /\S/ } split /\r?\n\r?\n/, $raw;
    my %h = (':raw' => $blocks[-1] // '');
    my @lines = split /\r?\n/, ($blocks[-1] // '');
    my $st = shift @lines // '';
    $h{':status'} = $st =~ m{^HTTP/\S+\s+(\d+)} ? $1 : undef;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    my $body = _slurp($bf);
    unlink $hf, $bf unless $ENV{HM_KEEP_TMP};
    return ($code, $body, \%h, $c, $err);
}

# tls_client(%opt): run t/lib/hm_client.py (a TLS client for transfers and
# handshake facts; see that file); returns its JSON report as a hashref.
sub tls_client {
    my ($self, %o) = @_;
    my @a = ('python3', "$TOP/t/lib/hm_client.py", '--certs', certs());
    for my $k (sort keys %o) {
        next if $k eq 'timeout';
        my $v = $o{$k};
        (my $f = $k) =~ tr/_/-/;
        if (ref $v eq 'ARRAY') { push @a, map { ("--$f", $_) } @$v }
        elsif ($v eq '1' && $k =~ /^(?:no_verify|half_close|shut_wr|no_sni)$/) { push @a, "--$f" }
        else { push @a, "--$f", $v }
    }
    my ($c, $out, $err) = _capture(\@a, timeout => $o{timeout} // 60, split => 1);
    (my $json) = $out =~ /^(\{.*\})\s*$/m;
    my $r = eval { JSON::PP->new->decode($json // '') };
    unless (ref $r) {
        _diag("hm_client.py failed (exit $c): $out");
        $r = { error => "hm_client exit $c: $err" };
    }
    return $r;
}

# pattern_sha256($n): sha256 hex of the first $n bytes of the deterministic
# pattern hm_backend.py and hm_client.py send.
sub pattern_sha256 {
    my ($n) = pop;
    my $o = `python3 -c 'import sys; sys.path.insert(0, "$TOP/t/lib"); import hm_backend as b, hashlib; h=hashlib.sha256(); [h.update(c) for c in b.pattern_chunks($n)]; print(h.hexdigest())'`;
    chomp $o;
    return $o;
}

# ---------------------------------------------------------------- backends

# backend(%opt): start t/lib/hm_backend.py and wait until it listens.
#   mode => 'tls-echo'|'sink'|'http'|'https' (required)
#   cert => NAME (default backend.test), client_ca => 1 (require a client
#   cert from client-ca.pem) or FILE, proxy_protocol => 1, send_bytes => N,
#   name => NAME (default "be1", "be2", ...), port => N (default port()),
#   host => '127.0.0.1', log => FILE (HTTP request lines; default
#   $t->dir/backend-N.requests)
# Returns {port, pid, name, mode, log, stderr}.
sub backend {
    my ($self, %o) = @_;
    my $n = ++$self->{nbackend};
    my $port = $o{port} // $self->port;
    my $name = $o{name} // "be$n";
    my $log = $o{log} // "$self->{dir}/backend-$n.requests";
    my @a = ('python3', "$TOP/t/lib/hm_backend.py", '--mode', $o{mode} // 'tls-echo',
             '--port', $port, '--certs', certs(), '--name', $name, '--log', $log,
             '--host', $o{host} // '127.0.0.1');
    push @a, '--cert', $o{cert} if $o{cert};
    if (my $ca = $o{client_ca}) {
        push @a, '--client-ca', $ca eq '1' ? certs() . '/client-ca.pem' : $ca;
    }
    push @a, '--proxy-protocol' if $o{proxy_protocol};
    push @a, '--send-bytes', $o{send_bytes} if $o{send_bytes};
    my $errf = "$self->{dir}/backend-$n.stderr";
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w or _exit(126);
        open STDERR, '>>', $errf or _exit(126);
        { no warnings q(exec); exec { $a[0] } @a; }
        _exit(127);
    }
    close $w;
    my $be = { port => $port, pid => $pid, name => $name, mode => $o{mode},
               log => $log, stderr => $errf };
    push @{ $self->{backends} }, $be;
    my $sel = IO::Select->new($r);
    my $line = '';
    my $deadline = time + 10;
    while (time < $deadline && $line !~ /\n/) {
        last unless $sel->can_read($deadline - time);
        my $k = sysread($r, my $buf, 256);
        last unless $k;
        $line .= $buf;
    }
    close $r;
    if ($line =~ /^PORT (\d+)/) {
        $be->{port} = $1;
        return $be;
    }
    _diag("Hamlyn::Test: backend @a did not start: " . _slurp($errf));
    $self->stop_backend($be);
    return undef;
}

# stop_backend($be): TERM (then KILL) one backend and reap it.
sub stop_backend {
    my ($self, $be) = @_;
    return unless $be && $be->{pid};
    kill 'TERM', $be->{pid};
    my $deadline = time + 3;
    while (waitpid($be->{pid}, WNOHANG) == 0) {
        if (time > $deadline) { kill 'KILL', $be->{pid}; waitpid($be->{pid}, 0); last }
        sleep 0.02;
    }
    $be->{pid} = undef;
}

# ---------------------------------------------------------------- held clients

# held_python($script, @args): starts `python3 $script @args` with a pipe
# each way and reads its first line.  The script's protocol: it prints
# "READY..." once it holds its connection half-way, waits for a line on
# stdin, finishes, and prints one JSON line.
# Returns {pid, out, in, ready (first line starts with READY), first}.
sub held_python {
    my ($self, $script, @args) = @_;
    my ($out, $in);
    require IPC::Open2;
    my $pid = IPC::Open2::open2($out, $in, 'python3', $script, @args);
    my $l = <$out> // '';
    return { pid => $pid, out => $out, in => $in,
             ready => ($l =~ /^READY/ ? 1 : 0), first => $l };
}

# release_held($h): sends "go" to a held_python() client, waits for it and
# returns its decoded JSON line ({error => ...} when it printed none).
sub release_held {
    my ($self, $h) = @_;
    print { $h->{in} } "go\n";
    close $h->{in};
    my $l = readline($h->{out}) // '{}';
    waitpid($h->{pid}, 0);
    return eval { decode_json($l) } // { error => "bad output: $l" };
}

# hold_relay(port => P, ca => FILE (verify; default: no verification),
#            servername => 'a.test'): a TLS client that reads the backend's
# first line, sends "one" and reads the echo, prints READY, waits (at most
# 10 s) until release_relay(), then sends "two" and prints
# "RESULT <first> <one> <two>".  For relays that must survive a signal or
# a limit.  Returns {fh (its stdout), pid, flag}; read READY from fh.
my $HOLD_PY = <<'PY';
import socket, ssl, sys, time
port, flag, ca, sni = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
if ca:
    ctx = ssl.create_default_context(cafile=ca)
else:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                    server_hostname=sni)
f = s.makefile("rb")
first = f.readline().decode().strip()
s.sendall(b"one\n"); one = f.readline().decode().strip()
print("READY", flush=True)
t0 = time.time()
while time.time() - t0 < 10:
    try:
        open(flag).close(); break
    except OSError:
        time.sleep(0.05)
s.sendall(b"two\n"); two = f.readline().decode().strip()
print("RESULT", first, one, two, flush=True)
s.close()
PY
my $nhold = 0;

sub hold_relay {
    my ($self, %o) = @_;
    my $script = "$self->{dir}/hold.py";
    my $flag = "$self->{dir}/go-" . ++$nhold;
    unless (-e $script) {
        open my $fh, '>', $script or die "$script: $!";
        print $fh $HOLD_PY;
        close $fh;
    }
    my $pid = open(my $kid, '-|', 'python3', $script, $o{port}, $flag,
                   $o{ca} // '', $o{servername} // 'a.test') or die "python3: $!";
    return { fh => $kid, pid => $pid, flag => $flag };
}

# release_relay($h): lets a hold_relay() client send "two"; returns its
# RESULT line (or '') and waits for it.
sub release_relay {
    my ($self, $h) = @_;
    open my $g, '>', $h->{flag} or die "$h->{flag}: $!";
    close $g;
    my $res = readline($h->{fh});
    close $h->{fh};
    return $res // '';
}

# raw_tls($bytes, port => P, sni => 'a.test', idle => 1.5, timeout => 15,
#         pause => 0.3): sends $bytes over one TLS connection without
# certificate checks ("<<PAUSE>>" splits the sends with a pause of pause
# seconds) and returns everything read, ending in "\n[[EOF]]" (closed by
# the peer), "\n[[IDLE]]" (still open after idle quiet seconds) or
# "\n[[TIMEOUT]]".  For hand-made (also malformed) HTTP over TLS.
my $RAW_PY = <<'PY';
import socket, ssl, sys, time
host, port, sni, infile, idle, timeout, pause = sys.argv[1:8]
data = open(infile, 'rb').read()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection((host, int(port)), timeout=float(timeout))
ss = ctx.wrap_socket(s, server_hostname=sni)
for i, part in enumerate(data.split(b'<<PAUSE>>')):
    if i:
        time.sleep(float(pause))
    try:
        ss.sendall(part)
    except OSError:
        break
out = b''
end = time.time() + float(timeout)
how = 'TIMEOUT'
ss.settimeout(float(idle))
while time.time() < end:
    try:
        d = ss.recv(65536)
    except socket.timeout:
        how = 'IDLE'
        break
    except (ssl.SSLError, OSError):
        how = 'EOF'
        break
    if not d:
        how = 'EOF'
        break
    out += d
sys.stdout.buffer.write(out + b'\n[[' + how.encode() + b']]')
PY
my $nraw = 0;

sub raw_tls {
    my ($self, $data, %o) = @_;
    my $script = "$self->{dir}/raw.py";
    my $in = "$self->{dir}/raw-" . ++$nraw;
    unless (-e $script) {
        open my $fh, '>', $script or die "$script: $!";
        print $fh $RAW_PY;
        close $fh;
    }
    open my $fh, '>:raw', $in or die "$in: $!";
    print $fh $data;
    close $fh;
    open my $ph, '-|', 'python3', $script, '127.0.0.1', $o{port},
        $o{sni} // 'a.test', $in, $o{idle} // 1.5, $o{timeout} // 15,
        $o{pause} // 0.3 or die "python3: $!";
    local $/;
    my $out = <$ph>;
    close $ph;
    return $out // '';
}

# ---------------------------------------------------------------- cleanup

sub _cleanup {
    my ($self) = @_;
    return if $self->{cleaned} || $$ != $self->{owner_pid};
    $self->{cleaned} = 1;
    local ($?, $!, $@);
    # Stop what run() started, and a master left behind by `hamlyn -d`
    # (found through the pid file; only a process running hamlyn).
    my $m = $self->master_pid;
    if ($self->{started} || ($m && _is_ours($m))) {
        $self->stop;
    }
    $self->stop_backend($_) for @{ $self->{backends} };
    my $tb = Test::More->builder;
    my $failed = !$tb->is_passing;
    if ($ENV{HM_KEEP_TMP} || $failed) {
        _diag("Hamlyn::Test: kept $self->{dir}") if $failed;
    } else {
        remove_tree($self->{dir});
    }
}

sub DESTROY { $_[0]->_cleanup }

END {
    local $?;
    for my $t (grep { defined } @OBJECTS) { $t->_cleanup }
    close $_ for values %PORT_LOCKS;
}

1;
