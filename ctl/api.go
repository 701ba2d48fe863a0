// Package ctl is meshd's control API: the JSON types that cross the Unix
// socket, the paths they travel on, and a Client for front ends such as
// meshctl. It imports nothing from the daemon side, so a front end that
// links it links no transport, crypto or room code.
package ctl

import "time"

// APIVersion is the path prefix of every endpoint. A breaking change to any
// endpoint gets a new prefix; additions (new fields, new endpoints) do not.
const APIVersion = "v0"

// VersionHeader carries the daemon's build version on every response.
const VersionHeader = "Meshd-Version"

// Error is the body of every non-2xx response.
type Error struct {
	// Error is a sentence a person can act on, e.g.
	// `room "general" is not known: run "meshctl rooms" to see the rooms on this network`.
	Error string `json:"error"`
}

// Status answers GET /v0/status.
type Status struct {
	Version     string   `json:"version"`
	PublicKey   string   `json:"public_key"`  // hex Ed25519 key of this daemon
	Fingerprint string   `json:"fingerprint"` // short form shown to people
	Nick        string   `json:"nick"`        // default nick for joins
	Boot        uint32   `json:"boot"`        // persisted boot counter
	Uptime      Duration `json:"uptime"`
	Socket      string   `json:"socket"`
	StateDir    string   `json:"state_dir"`
	Discovery   string   `json:"discovery"` // group:port
	Hosted      int      `json:"hosted"`
	Joined      int      `json:"joined"`
	Known       int      `json:"known"` // rooms in the discovery cache
	// Rooms are the rooms this daemon hosts or has joined, with their path.
	Rooms    []Room           `json:"rooms"`
	Counters map[string]int64 `json:"counters"`
	// Memory is the daemon's memory use; nil from a daemon too old to
	// report it.
	Memory *Memory `json:"memory,omitempty"`
}

// Room is one room as this daemon sees it. Rooms are identified by
// (host key, name); Ref is the unambiguous name@fingerprint form.
type Room struct {
	Name        string    `json:"name"`
	Ref         string    `json:"ref"`         // name@fingerprint
	HostKey     string    `json:"host_key"`    // hex Ed25519 public key Q
	Fingerprint string    `json:"fingerprint"` // short fingerprint of HostKey
	Addrs       []string  `json:"addrs"`       // TCP join addresses S
	Group       string    `json:"group"`       // data group:port
	Serial      uint64    `json:"serial"`      // announcement sequence T
	Hosted      bool      `json:"hosted"`      // this daemon is the host
	Joined      bool      `json:"joined"`      // this daemon is a member
	Nick        string    `json:"nick,omitempty"`
	Members     int       `json:"members,omitempty"`
	LastSeq     uint64    `json:"last_seq,omitempty"` // newest sequence delivered here
	Expires     time.Time `json:"expires,omitzero"`   // when the announcement lapses
	State       string    `json:"state,omitempty"`    // for joined rooms: "connected" or "disconnected" (reconnecting)
	Path        string    `json:"path,omitempty"`     // for joined rooms: "multicast" or "tcp", how the room reaches this daemon
	// Access is who the room admits, as announced: "invite" or
	// "passphrase"; empty for open rooms.
	Access string `json:"access,omitempty"`
	// KeyChanged marks a room announced under a name this daemon pinned to
	// another host key when it first joined it: possibly an impostor. It
	// is listed, never joined by its bare name.
	KeyChanged bool `json:"key_changed,omitempty"`
}

// SearchRequest is the body of POST /v0/search.
type SearchRequest struct {
	Name string `json:"name"` // room name, or name@fingerprint
	// MaxTTL is the highest IP TTL the search may use; 0 means the
	// daemon's discovery.search_max_ttl.
	MaxTTL int `json:"max_ttl,omitempty"`
}

// SearchResult answers a search that found the room.
type SearchResult struct {
	Rooms   []Room   `json:"rooms"`   // the rooms of that name now known
	TTL     int      `json:"ttl"`     // the TTL of the query that was answered
	Elapsed Duration `json:"elapsed"` // from the first query to the answer
}

