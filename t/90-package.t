#!/usr/bin/perl
# 90-package.t: `make deb` (auto/mkdeb.sh) builds a Debian package that is
# checked here without installing anything: dpkg-deb -I/-c/-e/-x into this
# test's folder.  Control fields (Package, Version from `hamlyn -V`,
# Architecture, Maintainer, Description; every Depends name is a package
# installed on this machine, none is BoringSSL for a static build), the
# exact conffiles, the exact file list with modes and root:root owners, man
# pages and changelog gzip-valid, the extracted binary's -V, the shipped
# configuration passing -t once its absolute paths are moved into a temp
# root (and runtime.user/group set to this test's own user: the package's
# user hamlyn does not exist here) with a certificate made by the shipped
# demo-cert.sh, the systemd unit and logrotate file agreeing with it, the
# maintainer scripts passing sh -n; DEB_VERSION overrides the version.
# Installing it for real is t/pkg-ci.sh's job (root, disposable machine).
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;

my $t = Hamlyn::Test->new;
my $dir = $t->dir;
my $top = $t->top;
delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};   # a make of its own, not make check's jobs

for my $tool (qw(dpkg-deb dpkg-shlibdeps gzip)) {
    ok(system("command -v $tool >/dev/null 2>&1") == 0, "$tool is installed (auto/install-deps.sh)")
        or BAIL_OUT("$tool missing");
}

