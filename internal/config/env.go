package config

import (
	"errors"
	"fmt"
	"strings"
)

// expand replaces ${VAR} and ${VAR:-default} in s with the value of the
// environment variable VAR, looked up with lookup. ${VAR:-default} gives
// default when VAR is unset or empty; ${VAR} with VAR unset is an error.
// "$${" stands for a literal "${". Other dollar signs are kept as they are.
// The default runs to the first "}" and is not expanded itself.
//
// Errors never contain a variable's value, only its name.
func expand(s string, lookup func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`unterminated "${": close it with "}", or write "$${" for a literal "${"`)
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !isEnvName(name) {
				return "", fmt.Errorf(`invalid variable reference "${%s}": use ${NAME} or ${NAME:-default}, where NAME has letters, digits and "_" and does not start with a digit (write "$${" for a literal "${")`, expr)
			}
			v, ok := lookup(name)
			switch {
			case hasDef && (!ok || v == ""):
				v = def
			case !ok:
				return "", fmt.Errorf("environment variable %s is not set: set it, or give a default with ${%s:-default}", name, name)
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}

// isEnvName reports whether s is a shell-style variable name.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// escapeDollar protects every "${" in s so that expand gives s back.
func escapeDollar(s string) string {
	return strings.ReplaceAll(s, "${", "$${")
}

// isSecret reports whether a key holds a secret whose value must never be
// printed: password, token and secret, also with a prefix such as
// api_token or client_secret.
func isSecret(key string) bool {
	k := strings.ToLower(key)
	for _, s := range []string{"password", "token", "secret"} {
		if k == s || strings.HasSuffix(k, "_"+s) {
			return true
		}
	}
	return false
}
