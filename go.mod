module github.com/edged/edged

go 1.26

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/tinylib/msgp v1.6.5
	pgregory.net/rapid v1.3.0
)

require (
	github.com/philhofer/fwd v1.2.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)