// Peers answers GET /v0/peers: the static peers, "addr:port" each.
type Peers struct {
	Peers []string `json:"peers"`
}

// PeerRequest is the body of POST /v0/peers.
type PeerRequest struct {
	Addr string `json:"addr"` // "addr:port" of the peer's discovery socket
}

// Member is one participant of a room.
type Member struct {
	Nick        string `json:"nick"`
	Fingerprint string `json:"fingerprint"`
	Host        bool   `json:"host,omitempty"`
	Path        string `json:"path,omitempty"` // "multicast" or "tcp"
	// Acked is the sequence number up to which the member holds every
	// line, as the host knows it (only the host's daemon reports it).
	Acked uint64 `json:"acked,omitempty"`
	// Muted says the host refuses the member's lines (only the host's
	// daemon reports it).
	Muted bool `json:"muted,omitempty"`
}

// Who answers GET /v0/rooms/{room}/who.
type Who struct {
	Room    Room     `json:"room"`
	Members []Member `json:"members"`
}

// Room access values (HostRequest.Access, Room.Access).
const (
	AccessOpen       = "open"
	AccessInvite     = "invite"
	AccessPassphrase = "passphrase"
)

// HostRequest is the body of POST /v0/rooms/host.
type HostRequest struct {
	Name string `json:"name"`
	// Access is who the room admits: "open" (the default), "invite" or
	// "passphrase".
	Access string `json:"access,omitempty"`
	// Allow lists the members an invite-only room admits without an
	// invite: their hex keys or fingerprints.
	Allow []string `json:"allow,omitempty"`
	// Passphrase is a passphrase room's passphrase.
	Passphrase string `json:"passphrase,omitempty"`
}

// JoinRequest is the body of POST /v0/rooms/join.
type JoinRequest struct {
	Room string `json:"room"` // name or name@fingerprint
	Nick string `json:"nick,omitempty"`
	// Invite is an invite token for an invite-only room: the part after
	// the '/' of what "meshctl invite" printed.
	Invite string `json:"invite,omitempty"`
	// Passphrase is a passphrase room's passphrase. The daemon keeps only
	// a key derived from it, bound to the room, to rejoin after a restart.
	Passphrase string `json:"passphrase,omitempty"`
}

// InviteRequest is the body of POST /v0/rooms/{room}/invite, on the host
// of an invite-only room.
type InviteRequest struct {
	// Uses is how many members the invite admits: 1 (the default) to 1000.
	Uses int `json:"uses,omitempty"`
	// Expires is how long the invite lasts: 24h (the default) to 366 days.
	Expires Duration `json:"expires,omitempty"`
}

// Invite answers POST /v0/rooms/{room}/invite.
type Invite struct {
	// Invite is what a member joins with: name@fingerprint/TOKEN. The host
	// keeps only the token's hash.
	Invite  string    `json:"invite"`
	Room    string    `json:"room"` // name@fingerprint
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
}

// MuteRequest is the body of POST /v0/rooms/{room}/mute and /unmute, on
// the room's host: a muted member's lines are refused, with an error back
// to it, while it still receives the room.
type MuteRequest struct {
	Nick string `json:"nick"`
}

// KickRequest is the body of POST /v0/rooms/{room}/kick, on the room's
// host: the member leaves, the room's key rotates so that it reads nothing
// said afterwards, and it may not rejoin for ten minutes, or, with Ban,
// until the host restarts.
type KickRequest struct {
	Nick string `json:"nick"`
	Ban  bool   `json:"ban,omitempty"`
}

// MaxSayLines bounds the Lines of one SayRequest.
const MaxSayLines = 256

// SayRequest is the body of POST /v0/rooms/{room}/say: Text, one message,
// or Lines, each a message of its own, in order.
type SayRequest struct {
	Text  string   `json:"text,omitempty"`
	Lines []string `json:"lines,omitempty"`
	// Wait, if set, makes the request wait up to this long until every
	// member holds the line, and report how many did.
	Wait Duration `json:"wait,omitempty"`
}

