//go:build !linux

package simulate

import (
	"errors"
	"os"
)

// OpenPTY is available on Linux only.
func OpenPTY() (master, slave *os.File, path string, err error) {
	return nil, nil, "", errors.New("creating a pseudo-terminal is supported on Linux only: create one (e.g. with socat) and pass its path")
}
