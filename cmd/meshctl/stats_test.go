package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"meshd/ctl"
)

func TestPrintStats(t *testing.T) {
	st := ctl.Status{
		Version: "v1",
		Uptime:  ctl.Duration(3*time.Minute + 400*time.Millisecond),
		Counters: map[string]int64{
			"announce_accepted": 3, "announce_bad_sig": 0, "data_delivered": 1200,
			"nacks_sent": 4, "repairs_sent": 2, "blocks_repaired": 1,
			"sessions_refused": 0, "packets_sent": 99, "brand_new": 5,
			"access_denied": 2, "says_muted": 1,
		},
		Memory: &ctl.Memory{HeapBytes: 3 << 20, SysBytes: 12<<20 + 512<<10, Goroutines: 42},
	}
	var b bytes.Buffer
	if err := printStats(&b, st); err != nil {
		t.Fatal(err)
	}
	const want = `meshd v1, up 3m0s

Memory
  heap 3.0 MiB, from the OS 12.5 MiB, 42 goroutines

Room announcements (discovery)
  announce_accepted  3  new or fresher room announcements
  announce_bad_sig   0  announcements whose signature did not verify

Room data
  data_delivered  1200  room records delivered in order

Loss repair (NACKs, repairs, FEC blocks)
  blocks_repaired  1  blocks that needed parity to rebuild
  nacks_sent       4  NACKs sent as a member
  repairs_sent     2  repair shards sent as host

Sessions and paths
  sessions_refused  0  join sessions refused

Access and moderation (joins, lines, keys)
  access_denied  2  joins refused by a room's access: not invited, bad invite, wrong or missing passphrase
  says_muted     1  lines refused because the host muted their member

Packets
  packets_sent  99  packets sent

Other
  brand_new  5
`
	if got := b.String(); got != want {
		t.Errorf("stats:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatsCommand(t *testing.T) {
	_, sock := start(t)
	ctx := context.Background()
	r := meshctl(ctx, "", sock, "stats")
	for _, want := range []string{"meshd test-1, up 1m30s\n", "\nMemory\n  heap ", "\nPackets\n  packets_in   10\n  packets_out  7\n"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("stats: exit %d, stdout %q, stderr %q; want it to contain %q", r.code, r.stdout, r.stderr, want)
		}
	}
	r = meshctl(ctx, "", sock, "stats", "--json")
	var got statsJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("stats --json: exit %d, %v in %q", r.code, err, r.stdout)
	}
	if got.Counters["packets_out"] != 7 || got.Memory == nil || got.Memory.Goroutines == 0 || got.Uptime != ctl.Duration(90*time.Second) {
		t.Errorf("stats --json = %+v", got)
	}
}
