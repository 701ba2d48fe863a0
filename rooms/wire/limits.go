package wire

// Bounds on every variable-length field. Decoders reject anything longer,
// so no packet can make a receiver allocate more than these allow.
const (
	MaxRoomName = 64       // bytes of UTF-8 in a room name
	MaxNick     = 32       // bytes of UTF-8 in a nick
	MaxAddrs    = 8        // join addresses S in one announcement
	MaxText     = 16 << 10 // bytes of UTF-8 in one chat message; longer ones span several shards
	MaxPacket   = 1400     // bytes in one UDP datagram, within a 1500-byte MTU after IP/UDP and tunnel headers
	// ShardData is the most bytes of a block one shard carries: a shard
	// packet of them (header, tag) is MaxPacket long. A block's padding
	// (package fec) takes at least one byte of its shards.
	ShardData = MaxPacket - ShardHeaderLen - TagLen
	MaxFrame  = 64 << 10
)
