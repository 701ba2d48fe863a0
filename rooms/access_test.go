package rooms

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"meshd/mcast/memnet"
	"meshd/rooms/wire"
)

// tokenOf returns the token of an invite as Sequencer.Invite prints it.
func tokenOf(t *testing.T, invite string) []byte {
	t.Helper()
	_, tok, ok := strings.Cut(invite, "/")
	if !ok {
		t.Fatalf("invite %q has no '/'", invite)
	}
	b, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInviteOnlyRoom(t *testing.T) {
	n := memnet.New(21)
	store := &memStore{}
	listed := newTestIdentity(t)
	byFingerprint := newTestIdentity(t)
	tr := newTestRoomAccess(t, n, "private", store, RoomAccess{
		Mode:  AccessInvite,
		Allow: []string{hex.EncodeToString(listed.Pub), strings.ToUpper(byFingerprint.Fingerprint())},
	})
	if tr.kn.Access != wire.AccessInvite {
		t.Errorf("announced access = %d, want invite (%d)", tr.kn.Access, wire.AccessInvite)
	}

	// A stranger, with no invite or a made-up one, is refused and told
	// what to do.
	_, err := tr.join("10.0.0.2", "stranger", tr.kn)
	want := "room " + tr.seq.Ref() + " is invite-only: ask its host for an invite (meshctl invite)"
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), want) {
		t.Fatalf("stranger's join = %v, want a refusal saying %q", err, want)
	}
	_, err = tr.joinAs("10.0.0.2", "stranger", tr.kn, 0, newTestIdentity(t), Credential{Token: make([]byte, tokenLen)})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "the invite is not valid") {
		t.Fatalf("join with a made-up token = %v, want a refusal of the invite", err)
	}
	if got := tr.stats.AccessDenied.Load(); got != 2 {
		t.Errorf("access_denied = %d, want 2", got)
	}

	// The allowlist admits by whole key and by fingerprint.
	if _, err := tr.joinAs("10.0.0.3", "listed", tr.kn, 0, listed, Credential{}); err != nil {
		t.Fatalf("allowlisted key: %v", err)
	}
	if _, err := tr.joinAs("10.0.0.4", "byfp", tr.kn, 0, byFingerprint, Credential{}); err != nil {
		t.Fatalf("allowlisted fingerprint: %v", err)
	}

	// An invite admits once; its holder is then on the allowlist.
	invite, expires, err := tr.seq.Invite(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(invite, tr.seq.Ref()+"/") {
		t.Errorf("invite = %q, want %s/TOKEN", invite, tr.seq.Ref())
	}
	if d := time.Until(expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("invite expires in %v, want an hour", d)
	}
	token := tokenOf(t, invite)
	if bytes.Contains(store.access, []byte(FormatToken(token))) || bytes.Contains(store.access, []byte(hex.EncodeToString(token))) {
		t.Errorf("the store holds the token itself: %s", store.access)
	}
	guestID := newTestIdentity(t)
	guest, err := tr.joinAs("10.0.0.5", "guest", tr.kn, 0, guestID, Credential{Token: token})
	if err != nil {
		t.Fatalf("join with the invite: %v", err)
	}
	if _, err := tr.joinAs("10.0.0.6", "second", tr.kn, 0, newTestIdentity(t), Credential{Token: token}); err == nil || !strings.Contains(err.Error(), "used up") {
		t.Fatalf("second join with a one-use invite = %v, want it refused", err)
	}
	if !bytes.Contains(store.access, []byte(hex.EncodeToString(guestID.Pub))) {
		t.Errorf("the store does not list the guest's key: %s", store.access)
	}
	// The guest comes back without the invite, as a restarted daemon does.
	guest.m.Close()
	waitUntil(t, "the guest's part", func() bool { return len(tr.seq.Members()) == 3 })
	if _, err := tr.joinAs("10.0.0.7", "guest", tr.kn, 0, guestID, Credential{}); err != nil {
		t.Fatalf("the guest's return: %v", err)
	}

	// A restarted host reads the allowlist back from the store.
	acc, err := newAccessState(tr.host.cfg.Identity.Pub, "private", RoomAccess{Mode: AccessInvite}, store.access)
	if err != nil {
		t.Fatal(err)
	}
	if !acc.allowed(guestID.Pub) {
		t.Error("after a restart the guest is not on the allowlist")
	}
}

