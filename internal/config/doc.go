// Package config loads, checks and prints edged's TOML configuration.
//
// Load (or Parse, for text already in memory) decodes the file, substitutes
// environment variables, fills in defaults and checks every rule, and
// returns either a ready Config or an *Error listing every problem found,
// not just the first. The Config types, their TOML keys and their defaults
// are documented in types.go; the keys of SEMANTICS section 8 are the
// stable core and keep their meaning across releases.
//
// # Problems
//
// Each problem names the file, the line (and, for TOML syntax errors, the
// column), the key path and what to write instead:
//
//	edged.toml:12: window[1] "temp_10s": size: invalid duration "10x": use a number with a unit, e.g. "10s", "1m", "500ms", "1d"
//	edged.toml:14: window[1] "temp_10s": unknown key "sise" (did you mean "size"? allowed: name, type, size, ...)
//	edged.toml:3: pipeline: max_out_of_orderness: expected a duration string such as "2s", got integer 2
//
// Elements of arrays and of [[array]] tables are numbered from 0 in file
// order and shown with their name. Unknown keys are errors. Problems are
// sorted by line; a key that already has a problem is not checked further,
// so one mistake gives one problem.
//
// # Values
//
// Durations are strings with units ("500ms", "10s", "1m30s", "1d"); event-time
// durations (window sizes, lateness, out-of-orderness) must be whole
// milliseconds. Sizes are strings such as "256MiB" or integers (bytes).
// A float key also takes an integer (above = 80). A detector's tolerance is
// a number in the series' units (tolerance = 0.5) or a percentage of its
// level (tolerance = "2%").
//
// # Environment variables
//
// Every string value, including inside arrays, may use ${VAR}, replaced by
// the environment variable VAR, or ${VAR:-default}, which gives default when
// VAR is unset or empty. A ${VAR} whose variable is unset is a problem that
// names the variable and the key. Write $${ for a literal ${. Substitution
// happens after TOML parsing, so it cannot change the file's structure.
// The values of secret keys (password, token, secret, or names ending in
// _password, _token or _secret) never appear in problems or in Effective.
//
// # Concurrency
//
// Load and Parse may be called from several goroutines. A Config is plain
// data: read it from as many goroutines as needed, but do not change it
// while others read it.
package config
