#!/usr/bin/perl
# 00-conf.t: the configuration file of shared/CONFIG.md and
# man/hamlyn.json.5 through `hamlyn -t` on the real binary: the shipped
# conf/hamlyn.json (with a throwaway certificate made here, as the README's
# run command does) and conf/examples/*.json validate; the default
# configuration serves its demo site over TLS without any backend;
# relative paths are taken from the file's folder; every kind of mistake
# is reported as "FILE: json.path: reason", all of them in one run, with
# exit code 1.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;
use File::Copy qw(copy);
use File::Path qw(make_path);

my $t = Hamlyn::Test->new;
my $top = Hamlyn::Test->top;
my $certs = $t->certs;
my $dir = $t->dir;

sub slurp { my ($f) = @_; open my $fh, '<', $f or die "$f: $!"; local $/; my $s = <$fh>; close $fh; return $s }
sub spew  { my ($f, $s) = @_; open my $fh, '>', $f or die "$f: $!"; print $fh $s; close $fh; return $f }

# -t on FILE: (exit code, output)
sub check_t { my ($f) = @_; return $t->hamlyn('-t', '-c', $f) }

# The lines of the form "FILE: path: reason" for FILE.
sub error_lines {
    my ($out, $file) = @_;
    return grep { /^\Q$file\E: / } split /\n/, $out;
}

