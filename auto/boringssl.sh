#!/bin/sh
# auto/boringssl.sh SRC OUT [CC] [CXX]
#
# Builds BoringSSL's libcrypto.a and libssl.a from the Debian source package
# android-platform-external-boringssl (unpacked in SRC) into OUT, without
# OPENSSL_SMALL and at -O2.  Debian's binary package is built with
# OPENSSL_SMALL, which makes P-256 and Ed25519 several times slower.
# The list of sources is Debian's own debian/sources.mk.
set -eu
src=$1
out=$2
cc=${3:-cc}
cxx=${4:-c++}
jobs=${HM_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}

case $(uname -m) in
    x86_64)  arch=linux_x86_64_sources ;;
    aarch64) arch=linux_aarch64_sources ;;
    i?86)    arch=linux_x86_sources ;;
    *)       arch= ;;
esac

mkdir -p "$out/obj"
cat > "$out/build.mk" <<MK
include $src/debian/sources.mk
SRC := $src
OUT := $out
CRYPTO := \$(crypto_sources) \$($arch)
SSL := \$(ssl_sources)
CRYPTO_OBJ := \$(patsubst %,\$(OUT)/obj/%.o,\$(CRYPTO))
SSL_OBJ := \$(patsubst %,\$(OUT)/obj/%.o,\$(SSL))
FLAGS := -O2 -g -fPIC -DNDEBUG -DBORINGSSL_IMPLEMENTATION \\
    -fno-strict-aliasing -fvisibility=hidden -Wa,--noexecstack \\
    -I\$(SRC)/src/include -I\$(SRC)/src/crypto
all: \$(OUT)/lib/libcrypto.a \$(OUT)/lib/libssl.a
\$(OUT)/lib/libcrypto.a: \$(CRYPTO_OBJ)
	@mkdir -p \$(@D)
	rm -f \$@ && ar rcs \$@ \$^
\$(OUT)/lib/libssl.a: \$(SSL_OBJ)
	@mkdir -p \$(@D)
	rm -f \$@ && ar rcs \$@ \$^
\$(OUT)/obj/%.c.o: \$(SRC)/%.c
	@mkdir -p \$(@D)
	$cc -std=gnu11 \$(FLAGS) -c -o \$@ \$<
\$(OUT)/obj/%.S.o: \$(SRC)/%.S
	@mkdir -p \$(@D)
	$cc \$(FLAGS) -c -o \$@ \$<
\$(OUT)/obj/%.cc.o: \$(SRC)/%.cc
	@mkdir -p \$(@D)
	$cxx -std=gnu++17 -fno-exceptions -fno-rtti \$(FLAGS) -c -o \$@ \$<
MK
make -s -j"$jobs" -f "$out/build.mk" all
rm -rf "$out/include"
cp -r "$src/src/include" "$out/include"
