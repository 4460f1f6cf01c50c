#!/usr/bin/env bash
# make install: the product's files into a system (or a staging root for a package).
#
#   make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc] [UNITDIR=PREFIX/lib/systemd/system]
#
#   PREFIX/bin/                  the production programs (no simulators, no mktoken)
#   PREFIX/share/bus/            the release tree the programs' relative defaults resolve against
#                                (config/, sql/, web assets, message templates): the units'
#                                WorkingDirectory
#   PREFIX/share/doc/bus/        the documentation
#   UNITDIR/                     systemd units, paths rewritten for PREFIX
#   SYSCONFDIR/bus/              example configuration: <process>.json ({}), bus.env and
#                                secrets.env (0600) with every setting commented out; an existing
#                                file is never overwritten
#
# DESTDIR is prepended to every path written and to none written into the files, as packagers
# expect. Nothing here starts or enables a unit.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
BINDIR=${BINDIR:-bin}
SHARE=$PREFIX/share/bus

# The production programs; each has a unit in docs/ops/systemd but busctl (a command).
PROGRAMS=(bus-broker bus-publisher bus-dispatcher busctl ipcheck history guard notify campaign)
# What the programs read at run time, relative to the release tree.
TREE=(config sql notify/templates lib/web services/history/web services/guard/web
      bus/dispatcher/web)

for p in "${PROGRAMS[@]}"; do
  [ -x "$BINDIR/$p" ] || { echo "install: $BINDIR/$p is missing: run make first" >&2; exit 1; }
done

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$SHARE" "$DESTDIR$UNITDIR" \
  "$DESTDIR$SYSCONFDIR/bus" "$DESTDIR$PREFIX/share/doc/bus"
for p in "${PROGRAMS[@]}"; do
  install -m 0755 "$BINDIR/$p" "$DESTDIR$PREFIX/bin/$p"
done

# The release tree: only files git knows when in a checkout (no var/, no node_modules).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files -- "${TREE[@]}")
else
  files=$(find "${TREE[@]}" -type f)
fi
for f in $files; do
  install -D -m 0644 "$f" "$DESTDIR$SHARE/$f"
done
cp -r docs/. "$DESTDIR$PREFIX/share/doc/bus/"
# The API specs refer to the event schemas by their place in the repository
# (docs/api/../../config/schema); installed, the schemas are in the release tree beside the docs.
sed -i 's|"\.\./\.\./config/schema/|"../../../bus/config/schema/|g' \
  "$DESTDIR$PREFIX"/share/doc/bus/api/*.yaml
find "$DESTDIR$PREFIX/share/doc/bus" -type d -exec chmod 0755 {} + 
find "$DESTDIR$PREFIX/share/doc/bus" -type f -exec chmod 0644 {} +

# Units: the repository's point at /usr/local/bin and /opt/bus.
for u in docs/ops/systemd/*.service; do
  sed -e "s|/usr/local/bin/|$PREFIX/bin/|g" -e "s|/opt/bus|$SHARE|g" \
      -e "s|/etc/bus/|$SYSCONFDIR/bus/|g" "$u" > "$DESTDIR$UNITDIR/$(basename "$u")"
  chmod 0644 "$DESTDIR$UNITDIR/$(basename "$u")"
done

# Example configuration, never over an operator's.
example() { # example FILE MODE: stdin into FILE unless it exists
  local dst=$DESTDIR$SYSCONFDIR/bus/$1
  if [ -e "$dst" ]; then cat >/dev/null; return; fi
  cat > "$dst"
  chmod "$2" "$dst"
}
for u in docs/ops/systemd/*.service; do
  case $u in *@.service) continue ;; esac # templates: one file per instance, named by the operator
  echo '{}' | example "$(basename "$u" .service).json" 0644
done
example bus.env 0644 <<'ENV'
# Settings every unit reads first (docs/ops/README.md "Configure"). Not secret.
#BUS_BOOTSTRAP=kafka-1.internal:9092,kafka-2.internal:9092
#PUBLISHER_LISTEN=0.0.0.0:8080
#DISPATCHER_LISTEN=127.0.0.1:8081
ENV
example secrets.env 0600 <<'ENV'
# Secrets (docs/security.md): at least 32 random bytes each, e.g. `openssl rand -base64 32`.
# Root-only: systemd reads this file before it drops privileges.
#DATABASE_URL=postgresql://bus:PASSWORD@db.internal:5432/bus
#AUTH_SECRET=
#BUS_SIGNING_SECRET=
#BUS_ADMIN_TOKEN=
#CODE_SEAL_KEYS=kid:secret                    # guard seals codes, notify opens them
#GUARD_STATUS_TOKENS=login-servers:<sha256 hex of their token>
#GUARD_CONTACTS_TOKENS=notify:<sha256 hex of NOTIFY_GUARD_CONTACTS_TOKEN>
#NOTIFY_GUARD_CONTACTS_TOKEN=
#NOTIFY_SMTP_URL=smtps://user:password@smtp.internal:465
ENV
echo "install: $PREFIX/bin, $SHARE, $UNITDIR and $SYSCONFDIR/bus under '${DESTDIR:-/}'"
