#!/usr/bin/perl
# t/46-ipv6.t: IPv6 and address handling end to end, with real clients on
# ::1 and 127.0.0.1: "0.0.0.0:P" beside "[::]:P" (IPv6-only sockets, both
# bind), the admin listener on [::1], plaintext and TLS upstreams on [::1]
# (an IPv6 tls.server_name is never SNI but is checked against the
# certificate's IP SANs), what the backend sees (X-Forwarded-For without
# brackets or port, Forwarded for="[::1]"), PROXY protocol out for v6 and
# v4 clients to v6 and v4 upstreams (v2 family and v1 TCP6 consistent with
# the addresses), PROXY protocol in with IPv6 addresses (logs, headers,
# PROXY out), and the log formats of IPv6 addresses.
use strict;
use warnings;
use lib 't/lib';
use Hamlyn::Test;
use Test::More;
use JSON::PP;

plan skip_all => 'no IPv6 loopback'
    unless eval { require IO::Socket::IP; 1 }
        && IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0, Listen => 1);
plan skip_all => 'sni_route and headers_sanitise needed'
    unless Hamlyn::Test::has('sni_route') && Hamlyn::Test::has('headers_sanitise');

my $t = Hamlyn::Test->new;
my $certs = $t->certs;
my $be6 = $t->backend(mode => 'http', host => '::1', name => 'be6') or BAIL_OUT('backend');
# the localhost certificate has the IP SANs 127.0.0.1 and ::1
my $tls6 = $t->backend(mode => 'https', host => '::1', cert => 'localhost', name => 'tls6')
    or BAIL_OUT('backend');
my $be4 = $t->backend(mode => 'http', name => 'be4') or BAIL_OUT('backend');
my ($p, $pp, $adm, $cap6, $cap4) = map { $t->port } 1 .. 5;

my $ca = "$certs/ca.pem";
sub pt { my ($up, $v) = @_; return { server_names => ["$up$v.test"], mode => 'passthrough',
                                       upstream => $up, proxy_protocol_out => $v } }
$t->write_conf({
    admin => { listen => "[::1]:$adm" },
    certificates => { a => { cert => "$certs/a.test.pem", key => "$certs/a.test.key" } },
    upstreams => {
        up6  => { servers => ["[::1]:$be6->{port}"],
                  plaintext => { accepted_risk => 'test backend on loopback' } },
        up4  => { servers => ["127.0.0.1:$be4->{port}"],
                  plaintext => { accepted_risk => 'test backend on loopback' } },
        tls6 => { servers => ["[::1]:$tls6->{port}"], tls => { server_name => '::1', ca => $ca } },
        tlsx => { servers => ["[::1]:$tls6->{port}"], tls => { server_name => '::2', ca => $ca } },
        c6   => { servers => ["[::1]:$cap6"] },
        c4   => { servers => ["127.0.0.1:$cap4"] },
    },
    listeners => [
        { listen => ["0.0.0.0:$p", "[::]:$p"], sites => ['a', 'c6v1', 'c6v2', 'c4v2'],
          default_site => 'a' },
        { name => 'pp', listen => ["127.0.0.1:$pp", "[::1]:$pp"], sites => ['a', 'c6v2'],
          default_site => 'a', proxy_protocol => JSON::PP::true },
    ],
    sites => {
        a => { server_names => ['a.test'], mode => 'terminate', tls => { certificates => ['a'] },
               routes => [
                   { match => { path_prefix => '/v6/' }, upstream => 'up6' },
                   { match => { path_prefix => '/tls6/' }, upstream => 'tls6' },
                   { match => { path_prefix => '/tlsx/' }, upstream => 'tlsx' },
                   { match => { path_prefix => '/' }, upstream => 'up4' },
               ] },
        c6v1 => pt('c6', 'v1'), c6v2 => pt('c6', 'v2'), c4v2 => pt('c4', 'v2'),
    },
});
$t->run or BAIL_OUT('hamlyn did not start');

like($t->error_log, qr/listening on 0\.0\.0\.0:$p, \[::\]:$p, 127\.0\.0\.1:$pp, \[::1\]:$pp/,
     '0.0.0.0:P and [::]:P both bound (IPv6-only sockets)');