sub run_out {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

my ($rc, $out) = run_out("cd '$top' && make --no-print-directory deb DEB_OUT='$dir/out'");
is($rc, 0, 'make deb exits 0') or diag($out);

my ($vline) = `'$top/hamlyn' -V` =~ /^hamlyn version (\S+)$/m;
ok($vline, "./hamlyn -V gives the version ($vline)");
chomp(my $arch = `dpkg --print-architecture`);
my $version = "$vline-1";
my $deb = "$dir/out/hamlyn_${version}_$arch.deb";
ok(-f $deb, "hamlyn_${version}_$arch.deb was written") or BAIL_OUT("no package: $out");
like($out, qr/mkdeb: wrote \Q$deb\E/, 'make deb names the package it wrote');

# --- control fields
my $info = `dpkg-deb -f '$deb'`;
my %f = $info =~ /^([A-Za-z-]+): (.*)$/mg;
is($f{Package}, 'hamlyn', 'Package: hamlyn');
is($f{Version}, $version, "Version: $version (from src/core/hm_core.h, as -V says)");
is($f{Architecture}, $arch, "Architecture: $arch");
like($f{Maintainer} // '', qr/^\S.* <[^<>\s]+@[^<>\s]+>$/, 'Maintainer: name <address>');
like($f{Description} // '', qr/\S/, 'Description: a synopsis line');
like($info, qr/^Description: .*\n( \S.*\n)+/m, 'Description: an extended description');
like($f{'Installed-Size'} // '', qr/^\d+$/, 'Installed-Size');
my @deps = map { s/\s*\(.*\)//r } map { s/^\s+|\s+$//gr } split /,/, $f{Depends} // '';
ok(scalar @deps >= 4, "Depends: @deps");
for my $d (@deps) {
    my $alts = [split /\s*\|\s*/, $d];
    my $inst = grep { `dpkg-query -W -f='\${db:Status-Status}' '$_' 2>/dev/null` eq 'installed' } @$alts;
    ok($inst, "Depends: $d names a package installed here");
}
for my $need (qw(libc6 libuv1 adduser openssl)) {
    ok((grep { $_ eq $need } @deps), "Depends on $need");
}
ok((grep { /^libjansson/ } @deps), 'Depends on libjansson*');
ok((grep { /^libhttp-parser/ } @deps), 'Depends on libhttp-parser*');
my $static = `'$top/hamlyn' -V` =~ /^TLS: .*\(static\)/m;
if ($static) {
    ok(!(grep { /boringssl/i } @deps), 'BoringSSL is static: no dependency on it');
} else {
    ok((grep { /boringssl/i } @deps), 'BoringSSL is shared: a dependency on it');
}

# --- conffiles and maintainer scripts
my $ctl = "$dir/control";
is(system('dpkg-deb', '-e', $deb, $ctl), 0, 'dpkg-deb -e');
is(Hamlyn::Test::slurp("$ctl/conffiles"), "/etc/hamlyn/hamlyn.json\n/etc/logrotate.d/hamlyn\n",
   'conffiles: exactly /etc/hamlyn/hamlyn.json and /etc/logrotate.d/hamlyn');
for my $s (qw(postinst prerm postrm)) {
    my $p = "$ctl/$s";
    ok(-f $p && (stat $p)[2] & 0111, "$s is there, executable");
    my $txt = Hamlyn::Test::slurp($p);
    like($txt, qr{\A#!/bin/sh\n}, "$s: #!/bin/sh");
    like($txt, qr/^set -e$/m, "$s: set -e");
    ($rc, $out) = run_out("sh -n '$p'");
    is($rc, 0, "$s: sh -n") or diag($out);
    if (system('command -v dash >/dev/null 2>&1') == 0) {
        ($rc, $out) = run_out("dash -n '$p'");
        is($rc, 0, "$s: dash -n") or diag($out);
    }
}
ok(!-e "$ctl/preinst", 'no preinst');
my @sums = map { (split ' ', $_, 2)[1] } split /\n/, Hamlyn::Test::slurp("$ctl/md5sums");
is_deeply(\@sums, [qw(lib/systemd/system/hamlyn.service usr/sbin/hamlyn
                      usr/share/doc/hamlyn/README usr/share/doc/hamlyn/changelog.Debian.gz
                      usr/share/doc/hamlyn/copyright usr/share/hamlyn/demo-cert.sh
                      usr/share/man/man5/hamlyn.json.5.gz usr/share/man/man8/hamlyn.8.gz)],
          'md5sums: every file but the conffiles');

# --- file list, modes, owners
my %want = (
    './etc/hamlyn/hamlyn.json'                     => '-rw-r--r--',
    './etc/logrotate.d/hamlyn'                     => '-rw-r--r--',
    './lib/systemd/system/hamlyn.service'          => '-rw-r--r--',
    './usr/sbin/hamlyn'                            => '-rwxr-xr-x',
    './usr/share/doc/hamlyn/README'                => '-rw-r--r--',
    './usr/share/doc/hamlyn/changelog.Debian.gz'   => '-rw-r--r--',
    './usr/share/doc/hamlyn/copyright'             => '-rw-r--r--',
    './usr/share/hamlyn/demo-cert.sh'              => '-rwxr-xr-x',
    './usr/share/man/man5/hamlyn.json.5.gz'        => '-rw-r--r--',
    './usr/share/man/man8/hamlyn.8.gz'             => '-rw-r--r--',
);
my (%got, @bad_owner, @bad_dir);
for my $l (split /\n/, `dpkg-deb -c '$deb'`) {
    my ($mode, $owner, $size, $d, $tm, $path) = split ' ', $l, 6;
    push @bad_owner, "$owner $path" unless $owner eq 'root/root';
    if ($mode =~ /^d/) {
        push @bad_dir, "$mode $path" unless $mode eq 'drwxr-xr-x';
        next;
    }
    $got{$path} = $mode;
}
is_deeply(\%got, \%want, 'the files and their modes, exactly');
is_deeply(\@bad_owner, [], 'every entry is root:root');
is_deeply(\@bad_dir, [], 'every folder is 0755');

# --- contents
my $x = "$dir/x";
is(system('dpkg-deb', '-x', $deb, $x), 0, 'dpkg-deb -x');
for my $m ('usr/share/man/man8/hamlyn.8.gz', 'usr/share/man/man5/hamlyn.json.5.gz',
           'usr/share/doc/hamlyn/changelog.Debian.gz') {
    is(system('gzip', '-t', "$x/$m"), 0, "$m: gzip -t");
}
like(`gzip -dc '$x/usr/share/man/man8/hamlyn.8.gz'`, qr/^\.TH HAMLYN 8 /m, 'hamlyn.8.gz is the man page');
is(`gzip -dc '$x/usr/share/man/man8/hamlyn.8.gz'`, Hamlyn::Test::slurp("$top/man/hamlyn.8"),
   'hamlyn.8.gz is man/hamlyn.8');
like(`gzip -dc '$x/usr/share/doc/hamlyn/changelog.Debian.gz'`,
     qr/\Ahamlyn \(\Q$version\E\) \S+; urgency=\w+\n\n  \* .*\n(.*\n)*\n -- \S.* <\S+@\S+>  \w{3}, \d/,
     'changelog.Debian.gz: one entry in Debian format, with the version');
is(Hamlyn::Test::slurp("$x/usr/share/doc/hamlyn/README"), Hamlyn::Test::slurp("$top/README"), 'README');
like(Hamlyn::Test::slurp("$x/usr/share/doc/hamlyn/copyright"), qr{\AFormat: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n}, 'copyright: machine-readable format');

($rc, $out) = run_out("cd '$x' && md5sum --quiet -c '$ctl/md5sums'");
is($rc, 0, 'md5sums match the files') or diag($out);

my $bin = "$x/usr/sbin/hamlyn";
($rc, $out) = run_out("'$bin' -V");
is($rc, 0, 'the packaged binary runs -V');
like($out, qr/^hamlyn version \Q$vline\E$/m, "... hamlyn version $vline");
unlike(`file '$bin' 2>/dev/null` // '', qr/not stripped/, 'the binary is stripped');

# --- the shipped configuration, moved into a temp root
my $shipped = Hamlyn::Test::slurp("$x/etc/hamlyn/hamlyn.json");
my $c = decode_json($shipped);
is($c->{runtime}{pid_file}, '/run/hamlyn.pid', 'pid_file /run/hamlyn.pid');
is($c->{runtime}{error_log}{path}, '/var/log/hamlyn/error.log', 'error log /var/log/hamlyn/error.log');
is($c->{runtime}{access_log}{path}, '/var/log/hamlyn/access.log', 'access log /var/log/hamlyn/access.log');
is($c->{runtime}{user}, 'hamlyn', 'runtime.user hamlyn');
is($c->{runtime}{group}, 'hamlyn', 'runtime.group hamlyn');
# every file the configuration names (routes' "/..." are URL paths)
my @files;
my $walk;
$walk = sub {
    my ($v) = @_;
    if (ref $v eq 'HASH') {
        for my $k (keys %$v) {
            if (!ref $v->{$k} && $k =~ /^(pid_file|path|cert|key|ca|ocsp)$/) {
                push @files, $v->{$k};
            } else {
                $walk->($v->{$k});
            }
        }
    } elsif (ref $v eq 'ARRAY') {
        $walk->($_) for @$v;
    }
};
$walk->($c);
is(scalar @files, 5, 'the configuration names 5 files (pid, 2 logs, certificate, key)');
is_deeply([grep { !m{^/(etc/hamlyn|var/log/hamlyn|run)/} } @files], [],
          'each is an absolute path under /etc/hamlyn, /var/log/hamlyn or /run');
my $root = "$dir/root";
mkdir $_ for $root, "$root/etc", "$root/etc/hamlyn", "$root/var", "$root/var/log",
             "$root/var/log/hamlyn", "$root/run";
(my $moved = $shipped) =~ s{"/(etc/hamlyn|var/log/hamlyn|run)/}{"$root/$1/}g;
my $me = getpwuid($<);
my $mygroup = getgrgid($();
$moved =~ s/"user": "hamlyn"/"user": "$me"/ or fail('runtime.user not found');
$moved =~ s/"group": "hamlyn"/"group": "$mygroup"/ or fail('runtime.group not found');
open my $fh, '>', "$root/etc/hamlyn/hamlyn.json" or die $!;
print $fh $moved;
close $fh;
($rc, $out) = run_out("sh '$x/usr/share/hamlyn/demo-cert.sh' '$root/etc/hamlyn/certs'");
is($rc, 0, 'the shipped demo-cert.sh writes the certificate') or diag($out);
ok(-s "$root/etc/hamlyn/certs/demo.pem" && -s "$root/etc/hamlyn/certs/demo.key", '... demo.pem and demo.key');
($rc, $out) = run_out("'$bin' -t -c '$root/etc/hamlyn/hamlyn.json'");
is($rc, 0, 'the shipped configuration passes -t in the temp root') or diag($out);
like($out, qr/configuration \Q$root\E\/etc\/hamlyn\/hamlyn.json is ok/, '... "is ok"');
($rc, $out) = run_out("sh '$x/usr/share/hamlyn/demo-cert.sh' '$root/etc/hamlyn/certs'");
is($out, '', 'demo-cert.sh leaves an existing certificate alone');

# --- the systemd unit and logrotate agree with the configuration and the CLI
my $unit = Hamlyn::Test::slurp("$x/lib/systemd/system/hamlyn.service");
like($unit, qr/^Type=forking$/m, 'unit: Type=forking');
like($unit, qr/^PIDFile=\Q$c->{runtime}{pid_file}\E$/m, 'unit: PIDFile= is runtime.pid_file');
like($unit, qr{^ExecStartPre=/usr/sbin/hamlyn -t -c /etc/hamlyn/hamlyn.json$}m, 'unit: ExecStartPre= hamlyn -t');
like($unit, qr{^ExecStart=/usr/sbin/hamlyn -c /etc/hamlyn/hamlyn.json -d$}m, 'unit: ExecStart= hamlyn -d');
like($unit, qr{^ExecReload=/usr/sbin/hamlyn -c /etc/hamlyn/hamlyn.json -s reload$}m, 'unit: ExecReload= -s reload');
like($unit, qr/^KillSignal=SIGQUIT$/m, 'unit: graceful stop (QUIT)');
like($unit, qr/^KillMode=mixed$/m, 'unit: KillMode=mixed');
my ($tss) = $unit =~ /^TimeoutStopSec=(\d+)$/m;
ok($tss && $tss > $c->{runtime}{shutdown_timeout_s} + 5,
   "unit: TimeoutStopSec=$tss beyond shutdown_timeout_s + the master's 5 s");
unlike($unit, qr/^ExecStop=/m, 'unit: no ExecStop= (systemd would TERM at once after it)');
like($unit, qr/^WantedBy=multi-user.target$/m, 'unit: WantedBy=multi-user.target');
# the flags the unit and logrotate use are in hamlyn -h
my $help = `'$bin' -h`;
like($help, qr/^\s+-$_\b/m, "hamlyn -h lists -$_") for qw(t d s c);
if (system('command -v systemd-analyze >/dev/null 2>&1') == 0) {
    ($rc, $out) = run_out("systemd-analyze verify --man=no '$x/lib/systemd/system/hamlyn.service'");
    # /usr/sbin/hamlyn is not installed here: that complaint is expected
    my @err = grep { /hamlyn\.service/ && !/Command \/usr\/sbin\/hamlyn is not executable/ }
              split /\n/, $out;
    is_deeply(\@err, [], 'systemd-analyze verify: nothing wrong in the unit but the absent binary');
}
my $lr = Hamlyn::Test::slurp("$x/etc/logrotate.d/hamlyn");
like($lr, qr{^/var/log/hamlyn/\*\.log \{$}m, 'logrotate: /var/log/hamlyn/*.log');
like($lr, qr{/usr/sbin/hamlyn -c /etc/hamlyn/hamlyn.json -s reopen}, 'logrotate: postrotate hamlyn -s reopen');
like($lr, qr{^\s+create 0640 hamlyn adm$}m, 'logrotate: new files for hamlyn, group adm');
if (system('command -v logrotate >/dev/null 2>&1') == 0) {
    # with this test's user and group for the package's hamlyn:adm
    (my $mine = $lr) =~ s/create 0640 hamlyn adm/create 0640 $me $mygroup/;
    open my $lf, '>', "$dir/logrotate.conf" or die $!;
    print $lf $mine;
    close $lf;
    ($rc, $out) = run_out("logrotate -d -s '$dir/logrotate.status' '$dir/logrotate.conf'");
    unlike($out, qr/^error:/m, 'logrotate -d: the file parses') or diag($out);
}

# --- DEB_VERSION
($rc, $out) = run_out("cd '$top' && make --no-print-directory deb DEB_OUT='$dir/out2' DEB_VERSION=99.0-7");
is($rc, 0, 'make deb DEB_VERSION=99.0-7') or diag($out);
ok(-f "$dir/out2/hamlyn_99.0-7_$arch.deb", 'hamlyn_99.0-7_*.deb');
is(`dpkg-deb -f '$dir/out2/hamlyn_99.0-7_$arch.deb' Version`, "99.0-7\n", 'Version: 99.0-7');

done_testing();
