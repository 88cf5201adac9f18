package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mqttbridge/mqttbridge/bridge"
)

// TicketPrefix starts every ticket.
const TicketPrefix = "mbt_"

// issueTicket checks id's ticket rate, then stores a new ticket, known to
// the store only by its SHA-256, for TicketTTL or until id's credentials
// expire, whichever comes first.
func (a *Authenticator) issueTicket(ctx context.Context, id bridge.Identity) (string, time.Time, error) {
	if a.cfg.Tickets == nil {
		return "", time.Time{}, bridge.Errorf(bridge.ECodeNotFound, "tickets are not configured")
	}
	if err := a.ticketRate.AllowTicket(id); err != nil {
		return "", time.Time{}, err
	}
	var b [32]byte
	_, _ = rand.Read(b[:])
	tok := TicketPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	now := a.cfg.Now()
	exp := now.Add(a.cfg.TicketTTL)
	if !id.Expires.IsZero() && id.Expires.Before(exp) {
		exp = id.Expires
	}
	if !exp.After(now) {
		return "", time.Time{}, unauthorized("the credentials have expired")
	}
	if err := a.cfg.Tickets.Issue(ctx, sha256.Sum256([]byte(tok)), id, exp.Sub(now), a.cfg.TicketsPerIdentity); err != nil {
		return "", time.Time{}, err
	}
	return tok, exp, nil
}

// redeemTicket returns the ticket's identity once; a used, unknown or
// expired ticket is unauthorized. A store that cannot answer is
// store_unavailable (503): the ticket may still be good.
func (a *Authenticator) redeemTicket(ctx context.Context, tok string) (bridge.Identity, error) {
	if a.cfg.Tickets == nil {
		return bridge.Identity{}, unauthorized("tickets are not configured")
	}
	id, err := a.cfg.Tickets.Take(ctx, sha256.Sum256([]byte(tok)))
	if errors.Is(err, bridge.ErrNotFound) {
		return bridge.Identity{}, unauthorized("the ticket is unknown, used or expired; get a new one with POST /v1/tickets")
	}
	return id, err
}