// SayResult answers a say: the place the host gave the message, or, for
// Lines, the first line's place and the last's.
type SayResult struct {
	Room string `json:"room"`
	Seq  uint64 `json:"seq"`
	Last uint64 `json:"last,omitempty"`
	// Seen of Of members held the line when the wait ended (with Wait).
	Seen int `json:"seen,omitempty"`
	Of   int `json:"of,omitempty"`
}

// Event kinds on the event stream.
const (
	EventMessage     = "message"      // a sequenced chat line
	EventJoin        = "join"         // a member joined (sequenced)
	EventPart        = "part"         // a member left (sequenced)
	EventGap         = "gap"          // records Seq..Through are lost: the host no longer held them
	EventReceipt     = "receipt"      // Seen of Of members hold line Seq, which this daemon's user said
	EventRoomAppear  = "room_appear"  // an announcement for a new room was verified
	EventRoomExpire  = "room_expire"  // a room's announcements stopped
	EventRoomState   = "room_state"   // this daemon's link to a joined room changed
	EventSnapshotEnd = "snapshot_end" // the initial state is complete; live events follow
	// EventMissed begins a snapshot whose since is older than what the
	// daemon still holds: events Seq..Through happened, but the reader was
	// away longer than the room's backlog, so the stream cannot give them.
	EventMissed = "missed"
	// EventOverflow is the last line of a stream whose reader fell too far
	// behind: events were dropped, so the reader must resubscribe (with
	// since = the last Seq it saw) to catch up.
	EventOverflow = "overflow"
)

// Event is one line of the newline-delimited JSON stream at GET /v0/events.
type Event struct {
	Kind string `json:"kind"`
	Room string `json:"room,omitempty"` // room ref
	Seq  uint64 `json:"seq,omitempty"`  // for sequenced events
	// Through is the last sequence number of a gap; Seq is its first.
	Through uint64 `json:"through,omitempty"`
	Seen    int    `json:"seen,omitempty"` // for receipt
	Of      int    `json:"of,omitempty"`   // for receipt
	Nick    string `json:"nick,omitempty"`
	// Fingerprint is the short fingerprint of the member who sent or joined.
	Fingerprint string `json:"fingerprint,omitempty"`
	Text        string `json:"text,omitempty"`
	State       string `json:"state,omitempty"` // for room_state
	Info        *Room  `json:"info,omitempty"`  // for room_appear
}

// Duration marshals as a Go duration string ("1m30s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// Memory is the daemon process's memory use, as the Go runtime reports
// it. The control server fills it in GET /v0/status from a reading at most
// a second old.
type Memory struct {
	HeapBytes  uint64 `json:"heap_bytes"` // bytes of live and not yet collected heap objects
	SysBytes   uint64 `json:"sys_bytes"`  // bytes the runtime obtained from the OS
	Goroutines int    `json:"goroutines"`
}