sub hdr {
    my ($j, $name) = @_;
    my @v = map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $j->{headers} // [] };
    return join("\n", @v);
}
sub get {
    my ($ip, $path, @a) = @_;
    my $host = $ip =~ /:/ ? "[$ip]" : $ip;
    my ($code, $body) = $t->curl('--cacert', $ca, '--resolve', "a.test:$p:$host",
                                 @a, "https://a.test:$p$path");
    return ($code, eval { decode_json($body) } // {});
}

# --- terminate: v6 and v4 clients, v6 and v4 upstreams ----------------------
my ($code, $j) = get('::1', '/v6/x');
is($code, 200, 'v6 client to a [::1] plaintext upstream');
is(hdr($j, 'X-Forwarded-For'), '::1', '... X-Forwarded-For: the address alone, no brackets or port');
is(hdr($j, 'Forwarded'), "for=\"[::1]\";proto=https;host=\"a.test:$p\"",
   '... Forwarded: for="[::1]" (RFC 7239 quoting)');
is(hdr($j, 'X-Real-IP'), '', '... no X-Real-IP');
($code, $j) = get('127.0.0.1', '/v6/x');
is($code, 200, 'v4 client to a [::1] upstream');
is(hdr($j, 'X-Forwarded-For'), '127.0.0.1', '... X-Forwarded-For 127.0.0.1');
like(hdr($j, 'Forwarded'), qr/^for=127\.0\.0\.1;proto=https;/, '... Forwarded for=127.0.0.1 unquoted');
($code, $j) = get('::1', '/v4');
is($code, 200, 'v6 client to a 127.0.0.1 upstream');
is(hdr($j, 'X-Forwarded-For'), '::1', '... X-Forwarded-For ::1');

($code, $j) = get('::1', '/tls6/x');
is($code, 200, 'TLS upstream on [::1], server_name "::1" verified against the IP SAN');
is($j->{sni}, undef, '... and not sent as SNI');
($code) = get('::1', '/tlsx/x');
is($code, 502, 'server_name "::2": the certificate does not name it: 502');
ok($t->wait_error_log(qr/peer=\[::1\]:\d+ sni=a\.test: upstream "tlsx" \[::1\]:$tls6->{port}: .*IP address mismatch/),
   '... logged with the IPv6 peer and upstream in brackets');

$t->wait_access_log(7);
my @v6 = grep { ($_->{path} // '') eq '/v6/x' } @{ $t->access_log };
ok((grep { ($_->{client} // '') =~ /^\[::1\]:\d+$/ && ($_->{upstream} // '') eq "[::1]:$be6->{port}" } @v6),
   'access log: client "[::1]:port", upstream "[::1]:port"');
ok((grep { ($_->{client} // '') =~ /^127\.0\.0\.1:\d+$/ } @v6), 'access log: client "127.0.0.1:port"');

# --- admin on [::1] ---------------------------------------------------------
($code, my $body) = $t->curl('-g', "http://[::1]:$adm/metrics");
is($code, 200, 'admin listener on [::1]');
like($body, qr/\{listener="0\.0\.0\.0:$p",outcome="ok"\} [1-9]/,
     '... metrics labelled with the unnamed listener\'s first address');

# --- PROXY protocol out and in: a Python driver with capture upstreams ------
my $driver = $t->dir . '/ipv6.py';
open my $fh, '>', $driver or die;
print $fh <<'PY';
import json, socket, ssl, struct, sys, threading, time
p, pp, cap6, cap4 = (int(x) for x in sys.argv[1:5])
SIG = b'\r\n\r\n\x00\r\nQUIT\n'
got = {}
def cap(fam, host, port, key):
    s = socket.socket(fam)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    s.settimeout(30)
    while True:
        try:
            c, _ = s.accept()
        except Exception:
            return
        c.settimeout(1)
        data = b''
        try:
            while len(data) < 64:      # the PROXY header comes first
                d = c.recv(4096)
                if not d:
                    break
                data += d
        except Exception:
            pass
        got.setdefault(key, []).append(data)
        c.close()
for a in ((socket.AF_INET6, '::1', cap6, 'c6'), (socket.AF_INET, '127.0.0.1', cap4, 'c4')):
    threading.Thread(target=cap, args=a, daemon=True).start()
time.sleep(0.2)
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def hello(host, port, sni, pre=b''):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(pre)
    try:
        t = ctx.wrap_socket(s, server_hostname=sni)
        t.close()
    except Exception:
        pass
    s.close()
def take(key):
    for _ in range(100):
        if got.get(key):
            return got[key].pop(0)
        time.sleep(0.05)
    return b''
def get(host, port, pre):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(pre)
    t = ctx.wrap_socket(s, server_hostname='a.test')
    t.sendall(b'GET /v6/pp HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n')
    data = b''
    while True:
        d = t.recv(65536)
        if not d:
            break
        data += d
    head, _, body = data.partition(b'\r\n\r\n')
    return {'status': head.split(b' ')[1].decode(), 'json': json.loads(body.split(b'\n')[0])}
def report(name, v):
    print(json.dumps({'name': name, 'v': v.hex() if isinstance(v, bytes) else v}), flush=True)

hello('::1', p, 'c6v2.test');       report('v6 client, v6 upstream, v2', take('c6'))
hello('127.0.0.1', p, 'c6v2.test'); report('v4 client, v6 upstream, v2', take('c6'))
hello('::1', p, 'c4v2.test');       report('v6 client, v4 upstream, v2', take('c4'))
hello('::1', p, 'c6v1.test');       report('v6 client, v6 upstream, v1', take('c6'))
v1 = b'PROXY TCP6 2001:db8::1 2001:db8::2 40001 443\r\n'
b = (socket.inet_pton(socket.AF_INET6, '2001:db8::5') + socket.inet_pton(socket.AF_INET6, '2001:db8::6')
     + struct.pack('>HH', 40002, 443))
v2 = SIG + b'\x21\x21' + struct.pack('>H', len(b)) + b
report('in v1 TCP6 on a v4 socket', get('127.0.0.1', pp, v1))
report('in v2 AF_INET6 on a v6 socket', get('::1', pp, v2))
hello('127.0.0.1', pp, 'c6v2.test', v1); report('in v1 TCP6 on a v4 socket, out v2', take('c6'))
PY
close $fh;
my %r;
open my $ph, '-|', 'python3', $driver, $p, $pp, $cap6, $cap4 or die "python3: $!";
while (my $line = <$ph>) {
    my $x = eval { decode_json($line) } or next;
    $r{ $x->{name} } = $x->{v};
}
close $ph;

sub v2hex {
    my ($fam, $src, $dst, $sport, $dport) = @_;
    my $blk = $fam == 6
        ? (Socket::inet_pton(Socket::AF_INET6(), $src) . Socket::inet_pton(Socket::AF_INET6(), $dst))
        : (Socket::inet_aton($src) . Socket::inet_aton($dst));
    $blk .= pack('nn', $sport, $dport) if defined $sport;
    return unpack('H*', "\r\n\r\n\0\r\nQUIT\n" . ($fam == 6 ? "\x21\x21" : "\x21\x11")
                        . pack('n', length($blk) + (defined $sport ? 0 : 4)) . $blk);
}
use Socket ();
my $sig6 = v2hex(6, '::1', '::1');
my $sig4 = v2hex(4, '127.0.0.1', '127.0.0.1');
# the source port differs per connection: compare everything but it
like($r{'v6 client, v6 upstream, v2'} // '', qr/^\Q$sig6\E[0-9a-f]{4}\Q${\ sprintf('%04x', $p)}\E16/,
     'PROXY v2 out, v6 client: AF_INET6, 36-byte block, ::1 -> ::1, then the ClientHello');
like($r{'v4 client, v6 upstream, v2'} // '', qr/^\Q$sig4\E[0-9a-f]{4}\Q${\ sprintf('%04x', $p)}\E16/,
     'PROXY v2 out, v4 client to a v6 upstream: AF_INET with both addresses IPv4');
like($r{'v6 client, v4 upstream, v2'} // '', qr/^\Q$sig6\E[0-9a-f]{4}\Q${\ sprintf('%04x', $p)}\E16/,
     'PROXY v2 out, v6 client to a v4 upstream: AF_INET6 with both addresses IPv6');
like(pack('H*', $r{'v6 client, v6 upstream, v1'} // ''), qr/^PROXY TCP6 ::1 ::1 \d+ $p\r\n\x16/,
     'PROXY v1 out, v6 client: "PROXY TCP6 ::1 ::1 SPORT PORT"');
my $in1 = $r{'in v1 TCP6 on a v4 socket'} // {};
is($in1->{status}, 200, 'PROXY v1 TCP6 in on a 127.0.0.1 socket: served');
is(hdr($in1->{json}, 'X-Forwarded-For'), '2001:db8::1', '... X-Forwarded-For is the PROXY source');
like(hdr($in1->{json}, 'Forwarded'), qr/^for="\[2001:db8::1\]";/, '... Forwarded for="[2001:db8::1]"');
my $in2 = $r{'in v2 AF_INET6 on a v6 socket'} // {};
is(hdr($in2->{json}, 'X-Forwarded-For'), '2001:db8::5', 'PROXY v2 AF_INET6 in: X-Forwarded-For is its source');
my $full = v2hex(6, '2001:db8::1', '2001:db8::2', 40001, 443);
like($r{'in v1 TCP6 on a v4 socket, out v2'} // '', qr/^\Q$full\E16/,
   'PROXY v1 TCP6 in on a v4 socket, v2 out: AF_INET6 with the PROXY addresses and ports');
my @pp = grep { ($_->{listener} // '') eq 'pp' } @{ $t->access_log };
ok((grep { ($_->{client} // '') eq '[2001:db8::1]:40001' } @pp),
   'access log: the PROXY source as "[2001:db8::1]:40001"');

done_testing;