# --- the shipped default configuration ---------------------------------
{
    my $d = "$dir/default";
    make_path("$d/certs");
    copy("$top/conf/hamlyn.json", "$d/hamlyn.json") or die "copy: $!";
    my ($rc, $out) = check_t("$d/hamlyn.json");
    is($rc, 1, 'default config without its certificate: -t fails');
    like($out, qr{^\Q$d\E/hamlyn\.json: certificates\.demo\.cert: cannot read "\Q$d\E/certs/demo\.pem": }m,
         'the missing demo certificate is named with its path, relative to the config folder');

    system("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
           . "-keyout '$d/certs/demo.key' -out '$d/certs/demo.pem' -days 2 "
           . "-subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null") == 0
        or die "openssl req failed";
    ($rc, $out) = check_t("$d/hamlyn.json");
    is($rc, 0, 'conf/hamlyn.json with conf/certs/demo.{pem,key} passes -t') or diag($out);
    like($out, qr/^hamlyn: configuration \Q$d\E\/hamlyn\.json is ok$/m, '-t says the file is ok');

    # Started (on free ports instead of 8443), it answers without a backend.
    my $p = $t->port;
    my $json = slurp("$top/conf/hamlyn.json");
    like($json, qr/"127\.0\.0\.1:8443"/, 'default config listens on 127.0.0.1:8443');
    like($json, qr/"\[::1\]:8443"/, 'default config listens on [::1]:8443');
    $json =~ s/127\.0\.0\.1:8443/127.0.0.1:$p/;
    $json =~ s/\[::1\]:8443/[::1]:$p/;
    $json =~ s/"workers": "auto"/"workers": 1/;
    $json =~ s/"pid_file": "hamlyn\.pid"/"pid_file": "$dir\/hamlyn.pid"/;
    $json =~ s/"path": "stderr"/"path": "$dir\/error.log"/;
    $json =~ s/"path": "stdout"/"path": "$dir\/access.log"/;
    make_path("$dir/certs");
    copy("$d/certs/demo.pem", "$dir/certs/demo.pem") or die;
    copy("$d/certs/demo.key", "$dir/certs/demo.key") or die;
    $t->write_conf($json);
    ($rc, $out) = check_t($t->conf_path);
    is($rc, 0, 'the default config on a free port passes -t') or diag($out);
    if ($t->run) {
        my ($code, $body) = $t->curl('-k', "https://localhost:$p/");
        is($code, 200, 'default config: GET / answers 200');
        like($body // '', qr/Hamlyn/, 'default config: the body says what Hamlyn is');
        like($body // '', qr/hamlyn\.json/, 'default config: the body points to the manual');
        ($code, $body) = $t->curl('-k', "https://localhost:$p/healthz");
        is($code, 200, 'default config: /healthz answers 200');
        is($body, "ok\n", 'default config: /healthz body');
        ($code) = $t->curl('-k', "https://localhost:$p/nope");
        is($code, 404, 'default config: other paths answer 404');
        $t->stop;
    } else {
        fail('the default config starts');
        $t->diag_logs;
    }
}

# --- the examples ---------------------------------------------------------
# The shipped files, unmodified, pass -t in a checkout layout: terminate
# uses the demo certificate (../certs/demo.*, made like auto/demo-cert.sh
# does), mtls the throwaway PKI of auto/example-certs.sh (certs/ next to
# it), passthrough none; logs go to stderr/stdout.
{
    my $d = "$dir/checkout";
    make_path("$d/certs", "$d/examples");
    copy("$dir/default/certs/demo.pem", "$d/certs/demo.pem") or die;
    copy("$dir/default/certs/demo.key", "$d/certs/demo.key") or die;
    is(system('sh', "$top/auto/example-certs.sh", "$d/examples/certs") >> 8, 0,
       'auto/example-certs.sh makes the mtls example\'s certificates');
    for my $ex (qw(passthrough terminate mtls)) {
        copy("$top/conf/examples/$ex.json", "$d/examples/$ex.json") or die;
        my $conf = decode_json(slurp("$d/examples/$ex.json"));
        ok(ref $conf->{runtime} eq 'HASH', "$ex.json has a runtime section");
        is($conf->{runtime}{error_log}{path}, 'stderr', "$ex.json logs errors to stderr");
        my ($rc, $out) = check_t("$d/examples/$ex.json");
        # A build --without-upstream_tls/--without-health_check refuses
        # the upstream features it lacks, naming the module.
        my @ups = values %{ $conf->{upstreams} // {} };
        my @missing = grep { !Hamlyn::Test::has($_) }
            ((grep { $_->{tls} } @ups) ? 'upstream_tls' : (),
             (grep { $_->{health_check} } @ups) ? 'health_check' : ());
        if (@missing) {
            like($out, qr/needs? the (?:\Q$missing[0]\E|\Q$missing[-1]\E) module/,
                 "conf/examples/$ex.json refused by -t without @missing");
        } else {
            is($rc, 0, "conf/examples/$ex.json as shipped passes -t") or diag($out);
        }
    }
    # Without the example PKI, mtls.json names what is missing.
    unlink "$d/examples/certs/clients-ca.pem";
    my ($rc, $out) = check_t("$d/examples/mtls.json");
    like($out, qr/sites\.api\.tls\.client_auth\.ca: cannot read ".*clients-ca\.pem"/,
         'mtls.json without its client CA: the path is named');
}

# --- mistakes, each with its JSON path ---------------------------------------
my $p1 = $t->port;
my $p2 = $t->port;
my $f;
my ($rc, $out);

# Several errors in one file: all reported, each on its own line.
$f = $t->write_conf(<<"JSON");
{
  "admin": {"listen": "127.0.0.1"},
  "certificates": {
    "api": {"cert": "$certs/a.test.pem", "key": "$certs/b.test.key"},
    "gone": {"cert": "nowhere/x.pem", "key": "$certs/a.test.key"}
  },
  "upstreams": {
    "api": {"servers": ["127.0.0.1:$p2"], "plaintext": {"accepted_risk": "loopback"}},
    "self": {"servers": ["127.0.0.1:$p2"], "tls": {"server_name": "b.test", "verify": false}},
    "db": {"servers": ["127.0.0.1:$p2"], "tls": {"server_name": "db.test", "ca": "$certs/ca.pem"}}
  },
  "listeners": [
    {"listen": ["127.0.0.1:$p1", "[::1]:$p1"], "sites": ["api", "db", "ghost"], "default_site": "other"},
    {"listen": ["127.0.0.1:$p1"], "sites": ["other"]}
  ],
  "sites": {
    "api": {"server_names": ["a.test", "*.w.test"], "mode": "terminate",
            "tls": {"certificates": ["api"], "min_version": "TLSv1.0"},
            "routes": [{"match": {"path_prefix": "/"}, "status": 200},
                       {"match": {"path_prefix": "/v1/"}, "upstream": "apj", "jwt": "main"}]},
    "db": {"server_names": ["a.test", "A.TEST"], "mode": "passthrough", "upstream": "db"},
    "other": {"server_names": ["x.*.test"], "mode": "passthrough", "upstream": "db", "sites": 1}
  }
}
JSON
($rc, $out) = check_t($f);
is($rc, 1, 'a file with many mistakes: exit 1');
my @want = (
    qr/: admin\.listen: not an address such as "127\.0\.0\.1:9901" or "\[::1\]:9901" \(got "127\.0\.0\.1"\)$/,
    qr/: certificates\.api: key ".*b\.test\.key" does not match certificate ".*a\.test\.pem"$/,
    qr/: certificates\.gone\.cert: cannot read "\Q$dir\E\/nowhere\/x\.pem": No such file or directory$/,
    qr/: upstreams\.self\.tls\.verify: "verify": false needs "accepted_risk"/,
    qr/: sites\.api\.tls\.min_version: must be "TLSv1\.2" or "TLSv1\.3" \(got "TLSv1\.0"\)$/,
    qr/: sites\.api\.routes\[1\]\.upstream: no upstream named "apj"$/,
    qr/: sites\.api\.routes\[1\]\.jwt: no jwt policy named "main" \(and jwt policies are not supported yet\)$/,
    qr/: sites\.db\.server_names\[1\]: "a\.test" is listed twice$/,
    qr/: sites\.other\.server_names\[0\]: only a leading "\*\." label may be a wildcard/,
    qr/: sites\.other\.sites: unknown key$/,
    qr/: listeners\[0\]\.sites\[2\]: no site named "ghost"$/,
    qr/: listeners\[0\]\.default_site: site "other" is not one of this listener's "sites"$/,
    qr/: listeners\[0\]\.sites\[1\]: server name "a\.test" of site "db" is also a server name of site "api"/,
    qr/: listeners\[1\]\.listen\[0\]: 127\.0\.0\.1:$p1 overlaps with 127\.0\.0\.1:$p1 of listeners\[0\]$/,
    qr/: upstreams\.db\.tls: upstream of passthrough site "db"/,
);
my @lines = error_lines($out, $f);
for my $re (@want) {
    ok((grep { $_ =~ $re } @lines), "reported: $re") or diag($out);
}
is(scalar(@lines), scalar(@want), 'exactly these errors, one line each') or diag($out);
like($out, qr/test failed \(${\ scalar(@want)} errors\)/, 'the summary counts them');
unlike($out, qr/is ok/, 'no "is ok"');

# Relative paths are taken from the config file's folder, not the cwd.
make_path("$dir/rel/certs");
copy("$certs/a.test.pem", "$dir/rel/certs/a.pem") or die;
copy("$certs/a.test.key", "$dir/rel/certs/a.key") or die;
$f = spew("$dir/rel/conf.json", <<"JSON");
{"runtime": {"workers": 1, "pid_file": "run.pid", "error_log": {"path": "err.log"}},
 "certificates": {"a": {"cert": "certs/a.pem", "key": "./certs/a.key"}},
 "listeners": [{"listen": ["127.0.0.1:$p1"], "sites": ["s"]}],
 "sites": {"s": {"server_names": ["a.test"], "mode": "terminate",
                 "tls": {"certificates": ["a"]}, "routes": [{"status": 204}]}}}
JSON
($rc, $out) = check_t($f);
is($rc, 0, 'relative certificate paths resolve against the config folder') or diag($out);

# A ticket key file that is not one: reported with the other errors of
# the file (it was only checked once everything else was valid), also
# when no site terminates TLS.
spew("$dir/bad.keys", "not a key\n");
$f = $t->write_conf({
    runtime => { tls_session_ticket_keys => "$dir/bad.keys", workerz => 1 },
    upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
    sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'a bad ticket key file: exit 1');
like($out, qr/^\Q$f\E: runtime\.tls_session_ticket_keys: "\Q$dir\E\/bad\.keys" line 1: expected base64 of a 48- or 80-byte key per line$/m,
     '... named with its path and line, beside the other errors');
like($out, qr/^\Q$f\E: runtime\.workerz: unknown key \(did you mean "workers"\?\)$/m, '... and the other error');

# Unknown keys get a suggestion: a near spelling, or the key with its
# unit (the commonest slip: "connect_timeout" for "connect_timeout_ms").
$f = $t->write_conf({
    upstreams => { pt => { servers => ["127.0.0.1:$p2"], connect_timeout => 100,
                           healthcheck => {} } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'], client_hello_timeout => 5 }],
    sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt',
                      limits => { idle_timeout => 5 } } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'unknown keys: exit 1');
like($out, qr/^\Q$f\E: upstreams\.pt\.connect_timeout: unknown key \(did you mean "connect_timeout_ms"\?\)$/m,
     'a key without its unit: the key with it is suggested');
like($out, qr/^\Q$f\E: listeners\[0\]\.client_hello_timeout: unknown key \(did you mean "client_hello_timeout_ms"\?\)$/m,
     '... also for a long key');
like($out, qr/^\Q$f\E: sites\.p\.limits\.idle_timeout: unknown key \(did you mean "idle_timeout_ms"\?\)$/m,
     '... in limits');
like($out, qr/^\Q$f\E: upstreams\.pt\.healthcheck: unknown key \(did you mean "health_check"\?\)$/m,
     'a near spelling is suggested');

# Bad addresses: each named at its JSON path with the expected forms and
# the precise reason (listen, admin.listen and upstream servers), exit 1.  An IPv4-mapped
# IPv6 address cannot be bound by our IPv6-only sockets: refused by -t
# (bind() failed with EINVAL at start) with the IPv4 form to use instead.
{
    my @bad = (
        ['[::1',               qr/missing "\]" after the IPv6 address/],
        ["::1:$p1",            qr/an IPv6 address is written in brackets, such as "\[::1\]:443"/],
        ['[::1]:0',            qr/the port must be 1\.\.65535/],
        ['[::1]:65536',        qr/the port must be 1\.\.65535/],
        ['[::1]',              qr/no ":port" after "\]"/],
        ['127.0.0.1',          undef],
        ['[::1]:',             qr/no port after ":"/],
        ['[::1]:44x',          qr/the port is not a decimal number/],
        ['[fe80::1%lo]:443',   qr/IPv6 zone ids \("%"\) are not supported/],
        ['[1.2.3.4]:443',      qr/not an IPv6 address inside the brackets/],
    );
    sub why { my ($re) = @_; return defined $re ? ": $re" : '' }
    my @listen_only = (
        ["localhost:$p1",      qr/not an IPv4 address or a bracketed IPv6 address \(host names are not allowed here\)/],
        ["[::ffff:127.0.0.1]:$p1",
         qr/an IPv4-mapped address cannot be bound by an IPv6-only socket: listen on "127\.0\.0\.1:$p1" instead/],
    );
    for my $case (@bad, @listen_only) {
        my ($a, $re) = @$case;
        my $f = $t->write_conf({
            upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
            listeners => [{ listen => ["127.0.0.1:$p1", $a], sites => ['p'] }],
            sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
        });
        my ($rc, $out) = check_t($f);
        is($rc, 1, "listen \"$a\": exit 1");
        like($out, $a =~ /ffff/ ? qr/^\Q$f\E: listeners\[0\]\.listen\[1\]: $re \(got "\Q$a\E"\)$/m
                   : qr/^\Q$f\E: listeners\[0\]\.listen\[1\]: not an address such as "0\.0\.0\.0:443", "127\.0\.0\.1:8443" or "\[::\]:443" \(got "\Q$a\E"\)${\ why($re)}$/m,
             "... reason at its path") or diag($out);
        $f = $t->write_conf({
            admin => { listen => $a },
            upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
            listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
            sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
        });
        ($rc, $out) = check_t($f);
        is($rc, 1, "admin.listen \"$a\": exit 1");
        like($out, $a =~ /ffff/ ? qr/^\Q$f\E: admin\.listen: $re \(got "\Q$a\E"\)$/m
                   : qr/^\Q$f\E: admin\.listen: not an address such as "127\.0\.0\.1:9901" or "\[::1\]:9901" \(got "\Q$a\E"\)${\ why($re)}$/m,
             "... reason at its path") or diag($out);
    }
    for my $case (@bad, ['[::ffff:0.0.0.0]:443', qr/cannot connect to a wildcard address/]) {
        my ($a, $re) = @$case;
        my $f = $t->write_conf({
            upstreams => { pt => { servers => ["127.0.0.1:$p2", $a] } },
            listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
            sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
        });
        my ($rc, $out) = check_t($f);
        is($rc, 1, "server \"$a\": exit 1");
        like($out, $a =~ /ffff/ ? qr/^\Q$f\E: upstreams\.pt\.servers\[1\]: $re \(got "\Q$a\E"\)$/m
                   : qr/^\Q$f\E: upstreams\.pt\.servers\[1\]: not an address with a port such as "10\.0\.0\.1:443", "\[::1\]:443" or "backend\.internal:443" \(got "\Q$a\E"\)${\ why($re)}$/m,
             "... reason at its path") or diag($out);
    }
    # tls.server_name: an IP literal without brackets, no port, no zone id.
    for my $case (['[::1]', qr/an IPv6 address is written without brackets here, such as "fd00::5"/],
                  ['[::1]:443', qr/an IPv6 address is written without brackets here, such as "fd00::5"/],
                  ['fe80::1%lo', qr/IPv6 zone ids \("%"\) are not supported/],
                  ['127.0.0.1:443', qr/a host name or IP address without a port/]) {
        my ($sn, $re) = @$case;
        my $f = $t->write_conf({
            upstreams => { u => { servers => ["[::1]:$p2"],
                                  tls => { server_name => $sn, ca => "$certs/ca.pem" } } },
            certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
            listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
            sites => { s => { server_names => ['a.test'], mode => 'terminate',
                              tls => { certificates => ['a'] },
                              routes => [{ match => { path_prefix => '/' }, upstream => 'u' }] } },
        });
        my ($rc, $out) = check_t($f);
        is($rc, 1, "tls.server_name \"$sn\": exit 1");
        like($out, qr/^\Q$f\E: upstreams\.u\.tls\.server_name: $re \(got "\Q$sn\E"\)$/m, '... with the reason') or diag($out);
    }
    # The mapped form of an IPv4 upstream is a working server address.
    my $f = $t->write_conf({
        upstreams => { pt => { servers => ["[::ffff:127.0.0.1]:$p2"] } },
        listeners => [{ listen => ["127.0.0.1:$p1", "[::1]:$p1"], sites => ['p'] }],
        sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
    });
    my ($rc, $out) = check_t($f);
    is($rc, 0, 'an IPv4-mapped upstream server is accepted') or diag($out);
}

# A key behind a pass phrase is said to be one; another file that holds
# no key is not (the hint was given for both).
system("openssl pkey -in '$certs/a.test.key' -aes256 -passout pass:x -out '$dir/enc.key' 2>/dev/null") == 0
    or die "openssl pkey failed";
$f = $t->write_conf({
    certificates => { e => { cert => "$certs/a.test.pem", key => "$dir/enc.key" },
                      w => { cert => "$certs/a.test.pem", key => "$certs/a.test.pem" } },
    upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
    sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'an encrypted key and a key file without a key: exit 1');
like($out, qr/^\Q$f\E: certificates\.e\.key: the private key in the "key" file is encrypted: only unencrypted keys are read/m,
     'the encrypted key is named as such');
like($out, qr/^\Q$f\E: certificates\.w\.key: no PEM private key found in "key" file \(/m,
     'a certificate given as key: no key found');
unlike($out, qr/certificates\.w\.key: .*encrypt/, '... without a word about encryption');

# A listener whose sites list repeats a name: its other sites and its
# default_site are still checked in the same run.
$f = $t->write_conf({
    upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p', 'p', 'ghost'], default_site => 'zzz' }],
    sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'a repeated site on a listener: exit 1');
like($out, qr/^\Q$f\E: listeners\[0\]\.sites\[1\]: "p" is listed twice$/m, '... the repeat');
like($out, qr/^\Q$f\E: listeners\[0\]\.sites\[2\]: no site named "ghost"$/m, '... and the dangling name beside it');
like($out, qr/^\Q$f\E: listeners\[0\]\.default_site: no site named "zzz"$/m, '... and the default_site');

# Duplicate keys, truncated JSON, a top level that is not an object.
$f = $t->write_conf(qq({"sites": {},\n "sites": {}, "listeners": []}\n));
($rc, $out) = check_t($f);
is($rc, 1, 'duplicate keys: exit 1');
like($out, qr/^\Q$f\E: line 2 column \d+: duplicate object key near '"sites"'$/m,
     'duplicate key: line, reason and the key as jansson quotes it (no backslashes added)');

$f = $t->write_conf(qq({"sites": {"s": {"server_names": ["a.test"]));
($rc, $out) = check_t($f);
is($rc, 1, 'truncated JSON: exit 1');
like($out, qr/^\Q$f\E: line 1 column \d+: /m, 'truncated JSON: line and column');

$f = $t->write_conf(qq([1, 2]\n));
($rc, $out) = check_t($f);
is($rc, 1, 'an array at the top: exit 1');
like($out, qr/^\Q$f\E: \(top level\): expected an object, got an array$/m, 'top level must be an object');

# Route keys of features that are not built yet, and a terminating site
# whose upstream has neither tls nor plaintext.
$f = $t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => { app => { servers => ["127.0.0.1:$p2"] } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      routes => [{ upstream => 'app', waf => 'default', rate_limit => 'per-ip' }] } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'unsupported route keys: exit 1');
like($out, qr/^\Q$f\E: sites\.s\.routes\[0\]\.waf: no waf policy named "default" \(and waf policies are not supported yet\)$/m,
     'waf naming no policy: a dangling reference, not supported yet');
like($out, qr/^\Q$f\E: sites\.s\.routes\[0\]\.rate_limit: no rate_limits policy named "per-ip" /m,
     'rate_limit naming no policy: a dangling reference');
like($out, qr/^\Q$f\E: upstreams\.app: upstream of terminating site "s" needs "tls" \(re-encrypt\) or "plaintext"/m,
     'a terminating site\'s upstream needs tls or plaintext');

# A route naming a policy that exists: only "not supported yet" (the
# entry too); no dangling-reference message.
$f = $t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    jwt => { main => { jwks => 'keys.json' } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      routes => [{ status => 200, jwt => 'main' }] } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'a route naming an existing jwt policy: exit 1');
is(join("\n", error_lines($out, $f)),
   "$f: jwt.main: not supported yet\n$f: sites.s.routes[0].jwt: not supported yet",
   '... both refused as not supported yet, nothing else');

# Host is needed on the upstream request: neither strip_request nor
# client_cert_header (whose client copy is removed) may name it.
$f = $t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      headers => { strip_request => ['X-A', 'host'],
                                   client_cert_header => 'Host',
                                   set_response => { 'X-Frame-Options' => 'DENY',
                                                     'x-frame-options' => 'SAMEORIGIN' } },
                      routes => [{ status => 200 }] } },
});
($rc, $out) = check_t($f);
is($rc, 1, 'Host in strip_request or as client_cert_header, a header set twice: exit 1');
like($out, qr/^\Q$f\E: sites\.s\.headers\.strip_request\[1\]: the upstream request needs Host/m,
     'strip_request: Host refused with its path');
like($out, qr/^\Q$f\E: sites\.s\.headers\.client_cert_header: the upstream request needs Host/m,
     'client_cert_header: Host refused with its path');
like($out, qr/^\Q$f\E: sites\.s\.headers\.set_response\.(?i:x-frame-options): the same header as "(?i:x-frame-options)" \(names are case-insensitive\)$/m,
     'set_response: one header set twice in two spellings is refused');

# A good file with the IPv6 and wildcard forms, proxy protocol both ways
# and a redirect listener.
$f = $t->write_conf({
    upstreams => { be => { servers => ["127.0.0.1:$p2", { address => "[::1]:$p2", weight => 3 }],
                           balance => 'random_two' } },
    listeners => [{ name => 'pub', listen => ["127.0.0.1:$p1", "[::1]:$p1"], sites => ['s'],
                    default_site => 's', proxy_protocol => JSON::PP::true },
                  { name => 'redir', listen => ["127.0.0.1:$p2"],
                    http => { redirect_to_https => JSON::PP::true } }],
    sites => { s => { server_names => ['a.test', '*.W.test'], mode => 'passthrough',
                      upstream => 'be', proxy_protocol_out => 'v1' } },
});
($rc, $out) = check_t($f);
is($rc, 0, 'IPv6 addresses, weights, wildcards, proxy protocol, redirect listener: ok') or diag($out);

# tls.accepted_risk while the certificate is verified: a warning naming
# the path (a reader of the file would think a risk was accepted).
$f = $t->write_conf({
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => { be => { servers => ["127.0.0.1:$p2"],
                           tls => { server_name => 'backend.test', ca => "$certs/ca.pem",
                                    accepted_risk => 'just in case' } } },
    listeners => [{ name => 'pub', listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['a'] },
                      routes => [{ match => { path_prefix => '/' }, upstream => 'be' }] } },
});
($rc, $out) = check_t($f);
is($rc, 0, 'tls.accepted_risk with verify true: still valid') or diag($out);
like($out, qr/^\Q$f\E: upstreams\.be\.tls\.accepted_risk: warning: ignored while "verify" is true/m,
     '... with a warning naming its path');

# A certificate out of its validity dates loads (nginx takes it too: the
# operator may be about to replace it) with a warning naming the path and
# the date, so -t and a reload say why clients fail their handshakes.
$f = $t->write_conf({
    certificates => { old => { cert => "$certs/expired.pem", key => "$certs/expired.key" },
                      a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    listeners => [{ name => 'pub', listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'terminate',
                      tls => { certificates => ['old', 'a'] },
                      routes => [{ match => { path_prefix => '/' }, status => 204 }] } },
});
($rc, $out) = check_t($f);
is($rc, 0, 'expired certificate: still valid') or diag($out);
like($out, qr/^\Q$f\E: certificates\.old\.cert: warning: certificate expired on 2021-01-01T00:00:00Z/m,
     '... with a warning naming its path and the date');
unlike($out, qr/certificates\.a\.cert: warning/, '... and none for the valid one');

# A cpu_affinity CPU this machine does not let us run on: a warning at its
# index (the worker given it runs unpinned), the file still loads.
$f = $t->write_conf({
    runtime => { cpu_affinity => [0, 1023] },
    upstreams => { be => { servers => ["127.0.0.1:$p2"] } },
    listeners => [{ name => 'pub', listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'passthrough', upstream => 'be' } },
});
($rc, $out) = check_t($f);
is($rc, 0, 'cpu_affinity with a CPU this machine lacks: still valid') or diag($out);
like($out, qr/^\Q$f\E: runtime\.cpu_affinity\[1\]: warning: CPU 1023 is not one this process may run on here/m,
     '... with a warning naming its index');
unlike($out, qr/cpu_affinity\[0\]/, '... and none for CPU 0');

# A site no listener lists, and one server address listed twice: both
# load (nginx takes either), each with a warning naming its path.
$f = $t->write_conf({
    upstreams => { be => { servers => ["127.0.0.1:$p2", "127.0.0.1:$p2",
                                       { address => "127.0.0.1:$p1", weight => 2 }] } },
    listeners => [{ name => 'pub', listen => ["127.0.0.1:$p1"], sites => ['s'] }],
    sites => { s => { server_names => ['a.test'], mode => 'passthrough', upstream => 'be' },
               lost => { server_names => ['b.test'], mode => 'passthrough', upstream => 'be' } },
});
($rc, $out) = check_t($f);
is($rc, 0, 'an unlisted site and a repeated server: still valid') or diag($out);
like($out, qr/^\Q$f\E: sites\.lost: warning: no listener lists this site/m,
     '... the site no listener lists is named');
like($out, qr/^\Q$f\E: upstreams\.be\.servers: warning: 127\.0\.0\.1:$p2 is listed more than once/m,
     '... and the repeated server');
unlike($out, qr/sites\.s: warning|127\.0\.0\.1:$p1 is listed/, '... and nothing else');

# A pid file or log the master could not create at start is an error of
# -t (and of a reload), not a start that fails after -t said "ok": a name
# longer than the file system takes.  And a start that cannot write its
# pid file (-t cannot see that /proc takes no files without creating one)
# says so on stderr when the errors go to a log file.
{
    my $long = 'p' x 300;
    my %pt = (upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
              listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
              sites => { p => { server_names => ['p.test'], mode => 'passthrough',
                                upstream => 'pt' } });
    $f = $t->write_conf({ %pt, runtime => { pid_file => "$dir/$long",
                                            access_log => { path => "$dir/$long.log" } } });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'a pid file name too long: -t fails');
    like($out, qr/^\Q$f\E: runtime\.pid_file: cannot create "\Q$dir\E\/p{300}": File name too long$/m,
         '... named at runtime.pid_file with the reason');
    like($out, qr/^\Q$f\E: runtime\.access_log\.path: cannot create "\Q$dir\E\/p{300}\.log": File name too long$/m,
         '... and the access log at its path');

    $f = $t->write_conf({ %pt, runtime => { pid_file => '/proc/hamlyn-audit.pid' } });
    ($rc, $out) = $t->hamlyn('-c', $f);
    is($rc, 1, 'a pid file that cannot be created: the start fails');
    like($out, qr/^hamlyn: cannot write the pid file; see the error log$/m,
         '... and says so on stderr, not only in the error log');
    like($t->error_log, qr/runtime\.pid_file: cannot create \/proc\/hamlyn-audit\.pid: /,
         '... where the reason is');
}

# One error, one line: a reason that quotes a file name with a newline
# in it (written by the TLS layer, not the loader's own quoting) has it
# escaped, so that no line of -t comes without "FILE: path: ".
{
    my $nl = "$dir/two\nlines";
    spew($nl, "not a key\n");
    $f = $t->write_conf({
        runtime => { tls_session_ticket_keys => $nl },
        upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['p'] }],
        sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'a ticket key file with a newline in its name: -t fails');
    like($out, qr/^\Q$f\E: runtime\.tls_session_ticket_keys: "\Q$dir\E\/two\\x0alines" line 1: expected base64/m,
         '... the newline is escaped in the reason');
    my @stray = grep { !/^\Q$f\E: / && !/^hamlyn: configuration / } split /\n/, $out;
    is(scalar(@stray), 0, '... and every line of -t names the file') or diag($out);
}

# A listen address this machine does not have (TEST-NET 192.0.2.1, the
# documentation IPv6 prefix) passed -t and then failed at bind(): -t
# probes each listen and admin address with port 0 (no port taken) and
# names it at its path.
{
    $f = $t->write_conf({
        admin => { listen => '192.0.2.7:9901' },
        upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
        listeners => [{ listen => ["192.0.2.1:$p1", "[2001:db8::1]:$p1", "127.0.0.1:$p1",
                                   "[fe80::1]:$p1"],
                        sites => ['p'] }],
        sites => { p => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'listen addresses that are not local: -t fails');
    like($out, qr/^\Q$f\E: listeners\[0\]\.listen\[0\]: cannot listen on 192\.0\.2\.1:$p1: not an address of this machine \(Cannot assign requested address\)$/m,
         '... the IPv4 one at its path');
    like($out, qr/^\Q$f\E: listeners\[0\]\.listen\[1\]: cannot listen on \[2001:db8::1\]:$p1: not an address of this machine /m,
         '... the IPv6 one');
    like($out, qr/^\Q$f\E: admin\.listen: cannot listen on 192\.0\.2\.7:9901: not an address of this machine /m,
         '... and the admin one');
    like($out, qr/^\Q$f\E: listeners\[0\]\.listen\[3\]: cannot listen on \[fe80::1\]:$p1: not an address a socket can be bound to \(a link-local or multicast address\) \(Invalid argument\)$/m,
         '... an IPv6 link-local one (bind() needs a zone id)');
    unlike($out, qr/listen\[2\]/, '... 127.0.0.1 is fine');
    ($rc, $out) = $t->hamlyn('-c', $f);
    is($rc, 1, '... and the start refuses the file the same way');
    like($out, qr/^\Q$f\E: listeners\[0\]\.listen\[0\]: cannot listen on 192\.0\.2\.1:$p1: not an address/m,
         '... with the same message');
}

# client_auth.ca with "mode": "none" asks for nothing: valid, but the CA
# is ignored, and -t says so (as it does for accepted_risk with verify on).
{
    $f = $t->write_conf({
        certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['a'],
                                   client_auth => { mode => 'none', ca => "$certs/client-ca.pem" } },
                          routes => [{ status => 204 }] } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 0, 'client_auth.ca with mode none: still valid') or diag($out);
    like($out, qr/^\Q$f\E: sites\.s\.tls\.client_auth\.ca: warning: ignored while "mode" is "none": no client certificate is asked for/m,
         '... with a warning naming the ignored CA');
}

# Errors of the whole file have the documented "FILE: (top level): reason"
# form too: a file that is missing or not a regular file.
{
    ($rc, $out) = check_t("$dir/no-such.json");
    is($rc, 1, 'a missing configuration file: -t fails');
    like($out, qr/^\Q$dir\E\/no-such\.json: \(top level\): cannot read: No such file or directory$/m,
         '... "FILE: (top level): cannot read: REASON"');
    ($rc, $out) = check_t($dir);
    is($rc, 1, 'a folder as configuration file: -t fails');
    like($out, qr/^\Q$dir\E: \(top level\): not a regular file$/m, '... "FILE: (top level): not a regular file"');
}

# A match path that no normalised request path can hold never matches (a
# deny route "/caf%c3%a9/" let "/caf%C3%A9/x" through, -t said ok): refused
# with the spelling that matches.  Prefixes may end inside a segment.
{
    my @routes = (
        [path_prefix => '/caf%c3%a9/', '"/caf%C3%A9/"'],
        [path_prefix => '/a//b/',      '"/a/b/"'],
        [path_prefix => '/%61dmin/',   '"/admin/"'],
        [path_exact  => '/x/..',       '"/"'],
        [path_exact  => '/a%2Fb',      '"/a/b"'],
        [path_prefix => '/s?q=1',      undef],
        [path_prefix => '/.',          'ok'],
        [path_prefix => '/%40x',       'ok'],
        [path_prefix => '/a/..',       'ok'],
    );
    $f = $t->write_conf({
        certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['a'] },
                          routes => [(map { { match => { $_->[0] => $_->[1] }, status => 403 } } @routes),
                                     { status => 204 }] } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'match paths that never match: -t fails');
    for my $i (0 .. $#routes) {
        my ($k, $v, $fix) = @{ $routes[$i] };
        my $at = qr/^\Q$f\E: sites\.s\.routes\[$i\]\.match\.$k: /m;
        if (!defined $fix) {
            like($out, qr/${at}the query is not part of the path routes match \(got "\Q$v\E"\)$/m,
                 "$k \"$v\": a query is refused");
        } elsif ($fix eq 'ok') {
            unlike($out, $at, "$k \"$v\" can match: accepted");
        } else {
            like($out, qr/${at}never matches: requests are routed on their normalised path .*: write \Q$fix\E \(got "\Q$v\E"\)$/m,
                 "$k \"$v\": refused, $fix suggested");
        }
    }
}

# A health check path is sent as the request target: a malformed escape
# or a fragment would be a request the servers refuse, marking them down.
{
    $f = $t->write_conf({
        upstreams => {
            u1 => { servers => ["127.0.0.1:$p2"], health_check => { path => '/h%zz' },
                    plaintext => { accepted_risk => 'loopback test' } },
            u2 => { servers => ["127.0.0.1:$p2"], health_check => { path => '/h#x' },
                    plaintext => { accepted_risk => 'loopback test' } },
            u3 => { servers => ["127.0.0.1:$p2"], health_check => { path => '/h?full=1&x=%41' },
                    plaintext => { accepted_risk => 'loopback test' } } },
        certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['a'] },
                          routes => [{ match => { path_prefix => '/1/' }, upstream => 'u1' },
                                     { match => { path_prefix => '/2/' }, upstream => 'u2' },
                                     { upstream => 'u3' }] } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'bad health check paths: -t fails');
    like($out, qr/^\Q$f\E: upstreams\.u1\.health_check\.path: malformed percent-encoding \("%" and two hex digits\) \(got "\/h%zz"\)$/m,
         '... a malformed escape');
    like($out, qr/^\Q$f\E: upstreams\.u2\.health_check\.path: must not contain "#" \(a fragment is not part of a request\) \(got "\/h#x"\)$/m,
         '... a fragment');
    unlike($out, qr/upstreams\.u3/, '... a query is fine there');
}

# A key written one level off says where it belongs (a route's
# path_prefix outside "match", a site's min_version outside "tls").
{
    $f = $t->write_conf({
        certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'], redirect_to_https => JSON::PP::true }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate', min_version => 'TLSv1.3',
                          tls => { certificates => ['a'] },
                          routes => [{ path_prefix => '/x/', status => 404 }, { status => 204 }] } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 1, 'keys one level off: -t fails');
    like($out, qr/^\Q$f\E: sites\.s\.routes\[0\]\.path_prefix: unknown key here \(it belongs in "match"\)$/m,
         '... path_prefix belongs in "match"');
    like($out, qr/^\Q$f\E: sites\.s\.min_version: unknown key here \(it belongs in "tls"\)$/m,
         '... min_version belongs in "tls"');
    like($out, qr/^\Q$f\E: listeners\[0\]\.redirect_to_https: unknown key here \(it belongs in "http"\)$/m,
         '... redirect_to_https belongs in "http"');
}

# A reload logs the loader's warnings at warn level ("reload: FILE: path:
# warning: ..."), its errors at error level: a valid file with a warning
# is not an error in the log.
{
    my $tr = $t;                   # (one harness per test file: it owns the dir)
    my $pr = $tr->port;
    my %pt = (upstreams => { pt => { servers => ["127.0.0.1:$p2"] } },
              listeners => [{ listen => ["127.0.0.1:$pr"], sites => ['p'] }]);
    my $rf = $tr->write_conf({ %pt, sites => { p => { server_names => ['p.test'],
                                                      mode => 'passthrough', upstream => 'pt' } } });
    if ($tr->run) {
        $tr->write_conf({ %pt, sites => {
            p    => { server_names => ['p.test'], mode => 'passthrough', upstream => 'pt' },
            lost => { server_names => ['l.test'], mode => 'passthrough', upstream => 'pt' } } });
        $tr->signal('HUP');
        ok($tr->wait_error_log(qr/configuration reloaded/), 'reload with a warning: reloaded');
        like($tr->error_log, qr/\[warn\] \d+: reload: \Q$rf\E: sites\.lost: warning: no listener lists this site/,
             '... the warning is logged at warn level');
        unlike($tr->error_log, qr/\[error\].*warning:/, '... not at error level');
        $tr->write_conf({ %pt, sites => { p => { server_names => ['p.test'], mode => 'passthrough',
                                                 upstream => 'pt', bogus => 1 } } });
        $tr->signal('HUP');
        ok($tr->wait_error_log(qr/keeping the running configuration/), 'reload of a bad file: refused');
        like($tr->error_log, qr/\[error\] \d+: reload: \Q$rf\E: sites\.p\.bogus: unknown key/,
             '... its error is logged at error level');
        $tr->stop;
    } else {
        fail('started for the reload test');
    }
}

# An OCSP response for another certificate would be stapled in vain
# (clients that check it refuse the handshake): -t warns at its path; the
# response for the certificate itself passes without a word.
{
    my ($serial) = `openssl x509 -in $certs/a.test-ecdsa.pem -noout -serial` =~ /serial=(\w+)/;
    spew("$dir/ocsp-index.txt", "V\t351231000000Z\t\t$serial\tunknown\t/CN=a.test\n");
    system("openssl ocsp -issuer $certs/ca.pem -cert $certs/a.test-ecdsa.pem -no_nonce "
           . "-reqout $dir/ocsp.req >/dev/null 2>&1") == 0 or die 'openssl ocsp -reqout';
    system("openssl ocsp -index $dir/ocsp-index.txt -rsigner $certs/ca.pem -rkey $certs/ca.key "
           . "-CA $certs/ca.pem -reqin $dir/ocsp.req -respout $dir/a.ocsp -ndays 2 >/dev/null 2>&1") == 0
        or die 'openssl ocsp -respout';
    $f = $t->write_conf({
        certificates => {
            a   => { cert => "$certs/a.test-ecdsa.pem", key => "$certs/a.test-ecdsa.key",
                     ocsp => "$dir/a.ocsp" },
            rsa => { cert => "$certs/a.test-rsa.pem", key => "$certs/a.test-rsa.key",
                     ocsp => "$dir/a.ocsp" } },
        listeners => [{ listen => ["127.0.0.1:$p1"], sites => ['s'] }],
        sites => { s => { server_names => ['a.test'], mode => 'terminate',
                          tls => { certificates => ['a', 'rsa'] }, routes => [{ status => 204 }] } },
    });
    ($rc, $out) = check_t($f);
    is($rc, 0, 'an OCSP response for another certificate: still valid') or diag($out);
    like($out, qr/^\Q$f\E: certificates\.rsa\.ocsp: warning: the OCSP response is for another certificate \(none of its responses has this certificate's serial number\): clients that check it will refuse the handshake$/m,
         '... with a warning at its path');
    unlike($out, qr/certificates\.a\.ocsp/, '... none for the certificate it is for');
}

# --- the manual documents every key the loader knows ----------------------
# Each key list of src/core/hm_conf.c ("static const char *const ...[] =
# { ... }") names keys; man/hamlyn.json.5 must describe each one as a
# bold term (".B key" or ".BR key ,").
{
    my $src = slurp("$top/src/core/hm_conf.c");
    my $man = slurp("$top/man/hamlyn.json.5");
    my %bold = map { $_ => 1 } ($man =~ /^\.BR? (\S+)/mg);
    my %keys;
    while ($src =~ /static const char \*const (\w*(?:keys|unsupported))\[\] = \{(.*?)\};/sg) {
        my $body = $2;
        $keys{$_} = 1 for ($body =~ /"([a-z_0-9]+)"/g);
    }
    cmp_ok(scalar(keys %keys), '>', 80, 'found the key tables of hm_conf.c');
    for my $k (sort keys %keys) {
        ok($bold{$k}, "man/hamlyn.json.5 documents \"$k\"");
    }
    # and the other way: every key term of the manual (".TP" then a bold
    # lower-case word) is a key the loader knows
    my @terms = ($man =~ /^\.T[PQ]\n\.BR? "?([a-z][a-z_0-9]*)"?(?: |$)/mg);
    cmp_ok(scalar(@terms), '>', 80, 'found the key terms of man/hamlyn.json.5');
    for my $k (sort { $a cmp $b } keys %{ { map { $_ => 1 } @terms } }) {
        ok($keys{$k}, "\"$k\" of man/hamlyn.json.5 is a key of hm_conf.c");
    }
}

done_testing();
