#!/usr/bin/env bash
# make deb: a Debian package of the production programs, built with dpkg's own tools.
#
#   build/deb/bus-account-security_<version>_<arch>.deb
#
# Contents: make install with PREFIX=/usr, SYSCONFDIR=/etc, UNITDIR=/lib/systemd/system; every
# file under /etc is a conffile (an operator's edits survive upgrades); Depends computed from
# the binaries by dpkg-shlibdeps; maintainer scripts in tools/deb/ enable the units without
# starting them. Version: the git tag without its "v" when HEAD is tagged, else
# 0~git<commit date>.<short hash>.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build/deb
STAGE=$OUT/root
PKG=bus-account-security

if tag=$(git describe --tags --exact-match 2>/dev/null); then
  version=${tag#v}
else
  version="0~git$(git log -1 --format=%cd --date=format:%Y%m%d%H%M%S).$(git rev-parse --short HEAD)"
fi
arch=$(dpkg --print-architecture)

rm -rf "$STAGE"
mkdir -p "$STAGE/DEBIAN"
PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system DESTDIR="$PWD/$STAGE" tools/install.sh \
  >/dev/null

# Shared-library dependencies of the programs, as dpkg-shlibdeps computes them (it wants a
# debian/control to read: a minimal one in a scratch folder).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" > "$scratch/debian/control"
bins=()
for b in "$STAGE"/usr/bin/*; do bins+=("-e$PWD/$b"); done
depends=$(cd "$scratch" && dpkg-shlibdeps -O "${bins[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "mkdeb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

size=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: $PKG
Version: $version
Architecture: $arch
Maintainer: Account security team <bus@example.invalid>
Installed-Size: $size
Depends: $depends
Recommends: postgresql (>= 15)
Section: net
Priority: optional
Homepage: https://example.invalid/bus
Description: account security for game logins on an HTTP/Kafka event bus
 Login servers post login events over HTTP; the bus (publisher, dispatcher and
 an embedded Kafka-protocol broker) carries them to services that resolve the
 country of each login, keep the player's login history in PostgreSQL, apply
 the player's policy (notify, kick, block abroad, lock) and send notifications.
 Units are installed enabled but not started: configure /etc/bus first.
CONTROL
(cd "$STAGE" && find etc -type f | sed 's|^|/|' | sort) > "$STAGE/DEBIAN/conffiles"
for s in postinst prerm postrm; do
  install -m 0755 "tools/deb/$s" "$STAGE/DEBIAN/$s"
done
deb=$OUT/${PKG}_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$deb" >/dev/null
echo "$deb"
