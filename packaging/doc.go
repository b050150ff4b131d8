// Package packaging holds the Debian packaging of edged: the systemd unit
// (edged.service), the default config (edged.toml, installed as
// /etc/edged/edged.toml), the secrets file (edged.env), the maintainer
// scripts (debian/) and the script that builds a .deb with dpkg-deb alone
// (build-deb.sh, run by `make deb`). There is no Go code here: the tests
// build the packages and check what they contain.
package packaging
