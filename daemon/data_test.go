package daemon

import (
	"net/netip"
	"testing"

	"meshd/rooms"
	"meshd/rooms/wire"
)

// A data packet from a daemon of another protocol version is counted as a
// version mismatch, not as malformed, and counting it does not allocate.
func TestHandleDataVersionMismatch(t *testing.T) {
	d := &Daemon{}
	d.vers = rooms.NewVersionWarner(&d.stats, nil)
	src := netip.MustParseAddrPort("10.0.0.2:7703")
	shard := wire.AppendShardHeader(nil, wire.SealedHeader{Room: wire.RoomTag{1}, Epoch: 1},
		wire.ShardInfo{Block: 1, K: 1, Sent: 1})
	shard = append(shard, make([]byte, 32)...)
	shard[2] = 1 // the protocol before batch format v2

	d.handleData(shard, src)
	d.handleData([]byte("MD"), src)
	if got := d.stats.VersionMismatch.Load(); got != 1 {
		t.Errorf("version_mismatch = %d, want 1", got)
	}
	if got := d.stats.DataMalformed.Load(); got != 1 {
		t.Errorf("data_malformed = %d, want 1 (the truncated packet only)", got)
	}
	if n := testing.AllocsPerRun(100, func() { d.handleData(shard, src) }); n != 0 {
		t.Errorf("handleData of another version's packet allocates %v times, want 0", n)
	}
}
