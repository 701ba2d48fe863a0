// Package rooms is meshd's room logic: who may say what, in which order,
// and who may read it.
//
// A room is (host key Q, name R). Its host runs a Sequencer, the only place
// that assigns sequence numbers: every line and every join and part gets
// one place in one total order, is signed by Q, sealed under the room's
// epoch key and multicast on the room's data group. Members hold a Member,
// which joins the host over a Noise session (rooms/secure: the host must
// prove Q),
// receives the epoch key, opens and verifies each packet and delivers
// records strictly in sequence order, fetching over its session what
// multicast did not bring. A Directory keeps the rooms that signed
// announcements on the discovery group make known.
//
// The package owns no sockets. Packets come in through HandlePacket-style
// methods and go out through the small PacketSender interface, so tests can
// drive it over mcast/memnet; sessions run over any net.Conn.
package rooms
