#!/usr/bin/perl
# t/48-chaos.t: a short, fixed-seed run of the hostile-network campaign
# t/chaos/chaos.py against the binary under test (./hamlyn, or HAMLYN_BIN:
# `make check-asan-integration` runs it on the ASan+UBSan build).
#
# The driver starts hamlyn with its own configuration (passthrough,
# terminate to plaintext and TLS upstreams, a fixed route, a hostile
# upstream, a PROXY-protocol listener, a redirect listener, the admin
# listener) and its own backends, then sends seeded mutated exchanges
# (ClientHellos, TLS records, HTTP heads and bodies, PROXY headers) from 8
# clients for 15 s while canary clients check correct answers byte for
# byte.  Only oracles that do not depend on timing are asserted here: no
# sanitizer report, no worker death, every canary answer correct (the
# latency bound is raised to 60 s), the workers' sockets back to their
# count before the storm, the proxy still serving, the access log valid
# JSON.  Long campaigns: see the top of t/chaos/chaos.py.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use Cwd qw(abs_path);

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $bin = abs_path($ENV{HAMLYN_BIN} // './hamlyn');
my $dir = $t->dir . '/chaos';

my @cmd = ('python3', 't/chaos/chaos.py', '--seed', 48, '--seconds', 15,
           '--clients', 8, '--latency', 60, '--certs', $certs, '--dir', $dir,
           $bin);
my $out = `@cmd 2>&1`;
my $rc = $? >> 8;
my ($conns, $checks) = $out =~ /(\d+) storm connections, \d+ mutations, (\d+) canary checks/;

ok(defined $conns && $conns >= 20, 'the storm ran (' . ($conns // 0) . ' connections)')
    or diag($out);
ok(defined $checks && $checks >= 20, 'the canaries ran (' . ($checks // 0) . ' checks)');
my @fails = $out =~ /^FAIL: (.*)$/mg;
is_deeply(\@fails, [], 'every oracle held (sanitizers, workers, canaries, sockets, access log)')
    or diag($out);
is($rc, 0, 'chaos.py exit status 0');
unlike($out, qr/Traceback/, 'the driver itself did not fail');

done_testing();
