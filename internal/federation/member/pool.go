package member

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
)

// Lookup returns a member's join record (its gateway and identity).
type Lookup func(ctx context.Context, name string) (fedapi.JoinRequest, error)

// Pool keeps one gateway client per member, made again when the member's
// identity changed, so that calls reuse connections instead of a
// handshake each. Safe for concurrent use.
type Pool struct {
	lookup Lookup
	now    func() time.Time

	mu      sync.Mutex
	clients map[string]pooled
}

type pooled struct {
	cert string
	c    *client.Client
}

// NewPool returns a Pool that finds members with lookup; now is the clock
// identities are checked against (nil: time.Now).
func NewPool(lookup Lookup, now func() time.Time) *Pool {
	if now == nil {
		now = time.Now
	}
	return &Pool{lookup: lookup, now: now, clients: map[string]pooled{}}
}

// Client returns the gateway client of a member; callers do not close it.
// The lookup's error is returned as it is (wrapped), so that a caller can
// tell a member that left.
func (p *Pool) Client(ctx context.Context, name string) (*client.Client, error) {
	req, err := p.lookup(ctx, name)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if pc, ok := p.clients[name]; ok && pc.cert == req.Cert {
		return pc.c, nil
	}
	id, err := Parse(req, p.now())
	if err != nil {
		return nil, fmt.Errorf("cluster %s: its identity: %w", name, err)
	}
	c, err := id.Client()
	if err != nil {
		return nil, err
	}
	if old, ok := p.clients[name]; ok {
		old.c.Close()
	}
	p.clients[name] = pooled{cert: req.Cert, c: c}
	return c, nil
}

// Close releases every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, pc := range p.clients {
		pc.c.Close()
		delete(p.clients, name)
	}
}
