//go:build race

package fec

const raceEnabled = true
