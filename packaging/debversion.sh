#!/bin/sh
# debversion.sh VERSION [COUNT]: the Debian package version for edged's
# VERSION (the Makefile's, from git describe --tags --always --dirty).
#
#   v1.2.3                    -> 1.2.3
#   v1.2.3-rc1                -> 1.2.3~rc1          (sorts before 1.2.3)
#   v1.2.3-4-gabcdef0         -> 1.2.3+4.gabcdef0   (4 commits after v1.2.3)
#   v1.2.3-4-gabcdef0-dirty   -> 1.2.3+4.gabcdef0.dirty
#   v1.2.3-dirty              -> 1.2.3+0.dirty      (after 1.2.3, before 1.2.3+1...)
#   abcdef0 (no tag yet)      -> 0.0.0+git<COUNT>.abcdef0
#   abcdef0-dirty             -> 0.0.0+git<COUNT>.abcdef0.dirty
#   786cfa2 (no tag, a commit that starts with a digit) -> 0.0.0+git<COUNT>.786cfa2
#
# A tag is v<digit>... or <digits>.<anything> (1.2.3): a commit name has no
# "." and no "v", so "786cfa2" is not taken for version 786cfa2.
#
# COUNT is the number of commits (git rev-list --count HEAD), so that
# untagged builds of later commits sort after earlier ones and apt
# upgrades from one to the next; it is left out when empty. The result
# has no Debian revision (no "-"), as a native package.
set -eu

v=${1:?usage: debversion.sh VERSION [COUNT]}
count=${2:-}

dirty=
case $v in
*-dirty)
	dirty=dirty
	v=${v%-dirty}
	;;
esac

# join A B: A and B with "." between them, when both are set.
join() {
	if [ -n "$1" ] && [ -n "$2" ]; then printf '%s.%s' "$1" "$2"; else printf '%s%s' "$1" "$2"; fi
}

case $v in
v[0-9]* | [0-9]*.*)
	v=${v#v}
	# git describe's "-N-gSHA": commits after the tag.
	after=$(printf '%s\n' "$v" | sed -n 's/^.*-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)$/\1.g\2/p')
	if [ -n "$after" ]; then
		v=$(printf '%s\n' "$v" | sed 's/-[0-9][0-9]*-g[0-9a-f][0-9a-f]*$//')
	fi
	# What is left of "-" is a pre-release (1.2.3-rc1): it sorts before the release.
	v=$(printf '%s\n' "$v" | tr -- - '~')
	# A dirty build of the tag itself counts as 0 commits after it, so that
	# it sorts before the next commit's build (+1.g...), as it was made:
	# "+dirty" would sort after every "+N.g..." (letters after digits).
	if [ -n "$dirty" ] && [ -z "$after" ]; then
		after=0
	fi
	local_part=$(join "$after" "$dirty")
	if [ -n "$local_part" ]; then
		v="$v+$local_part"
	fi
	;;
*)
	# No tag: an untagged commit (or "dev" outside git).
	sha=$(printf '%s\n' "$v" | tr -c 'A-Za-z0-9.\n' '.')
	if [ -n "$count" ]; then
		sha="$count.$sha"
	fi
	v="0.0.0+git$(join "$sha" "$dirty")"
	;;
esac

# A Debian upstream version: starts with a digit; letters, digits, . + ~ only.
case $v in
[0-9]*) ;;
*)
	echo "debversion.sh: cannot make a Debian version of $1" >&2
	exit 1
	;;
esac
if printf '%s\n' "$v" | grep -q '[^A-Za-z0-9.+~]'; then
	echo "debversion.sh: cannot make a Debian version of $1 (got $v)" >&2
	exit 1
fi
printf '%s\n' "$v"