func TestKickTakesKeyOffAllowlist(t *testing.T) {
	n := memnet.New(22)
	store := &memStore{}
	tr := newTestRoomAccess(t, n, "private", store, RoomAccess{Mode: AccessInvite})
	invite, _, err := tr.seq.Invite(2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id := newTestIdentity(t)
	if _, err := tr.joinAs("10.0.0.2", "guest", tr.kn, 0, id, Credential{Token: tokenOf(t, invite)}); err != nil {
		t.Fatal(err)
	}
	if err := tr.seq.Kick("guest", false); err != nil {
		t.Fatal(err)
	}
	tr.seq.mu.Lock()
	allowed := tr.seq.access.allowed(id.Pub)
	tr.seq.mu.Unlock()
	if allowed {
		t.Error("the kicked key is still on the allowlist")
	}
	if bytes.Contains(store.access, []byte(hex.EncodeToString(id.Pub))) {
		t.Errorf("the store still lists the kicked key: %s", store.access)
	}
}

func TestInviteBounds(t *testing.T) {
	open, err := newAccessState(newTestIdentity(t).Pub, "open", RoomAccess{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.issue("open@x", 1, time.Hour, time.Now()); !errors.Is(err, ErrAccess) {
		t.Errorf("invite to an open room = %v, want ErrAccess", err)
	}
	n := memnet.New(23)
	tr := newTestRoomAccess(t, n, "private", &memStore{}, RoomAccess{Mode: AccessInvite})
	for _, c := range []struct {
		uses int
		ttl  time.Duration
	}{{0, time.Hour}, {MaxInviteUses + 1, time.Hour}, {1, 0}, {1, MaxInviteTTL + time.Second}} {
		if _, _, err := tr.seq.Invite(c.uses, c.ttl); !errors.Is(err, ErrAccess) {
			t.Errorf("Invite(%d, %v) = %v, want ErrAccess", c.uses, c.ttl, err)
		}
	}
	if _, _, err := tr.seq.Invite(MaxInviteUses, MaxInviteTTL); err != nil {
		t.Errorf("Invite at the caps: %v", err)
	}
	for range MaxInvites - 1 {
		if _, _, err := tr.seq.Invite(1, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := tr.seq.Invite(1, time.Hour); !errors.Is(err, ErrAccess) || !strings.Contains(err.Error(), "open invites") {
		t.Errorf("invite %d = %v, want a refusal naming the open invites", MaxInvites+1, err)
	}
}

func TestInviteExpires(t *testing.T) {
	a, err := newAccessState(newTestIdentity(t).Pub, "r", RoomAccess{Mode: AccessInvite}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	token, err := a.issue("r@x", 5, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	pub := newTestIdentity(t).Pub
	if _, err := a.check("r@x", pub, token, nil, now.Add(time.Hour-time.Second)); err != nil {
		t.Errorf("just before expiry: %v", err)
	}
	if _, err := a.check("r@x", pub, token, nil, now.Add(time.Hour)); err == nil {
		t.Error("an expired invite admitted a member")
	}
	a.prune(now.Add(time.Hour))
	if len(a.invites) != 0 {
		t.Errorf("%d invites left after expiry, want 0", len(a.invites))
	}
}

func TestPassphraseRoom(t *testing.T) {
	n := memnet.New(24)
	pass := []byte("correct horse battery staple")
	tr := newTestRoomAccess(t, n, "secret", &memStore{}, RoomAccess{Mode: AccessPassphrase, Passphrase: pass})
	if tr.kn.Access != wire.AccessPassphrase {
		t.Errorf("announced access = %d, want passphrase", tr.kn.Access)
	}
	key := PassphraseKey(tr.kn.Key(), tr.kn.Room, pass)
	wrong := PassphraseKey(tr.kn.Key(), tr.kn.Room, []byte("incorrect horse"))
	_, err := tr.join("10.0.0.2", "nopass", tr.kn)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "needs a passphrase") {
		t.Errorf("join without a passphrase = %v, want a refusal asking for one", err)
	}
	_, err = tr.joinAs("10.0.0.3", "wrong", tr.kn, 0, newTestIdentity(t), Credential{Key: &wrong})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "wrong passphrase for room "+tr.seq.Ref()) {
		t.Errorf("join with a wrong passphrase = %v, want a refusal saying so", err)
	}
	if got := tr.stats.AccessDenied.Load(); got != 2 {
		t.Errorf("access_denied = %d, want 2", got)
	}
	m, err := tr.joinAs("10.0.0.4", "right", tr.kn, 0, newTestIdentity(t), Credential{Key: &key})
	if err != nil {
		t.Fatalf("join with the passphrase: %v", err)
	}
	if got := m.m.PassphraseKey(); got == nil || *got != key {
		t.Error("the member does not keep its passphrase key for rejoins")
	}
	// Another room's key, from the same passphrase, opens nothing here.
	other := PassphraseKey(tr.kn.Key(), "other", pass)
	if _, err := tr.joinAs("10.0.0.5", "other", tr.kn, 0, newTestIdentity(t), Credential{Key: &other}); err == nil {
		t.Error("the key of another room with the same passphrase was accepted")
	}
}

// A proof is bound to its session: replayed on another, it fails.
func TestPassphraseProofIsBoundToSession(t *testing.T) {
	id := newTestIdentity(t)
	pass := []byte("hunter2")
	a, err := newAccessState(id.Pub, "r", RoomAccess{Mode: AccessPassphrase, Passphrase: pass}, nil)
	if err != nil {
		t.Fatal(err)
	}
	member := newTestIdentity(t).Pub
	key := PassphraseKey(id.Pub, "r", pass)
	sessA, sessB := sha256.Sum256([]byte("a")), sha256.Sum256([]byte("b"))
	proof := joinProof(key, sessA[:], member)
	if _, err := a.check("r@x", member, proof, sessA[:], time.Now()); err != nil {
		t.Errorf("proof on its own session: %v", err)
	}
	if _, err := a.check("r@x", member, proof, sessB[:], time.Now()); err == nil {
		t.Error("a proof replayed on another session was accepted")
	}
	if _, err := a.check("r@x", newTestIdentity(t).Pub, proof, sessA[:], time.Now()); err == nil {
		t.Error("a proof made for another member's key was accepted")
	}
}

func TestRoomAccessValidate(t *testing.T) {
	fp := newTestIdentity(t).Fingerprint()
	for _, c := range []struct {
		a  RoomAccess
		ok bool
	}{
		{RoomAccess{}, true},
		{RoomAccess{Mode: AccessInvite, Allow: []string{fp, strings.Repeat("ab", 32)}}, true},
		{RoomAccess{Mode: AccessInvite, Allow: []string{"nothex"}}, false},
		{RoomAccess{Mode: AccessInvite, Allow: []string{strings.Repeat("zz", 32)}}, false},
		{RoomAccess{Mode: AccessOpen, Allow: []string{fp}}, false},
		{RoomAccess{Mode: AccessPassphrase}, false},
		{RoomAccess{Mode: AccessPassphrase, Passphrase: []byte("x")}, true},
		{RoomAccess{Mode: AccessInvite, Passphrase: []byte("x")}, false},
		{RoomAccess{Mode: 3}, false},
	} {
		if err := c.a.Validate(); (err == nil) != c.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", c.a, err, c.ok)
		}
	}
	for _, s := range []string{"open", "invite", "passphrase"} {
		a, err := ParseAccess(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseAccess(%q) = %v, %v", s, a, err)
		}
	}
	if _, err := ParseAccess("closed"); err == nil {
		t.Error("ParseAccess(closed) = nil error")
	}
}

func TestMute(t *testing.T) {
	n := memnet.New(25)
	tr := newTestRoom(t, n, "general")
	alice, err := tr.join("10.0.0.2", "alice", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := tr.join("10.0.0.3", "bob", tr.kn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := tr.seq.Mute("nobody", true); !errors.Is(err, ErrNoSuchMember) {
		t.Errorf("Mute(nobody) = %v, want ErrNoSuchMember", err)
	}
	if err := tr.seq.Mute("bob", true); err != nil {
		t.Fatal(err)
	}
	for _, ms := range tr.seq.Members() {
		if ms.Muted != (ms.Nick == "bob") {
			t.Errorf("member %s: muted %v", ms.Nick, ms.Muted)
		}
	}
	if _, err := bob.m.Say(ctx, "can you hear me"); err == nil || !strings.Contains(err.Error(), "has muted you") {
		t.Errorf("muted say = %v, want a refusal saying bob is muted", err)
	}
	if got := tr.stats.SaysMuted.Load(); got != 1 {
		t.Errorf("says_muted = %d, want 1", got)
	}
	// Bob still receives the room.
	seq, err := alice.m.Say(ctx, "bob, you are muted")
	if err != nil {
		t.Fatal(err)
	}
	bob.rec.waitFor(t, "alice's line", func(d []Delivery) bool { return len(d) > 0 && d[len(d)-1].Seq >= seq })
	if err := tr.seq.Mute("bob", false); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.m.Say(ctx, "thanks"); err != nil {
		t.Errorf("say after unmute: %v", err)
	}
}

func TestSetAccess(t *testing.T) {
	n := memnet.New(26)
	tr := newTestRoomAccess(t, n, "private", &memStore{}, RoomAccess{Mode: AccessInvite})
	invite, _, err := tr.seq.Invite(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	guestID := newTestIdentity(t)
	guest, err := tr.joinAs("10.0.0.2", "guest", tr.kn, 0, guestID, Credential{Token: tokenOf(t, invite)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.seq.SetAccess(RoomAccess{Mode: AccessOpen, Passphrase: []byte("x")}); err == nil {
		t.Fatal("SetAccess accepted an open room with a passphrase")
	}
	if got := tr.seq.Access(); got != AccessInvite {
		t.Fatalf("access after a refused change = %v, want invite", got)
	}
	// Open: anyone joins; the guest stays.
	if err := tr.seq.SetAccess(RoomAccess{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.join("10.0.0.3", "walkin", tr.kn); err != nil {
		t.Errorf("join of an open room: %v", err)
	}
	if guest.m.State() != StateConnected {
		t.Errorf("the guest is %s after the change, want connected", guest.m.State())
	}
	// Invite-only again: the guest's redeemed key still counts, a
	// stranger does not.
	if err := tr.seq.SetAccess(RoomAccess{Mode: AccessInvite}); err != nil {
		t.Fatal(err)
	}
	guest.m.Close()
	waitUntil(t, "the guest's part", func() bool { return len(tr.seq.Members()) == 2 })
	if _, err := tr.joinAs("10.0.0.4", "guest", tr.kn, 0, guestID, Credential{}); err != nil {
		t.Errorf("the guest's return: %v", err)
	}
	if _, err := tr.join("10.0.0.5", "stranger", tr.kn); !errors.Is(err, ErrRefused) {
		t.Errorf("stranger's join = %v, want refused", err)
	}
}
