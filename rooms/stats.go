package rooms

import "sync/atomic"

// Stats counts what the room logic accepted and dropped, by reason. Every
// malformed or forged packet lands in exactly one drop counter. Safe for
// concurrent use.
type Stats struct {
	AnnounceAccepted   atomic.Int64 // new or fresher announcements
	AnnounceRefreshed  atomic.Int64 // the same announcement again
	AnnounceMalformed  atomic.Int64
	AnnounceBadSig     atomic.Int64
	AnnounceStale      atomic.Int64 // older serial than one already held
	AnnounceConflict   atomic.Int64 // same serial, different bytes: the host equivocated
	AnnounceEvicted    atomic.Int64 // the directory was full
	AnnounceLimited    atomic.Int64 // over the signature-check budget or the source's rate
	AnnounceKeyChanged atomic.Int64 // a pinned room name under another host key

	QueriesReceived    atomic.Int64 // queries parsed
	QueryBytesReceived atomic.Int64
	QueriesMalformed   atomic.Int64
	QueriesLimited     atomic.Int64 // over the source's or the global rate
	AnswersSent        atomic.Int64
	AnswerBytesSent    atomic.Int64
	AnswersSuppressed  atomic.Int64 // another daemon answered first
	AnswersOverBudget  atomic.Int64 // would have drawn more than 3 times the queries' bytes
	RelayedSent        atomic.Int64 // announcements passed on
	RelayDuplicates    atomic.Int64 // passed on recently already
	RelayHopLimit      atomic.Int64 // at the hop limit, not passed on
	Searches           atomic.Int64

	DataDelivered   atomic.Int64 // records delivered in order
	DataDuplicate   atomic.Int64 // records already delivered
	DataMalformed   atomic.Int64
	DataNotJoined   atomic.Int64 // for a room this daemon is not a member of
	DataBadEpoch    atomic.Int64 // for a key epoch this member does not hold
	DataAuthFailed  atomic.Int64 // AEAD open failed: not sealed under the room key
	DataBadSig      atomic.Int64 // sealed correctly but not signed by the host, or not MACed by it for this member
	DataNoMAC       atomic.Int64 // blocks MACed with none for this member: sent while its session was new or ending
	DataOutOfWindow atomic.Int64 // records too far ahead of the next one to hold
	DataLost        atomic.Int64 // records the host no longer held: declared to the user as a gap
	DataFetched     atomic.Int64 // batches received over the session: history at a join, fetches after a gap, the fallback stream

	NacksSent       atomic.Int64 // NACKs this daemon multicast as a member
	NacksSuppressed atomic.Int64 // NACKs held back because another member asked first
	NacksReceived   atomic.Int64 // NACKs the host acted on
	NackMalformed   atomic.Int64
	NackRefused     atomic.Int64 // from keys that are not members
	NackLimited     atomic.Int64 // over a member's rate
	NackReplayed    atomic.Int64 // copies of a member's earlier NACKs, or from its past sessions
	RepairsSent     atomic.Int64 // repair shards the host sent
	BlocksDecoded   atomic.Int64 // blocks rebuilt from any k shards
	BlocksRepaired  atomic.Int64 // blocks that needed parity to rebuild
	StreamSwitches  atomic.Int64 // this daemon's memberships changing path
	StreamRefused   atomic.Int64 // this daemon's memberships refused the stream: their loss was the room's

	// Bytes of the packets the host multicast, by what they carried (per
	// send: a host on several interfaces puts each on every one). With
	// NackBytesSent, they say where a busy room's link goes.
	DataBytesSent      atomic.Int64 // data shards, sent with their block
	ParityBytesSent    atomic.Int64 // proactive parity, sent with its block
	RepairBytesSent    atomic.Int64 // shards sent again for NACKs
	HeartbeatBytesSent atomic.Int64
	NackBytesSent      atomic.Int64 // NACKs this daemon multicast as a member

	JoinsLimited    atomic.Int64 // join connections over their source's rate or joins at once
	Rekeys          atomic.Int64 // epoch keys this daemon's hosted rooms rotated
	SaysLimited     atomic.Int64 // lines refused: their member said more than host.member_rate
	SaysMuted       atomic.Int64 // lines refused: the host muted their member
	SaysWaited      atomic.Int64 // lines that waited for the host's link to drain before they were sequenced
	AccessDenied    atomic.Int64 // joins refused by a room's access: not invited, bad invite, wrong or missing passphrase
	SessionsRefused atomic.Int64
	// SessionsTampered counts session records that failed authentication
	// (forged, replayed, reordered or cut); each ended its session.
	SessionsTampered atomic.Int64
	PacketsSent      atomic.Int64
	SendErrors       atomic.Int64
	// VersionMismatch counts packets of another meshd protocol version
	// (VersionWarner), apart from the malformed: they are well formed for
	// a daemon of that version, and the fix is an upgrade, not a bug hunt.
	VersionMismatch atomic.Int64
}