// counterHelp explains the daemon's counters (Status.Counters) in a few
// words, for meshctl stats and the HELP lines of GET /v0/metrics.
var counterHelp = map[string]string{
	"announce_accepted":    "new or fresher room announcements",
	"announce_refreshed":   "repeats of an announcement already held",
	"announce_malformed":   "announcements that did not parse",
	"announce_bad_sig":     "announcements whose signature did not verify",
	"announce_stale":       "announcements older than one already held",
	"announce_conflict":    "same serial, different bytes: a host equivocated",
	"announce_evicted":     "rooms dropped because the directory was full",
	"announce_key_changed": "announcements of a pinned room name under another host key (listed, flagged)",
	"announce_limited":     "announcements over the signature-check budget or a source's rate, dropped",
	"queries_received":     "room searches (queries) parsed",
	"query_bytes_received": "bytes of queries received",
	"queries_malformed":    "queries that did not parse",
	"queries_limited":      "queries over a source's (or the global) rate, dropped",
	"answers_sent":         "answers sent to other daemons' queries",
	"answer_bytes_sent":    "bytes of answers sent",
	"answers_suppressed":   "answers held back because another daemon answered first",
	"answers_over_budget":  "answers not sent: they would weigh more than 3 times the queries",
	"relayed_sent":         "announcements relayed on",
	"relay_duplicates":     "announcements relayed recently already, not again",
	"relay_hop_limit":      "relayed announcements at the hop limit (not relayed further)",
	"searches":             "searches started (meshctl rooms --search, joins of unknown rooms)",
	"discovery_filtered":   "discovery datagrams for a group not joined, dropped",
	"discovery_truncated":  "discovery datagrams too long to be valid, dropped",
	"data_delivered":       "room records delivered in order",
	"data_duplicate":       "room records already delivered",
	"data_malformed":       "room records that did not parse",
	"version_mismatch":     "packets of another meshd protocol version, dropped (the log names their source)",
	"data_not_joined":      "room records for rooms not joined here",
	"data_bad_epoch":       "room records under a key epoch not held",
	"data_auth_failed":     "room records not sealed under the room key",
	"data_bad_sig":         "room records not signed by the room's host",
	"data_no_mac":          "room blocks MACed for other members only (sent while this member's session began or ended): their records come over the session",
	"data_out_of_window":   "room records too far ahead to hold",
	"data_lost":            "room records the host no longer held (gaps)",
	"data_fetched":         "packets fetched over a session: history and repairs",
	"data_filtered":        "data datagrams for a group not joined, dropped",
	"data_truncated":       "data datagrams too long to be valid, dropped",
	"nacks_sent":           "NACKs sent as a member",
	"nacks_suppressed":     "NACKs held back because another member asked first",
	"nacks_received":       "NACKs the host acted on",
	"nack_malformed":       "NACKs that did not parse",
	"nack_refused":         "NACKs from keys that are not members",
	"nack_limited":         "NACKs over a member's rate",
	"nack_replayed":        "NACKs replayed: seen before, or from a member's past session",
	"repairs_sent":         "repair shards sent as host",
	"data_bytes_sent":      "bytes of data shards multicast with their block, as host",
	"parity_bytes_sent":    "bytes of proactive parity shards multicast with their block, as host",
	"repair_bytes_sent":    "bytes of repair shards multicast for NACKs, as host",
	"heartbeat_bytes_sent": "bytes of heartbeats multicast in idle rooms, as host",
	"nack_bytes_sent":      "bytes of NACKs multicast as a member",
	"blocks_decoded":       "blocks rebuilt from any k shards",
	"blocks_repaired":      "blocks that needed parity to rebuild",
	"stream_switches":      "memberships changing path (multicast or tcp)",
	"stream_refused":       "memberships' requests to leave lossy multicast that the host refused: most members lost as much, so the loss was the host's link",
	"sessions_refused":     "join sessions refused",
	"sessions_tampered":    "session records that failed authentication (session closed)",
	"access_denied":        "joins refused by a room's access: not invited, bad invite, wrong or missing passphrase",
	"says_muted":           "lines refused because the host muted their member",
	"says_limited":         "lines refused: their member said more than host.member_rate",
	"says_waited":          "lines that waited for the host's link to drain before they were sequenced: the room said more than its link carries",
	"joins_limited":        "join connections over their source address's rate or joins at once, closed",
	"rekeys":               "room keys rotated as host: a member left or was kicked, or a key's budget ran out",
	"packets_sent":         "packets sent",
	"send_errors":          "packets that failed to send",
	"ctl_requests_refused": "control API requests refused as malformed or over a limit",
	"ctl_handler_panics":   "control API requests that made meshd fail (a bug; see the log)",
}

// CounterHelp returns a short explanation of the counter called name, or
// "" for a counter this package does not know.
func CounterHelp(name string) string { return counterHelp[name] }
