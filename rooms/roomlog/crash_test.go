package roomlog_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"meshd/rooms/roomlog"
)

// crashDir, set in the environment, makes TestKill9 the child that
// appends to the log in that directory until it is killed.
const crashDir = "ROOMLOG_CRASH_DIR"

func crashOptions(dir string) roomlog.Options {
	return roomlog.Options{Dir: dir, Keep: 500, SegmentBytes: 8 << 10}
}

// TestKill9 kills a process appending to a log with SIGKILL, at a random
// moment, and checks that the log it leaves holds a gap-free run of what
// was appended, up to at least what the child reported, and that the next
// child goes on numbering after it.
func TestKill9(t *testing.T) {
	if dir := os.Getenv(crashDir); dir != "" {
		crashChild(dir)
		return
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("cannot re-execute the test binary: %v", err)
	}
	dir := t.TempDir()
	var prev uint64 // Next after the previous round
	for round := range 20 {
		cmd := exec.Command(exe, "-test.run=^TestKill9$")
		cmd.Env = append(os.Environ(), crashDir+"="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The child prints where its log starts, then, now and again, how
		// many batches it has appended and where its log ends: Append has
		// returned for all of them.
		sc := bufio.NewScanner(out)
		var start uint64
		if !sc.Scan() {
			t.Fatalf("round %d: child printed nothing", round)
		}
		fmt.Sscanf(sc.Text(), "start %d", &start)
		if start != max(prev, 1) {
			t.Errorf("round %d: child started numbering at %d, want %d", round, start, max(prev, 1))
		}
		threshold := 200 + rand.IntN(3000)
		var appended int
		var reported uint64
		for appended < threshold && sc.Scan() {
			fmt.Sscanf(sc.Text(), "%d %d", &appended, &reported)
		}
		cmd.Process.Kill()
		err = cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child ended with %v before it was killed", round, err)
		}

		l, err := roomlog.Open(crashOptions(dir))
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		got := readAll(t, l, 0) // checks each batch's bytes
		for i := 1; i < len(got); i++ {
			if got[i].First != got[i-1].First+uint64(got[i-1].Count) {
				t.Fatalf("round %d: batch %v follows %v", round, got[i], got[i-1])
			}
		}
		last := got[len(got)-1]
		next := last.First + uint64(last.Count)
		st := l.Stats()
		t.Logf("round %d: killed after %d appends; log holds %d..%d, cut %d bytes", round, appended, l.Oldest(), next-1, st.TruncatedBytes)
		if l.Next() != next || next < reported || reported <= prev || st.Quarantined != 0 {
			t.Fatalf("round %d: Next %d, last batch ends at %d, child reported %d, previous round ended at %d, %d segments quarantined",
				round, l.Next(), next, reported, prev, st.Quarantined)
		}
		if keep := uint64(crashOptions(dir).Keep); next-l.Oldest() < min(keep, next-1) {
			t.Fatalf("round %d: log holds %d..%d, fewer than %d records", round, l.Oldest(), next-1, keep)
		}
		prev = next
		l.Close()
	}
}

// crashChild appends batches after the end of the log in dir, reporting
// progress on stdout, until it is killed. It gives up after a while in
// case its parent is gone.
func crashChild(dir string) {
	l, err := roomlog.Open(crashOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	next := max(l.Next(), 1)
	fmt.Printf("start %d\n", next)
	deadline := time.Now().Add(10 * time.Second)
	for i := 1; time.Now().Before(deadline); i++ {
		if err := l.Append(next, countFor(next), batchFor(next)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		next += uint64(countFor(next))
		if i%50 == 0 {
			fmt.Printf("%d %d\n", i, next)
		}
	}
	os.Exit(3)
}