// Snapshot returns the counters by name, for the control API.
func (s *Stats) Snapshot() map[string]int64 {
	cs := s.counters()
	m := make(map[string]int64, len(cs))
	for _, c := range cs {
		m[c.name] = c.v.Load()
	}
	return m
}

// counter is one of Stats' counters and its name in the control API.
type counter struct {
	name string
	v    *atomic.Int64
}

// counters lists s's counters: a table, not a map literal of 60 entries,
// which was 7 KB of a router's flash.
func (s *Stats) counters() []counter {
	return []counter{
		{"announce_accepted", &s.AnnounceAccepted},
		{"announce_refreshed", &s.AnnounceRefreshed},
		{"announce_malformed", &s.AnnounceMalformed},
		{"announce_bad_sig", &s.AnnounceBadSig},
		{"announce_stale", &s.AnnounceStale},
		{"announce_conflict", &s.AnnounceConflict},
		{"announce_limited", &s.AnnounceLimited},
		{"announce_evicted", &s.AnnounceEvicted},
		{"announce_key_changed", &s.AnnounceKeyChanged},
		{"queries_received", &s.QueriesReceived},
		{"query_bytes_received", &s.QueryBytesReceived},
		{"queries_malformed", &s.QueriesMalformed},
		{"queries_limited", &s.QueriesLimited},
		{"answers_sent", &s.AnswersSent},
		{"answer_bytes_sent", &s.AnswerBytesSent},
		{"answers_suppressed", &s.AnswersSuppressed},
		{"answers_over_budget", &s.AnswersOverBudget},
		{"relayed_sent", &s.RelayedSent},
		{"relay_duplicates", &s.RelayDuplicates},
		{"relay_hop_limit", &s.RelayHopLimit},
		{"searches", &s.Searches},
		{"data_delivered", &s.DataDelivered},
		{"data_duplicate", &s.DataDuplicate},
		{"data_malformed", &s.DataMalformed},
		{"data_not_joined", &s.DataNotJoined},
		{"data_bad_epoch", &s.DataBadEpoch},
		{"data_auth_failed", &s.DataAuthFailed},
		{"data_bad_sig", &s.DataBadSig},
		{"data_no_mac", &s.DataNoMAC},
		{"data_fetched", &s.DataFetched},
		{"data_out_of_window", &s.DataOutOfWindow},
		{"data_lost", &s.DataLost},
		{"nacks_sent", &s.NacksSent},
		{"nacks_suppressed", &s.NacksSuppressed},
		{"nacks_received", &s.NacksReceived},
		{"nack_malformed", &s.NackMalformed},
		{"nack_refused", &s.NackRefused},
		{"nack_limited", &s.NackLimited},
		{"nack_replayed", &s.NackReplayed},
		{"repairs_sent", &s.RepairsSent},
		{"data_bytes_sent", &s.DataBytesSent},
		{"parity_bytes_sent", &s.ParityBytesSent},
		{"repair_bytes_sent", &s.RepairBytesSent},
		{"heartbeat_bytes_sent", &s.HeartbeatBytesSent},
		{"nack_bytes_sent", &s.NackBytesSent},
		{"blocks_decoded", &s.BlocksDecoded},
		{"blocks_repaired", &s.BlocksRepaired},
		{"stream_switches", &s.StreamSwitches},
		{"stream_refused", &s.StreamRefused},
		{"says_limited", &s.SaysLimited},
		{"rekeys", &s.Rekeys},
		{"joins_limited", &s.JoinsLimited},
		{"sessions_refused", &s.SessionsRefused},
		{"packets_sent", &s.PacketsSent},
		{"send_errors", &s.SendErrors},
		{"sessions_tampered", &s.SessionsTampered},
		{"version_mismatch", &s.VersionMismatch},
		{"says_muted", &s.SaysMuted},
		{"says_waited", &s.SaysWaited},
		{"access_denied", &s.AccessDenied},
	}
}

// tampered is the secure.Config.Tampered hook: a method value, so the
// session package needs nothing of Stats.
func (s *Stats) tampered() { s.SessionsTampered.Add(1) }
