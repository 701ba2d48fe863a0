//go:build race

package fec

// raceEnabled skips allocation counts: the race detector allocates on its
// own account.
const raceEnabled = true
