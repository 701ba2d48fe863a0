module meshd

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/flynn/noise v1.1.0
	github.com/klauspost/reedsolomon v1.14.2
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.62.0
	golang.org/x/sys v0.49.0
)

require github.com/klauspost/cpuid/v2 v2.3.0 // indirect
