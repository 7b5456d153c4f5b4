package main

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"
)

// The chat's records: users, rooms, memberships, unread markers, direct
// message conversations and the notifications waiting to be mailed. A
// store keeps them in memory (memStore, the default) or in Redis
// (redisStore, with REDIS_URL), where every replica shares them and a
// restart loses nothing. Messages are not here: they are the history of
// the rooms' backplane topics.

var (
	errNotFound = errors.New("not found")
	errTaken    = errors.New("already taken")
)

const (
	roleAdmin  = "admin"
	roleMember = "member"
)

// user is an account. Hash is the bcrypt hash of the password, never the
// password itself.
type user struct {
	Handle  string    `json:"handle"`
	Name    string    `json:"name"`
	Email   string    `json:"email"`
	Hash    []byte    `json:"hash"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
	NoMail  bool      `json:"noMail,omitempty"` // the user turned email notifications off
	Banned  bool      `json:"banned,omitempty"`
}

// room is a chat room. Private rooms are read and written by their
// members only; archived rooms can be read by nobody.
type room struct {
	Name     string    `json:"name"`
	Private  bool      `json:"private,omitempty"`
	Archived bool      `json:"archived,omitempty"`
	Created  time.Time `json:"created"`
	By       string    `json:"by,omitempty"`
}

// dmEntry is one direct-message conversation of a user.
type dmEntry struct {
	With string    `json:"with"`
	Last time.Time `json:"last"`
}

// pending is one notification waiting for the next digest mail.
type pending struct {
	Kind string    `json:"kind"` // "mention" or "dm"
	Room string    `json:"room"` // a room name or a "dm:a:b" topic
	ID   string    `json:"id"`   // the message ID
	From string    `json:"from"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// store is where the chat's records live. Every method is safe for
// concurrent use; records are returned by value (copies).
type store interface {
	// CreateUser adds u unless its handle is taken (errTaken). first
	// reports whether u is the first user ever.
	CreateUser(ctx context.Context, u user) (first bool, err error)
	User(ctx context.Context, handle string) (user, error) // errNotFound
	PutUser(ctx context.Context, u user) error
	Users(ctx context.Context) ([]user, error) // by handle

	CreateRoom(ctx context.Context, r room) error // errTaken
	Room(ctx context.Context, name string) (room, error)
	PutRoom(ctx context.Context, r room) error
	Rooms(ctx context.Context) ([]room, error) // by name

	// Memberships: which rooms a user joined (public) or was added to
	// (private).
	AddMember(ctx context.Context, room, handle string) error
	RemoveMember(ctx context.Context, room, handle string) error
	IsMember(ctx context.Context, room, handle string) (bool, error)
	Members(ctx context.Context, room string) ([]string, error)     // sorted
	UserRooms(ctx context.Context, handle string) ([]string, error) // sorted

	// Read markers: the last message ID a user has seen, per topic.
	MarkRead(ctx context.Context, handle, topic, id string) error
	ReadMarkers(ctx context.Context, handle string) (map[string]string, error)

	// TouchDM records a direct message between a and b at t.
	TouchDM(ctx context.Context, a, b string, t time.Time) error
	DMs(ctx context.Context, handle string) ([]dmEntry, error) // newest first

	// Pending notifications of a user, oldest first: Push appends,
	// Pending reads them all, Drop removes the first n (those a digest
	// mailed).
	PushPending(ctx context.Context, handle string, p pending) error
	Pending(ctx context.Context, handle string) ([]pending, error)
	DropPending(ctx context.Context, handle string, n int) error
}

// memStore is the in-memory store of a single process.
type memStore struct {
	mu      sync.Mutex
	users   map[string]user
	rooms   map[string]room
	members map[string]map[string]bool // room -> handles
	read    map[string]map[string]string
	dms     map[string]map[string]time.Time
	pending map[string][]pending
}

var _ store = (*memStore)(nil)

func newMemStore() *memStore {
	return &memStore{users: map[string]user{}, rooms: map[string]room{}, members: map[string]map[string]bool{},
		read: map[string]map[string]string{}, dms: map[string]map[string]time.Time{}, pending: map[string][]pending{}}
}

func (s *memStore) CreateUser(_ context.Context, u user) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.users[u.Handle]; ok {
		return false, errTaken
	}
	s.users[u.Handle] = u
	return len(s.users) == 1, nil
}

func (s *memStore) User(_ context.Context, handle string) (user, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[handle]
	if !ok {
		return user{}, errNotFound
	}
	return u, nil
}

func (s *memStore) PutUser(_ context.Context, u user) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.Handle] = u
	return nil
}

func (s *memStore) Users(context.Context) ([]user, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]user, 0, len(s.users))
	for _, u := range s.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Handle < out[j].Handle })
	return out, nil
}

func (s *memStore) CreateRoom(_ context.Context, r room) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.rooms[r.Name]; ok {
		return errTaken
	}
	s.rooms[r.Name] = r
	return nil
}

func (s *memStore) Room(_ context.Context, name string) (room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[name]
	if !ok {
		return room{}, errNotFound
	}
	return r, nil
}

func (s *memStore) PutRoom(_ context.Context, r room) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[r.Name] = r
	return nil
}

func (s *memStore) Rooms(context.Context) ([]room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]room, 0, len(s.rooms))
	for _, r := range s.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (s *memStore) AddMember(_ context.Context, room, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members[room] == nil {
		s.members[room] = map[string]bool{}
	}
	s.members[room][handle] = true
	return nil
}

func (s *memStore) RemoveMember(_ context.Context, room, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members[room], handle)
	return nil
}

func (s *memStore) IsMember(_ context.Context, room, handle string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[room][handle], nil
}

func (s *memStore) Members(_ context.Context, room string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.members[room]))
	for h := range s.members[room] {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

func (s *memStore) UserRooms(_ context.Context, handle string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for r, m := range s.members {
		if m[handle] {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *memStore) MarkRead(_ context.Context, handle, topic, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.read[handle] == nil {
		s.read[handle] = map[string]string{}
	}
	s.read[handle][topic] = id
	return nil
}

func (s *memStore) ReadMarkers(_ context.Context, handle string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for k, v := range s.read[handle] {
		out[k] = v
	}
	return out, nil
}

func (s *memStore) TouchDM(_ context.Context, a, b string, t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range [][2]string{{a, b}, {b, a}} {
		if s.dms[p[0]] == nil {
			s.dms[p[0]] = map[string]time.Time{}
		}
		s.dms[p[0]][p[1]] = t
	}
	return nil
}

func (s *memStore) DMs(_ context.Context, handle string) ([]dmEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]dmEntry, 0, len(s.dms[handle]))
	for w, t := range s.dms[handle] {
		out = append(out, dmEntry{With: w, Last: t})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Last.After(out[j].Last) })
	return out, nil
}

func (s *memStore) PushPending(_ context.Context, handle string, p pending) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[handle] = append(s.pending[handle], p)
	return nil
}

func (s *memStore) Pending(_ context.Context, handle string) ([]pending, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pending[handle]), nil
}

func (s *memStore) DropPending(_ context.Context, handle string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, len(s.pending[handle]))
	s.pending[handle] = slices.Clone(s.pending[handle][n:])
	return nil
}
