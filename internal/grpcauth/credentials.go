package grpcauth

import (
	"context"
	"crypto/tls"
	"net"

	"google.golang.org/grpc/credentials"

	"github.com/persys-dev/compute/internal/pki"
)

// Credentials are gRPC transport credentials that build their TLS
// configuration from a pki.Holder at every handshake, so a renewed
// certificate and a changed CA bundle (a CA rotation) apply to the next
// connection, also on the client side, where crypto/tls verifies the
// server against a fixed pool. Open connections are not disturbed.
type Credentials struct {
	h          *pki.Holder
	serverName string
	auth       tls.ClientAuthType
}

// HolderCredentials returns credentials for h. serverName, when set, is
// the name servers must carry (default: the host of the dialled address);
// auth is the client-certificate policy when serving.
func HolderCredentials(h *pki.Holder, serverName string, auth tls.ClientAuthType) *Credentials {
	return &Credentials{h: h, serverName: serverName, auth: auth}
}

// ClientHandshake implements credentials.TransportCredentials.
func (c *Credentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.h.ClientTLS(c.serverName)).ClientHandshake(ctx, authority, raw)
}

// ServerHandshake implements credentials.TransportCredentials.
func (c *Credentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.h.ServerTLS(c.auth)).ServerHandshake(raw)
}

// Info implements credentials.TransportCredentials.
func (c *Credentials) Info() credentials.ProtocolInfo {
	return credentials.NewTLS(&tls.Config{ServerName: c.serverName}).Info()
}

// Clone implements credentials.TransportCredentials.
func (c *Credentials) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName implements credentials.TransportCredentials.
func (c *Credentials) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

var _ credentials.TransportCredentials = (*Credentials)(nil)
