//go:build race

package rooms

// raceEnabled skips allocation counts: the race detector allocates on its
// own account.
const raceEnabled = true
