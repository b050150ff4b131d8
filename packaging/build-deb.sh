#!/bin/sh
# build-deb.sh ARCH BINARY VERSION OUTDIR: the edged Debian package for
# ARCH (arm64, armhf or amd64) around BINARY, written to
# OUTDIR/edged_<debian version>_ARCH.deb with dpkg-deb alone (no nfpm, no
# debhelper, no fakeroot: --root-owner-group makes every file root:root).
# `make deb` calls it once per architecture; VERSION is the Makefile's (git
# describe), turned into a Debian version by debversion.sh.
#
# Environment:
#   SOURCE_DATE_EPOCH  the time stamped on every file (default: the last
#                      commit's), so that the same inputs give the same bytes
#   DEB_MAINTAINER     the Maintainer field
#   GO                 the go command (for the licenses of the linked modules)
#   DEB_XZ_LEVEL       the xz compression level, 0-9 (default 6, dpkg's)
set -eu

if [ $# -ne 4 ]; then
	echo "usage: build-deb.sh ARCH BINARY VERSION OUTDIR" >&2
	exit 2
fi
arch=$1 bin=$2 version=$3 outdir=$4
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
GO=${GO:-go}
maintainer=${DEB_MAINTAINER:-edged maintainers <edged@localhost>}
level=${DEB_XZ_LEVEL:-6}
pkg=${DEB_PACKAGE:-edged}

case $arch in
arm64 | armhf | amd64) ;;
*)
	echo "build-deb.sh: unknown architecture $arch (arm64, armhf or amd64)" >&2
	exit 2
	;;
esac
case $pkg in
edged) relations= ;;
edged-kafka) relations="Provides: edged
Conflicts: edged
Replaces: edged
" ;;
*)
	echo "build-deb.sh: unknown package $pkg (edged or edged-kafka)" >&2
	exit 2
	;;
esac
case $level in
[0-9]) ;;
*)
	echo "build-deb.sh: DEB_XZ_LEVEL=$level: want 0 to 9" >&2
	exit 2
	;;
esac
if ! command -v dpkg-deb >/dev/null; then
	echo "build-deb.sh: dpkg-deb not found (apt-get install dpkg)" >&2
	exit 1
fi
if [ ! -x "$bin" ]; then
	echo "build-deb.sh: $bin: no such executable" >&2
	exit 1
fi

count=$(git -C "$top" rev-list --count HEAD 2>/dev/null || true)
debversion=$("$here/debversion.sh" "$version" "$count")
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

mkdir -p "$outdir"
stage=$(mktemp -d "${TMPDIR:-/tmp}/edged-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root=$stage/root
umask 022

# The files. Modes are set here, owners by --root-owner-group.
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
	"$root/etc/edged" "$root/usr/share/doc/edged"
install -m 0755 "$bin" "$root/usr/bin/edged"
install -m 0644 "$here/edged.service" "$root/lib/systemd/system/edged.service"
# The config may hold secrets: 0640, and postinst gives it to group edged.
install -m 0640 "$here/edged.toml" "$root/etc/edged/edged.toml"
install -m 0600 "$here/edged.env" "$root/etc/edged/edged.env"
install -m 0644 "$top/README.md" "$root/usr/share/doc/edged/README.md"
install -m 0644 "$top/docs/install-pi.md" "$root/usr/share/doc/edged/install-pi.md"
install -m 0644 "$top/configs/example.toml" "$root/usr/share/doc/edged/example.toml"
for f in postinst prerm postrm; do
	install -m 0755 "$here/debian/$f" "$root/DEBIAN/$f"
done

# copyright: edged's own notice, then the licenses of the Go standard
# library and of every module linked into the binary (go version -m).
{
	cat <<EOF
edged: an event-time stream processor for IoT gateways.

This package holds one statically linked Go binary. Besides edged's own
code it contains the Go standard library and the Go modules listed below;
their licenses follow, each as its module ships it.

edged
-----
Copyright: the edged authors.
License: see the project's source repository.

EOF
	goroot=$("$GO" env GOROOT)
	modcache=$("$GO" env GOMODCACHE)
	printf '%s\n%s\n\n' "The Go standard library ($("$GO" version "$bin" | sed 's/^.*: //'))" "------------------------------"
	for lic in LICENSE PATENTS; do
		if [ -f "$goroot/$lic" ]; then
			printf '%s:\n\n' "$lic"
			cat "$goroot/$lic"
			echo
		fi
	done
	"$GO" version -m "$bin" | awk '$1 == "dep" { print $2, $3 }' | while read -r mod modver; do
		# The module cache escapes capitals: BurntSushi -> !burnt!sushi.
		dir=$modcache/$(printf '%s' "$mod" | sed 's/[A-Z]/!\L&/g')@$modver
		printf '%s %s\n%s\n\n' "$mod" "$modver" "------------------------------"
		found=
		for f in $(ls "$dir" 2>/dev/null | grep -Ei '^(licen[cs]e|copying|notice|patents|edl-v10)' || true); do
			printf '%s:\n\n' "$f"
			cat "$dir/$f"
			echo
			found=1
		done
		if [ -z "$found" ]; then
			echo "build-deb.sh: no license file for $mod $modver in $dir" >&2
			exit 1
		fi
	done
} >"$root/usr/share/doc/edged/copyright"
chmod 0644 "$root/usr/share/doc/edged/copyright"

# Every file in /etc is a conffile: an upgrade keeps local changes (and
# asks when the packaged file changed too).
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
chmod 0644 "$root/DEBIAN/conffiles"

# Installed-Size in KiB: the files' sizes, not the disk blocks of this
# machine's file system, so that it does not vary from one build to another.
size=$(find "$root" -path "$root/DEBIAN" -prune -o -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", (s + 1023) / 1024 }')
cat >"$root/DEBIAN/control" <<EOF
Package: $pkg
${relations}Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: passwd
Section: net
Priority: optional
Description: event-time stream processor for IoT gateways
 edged reads sensors (serial lines, MQTT, files), computes event-time
 windows with watermarks and allowed lateness, detects anomalies, and sends
 window records and alerts upstream over MQTT, keeping them in a durable
 outbox while the link is down. One static binary, for the Raspberry Pi
 and other Linux gateways.
 .
 This package runs it as the systemd service edged.service, as the system
 user edged, with its configuration in /etc/edged/edged.toml and its data
 in /var/lib/edged. Logs go to the journal.
EOF
if [ "$pkg" = edged-kafka ]; then
	cat >>"$root/DEBIAN/control" <<EOF
 .
 This build also sends records to Kafka (type = "kafka" outputs).
EOF
fi
chmod 0644 "$root/DEBIAN/control"

# Reproducible: one timestamp on every file; dpkg-deb sorts the entries and
# stamps the archive members with SOURCE_DATE_EPOCH.
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

out=$outdir/${pkg}_${debversion}_$arch.deb
dpkg-deb --root-owner-group -Zxz -z"$level" --build "$root" "$out" >/dev/null
echo "$out"
