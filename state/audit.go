// SPDX-License-Identifier: Apache-2.0

//go:build unix

package state

import "github.com/terok-ai/terok-shield/audit"

// AuditSettings are the audit options the shim recorded from config.yml, so the hook and the
// control commands (which do not read the user's config) log the way the user asked.
type AuditSettings struct {
	Disabled bool  `json:"disabled,omitempty"`  // audit.enabled: false
	MaxBytes int64 `json:"max_bytes,omitempty"` // audit.max_bytes; 0 = audit's default
}

// AuditLog appends events to a bundle's audit log.
type AuditLog interface {
	Append(audit.Event) error
}

// discard is the audit log of a bundle whose owner turned auditing off.
type discard struct{}

func (discard) Append(audit.Event) error { return nil }

// AuditLog returns the bundle's audit log with the settings recorded in its bundle.json
// (defaults when it cannot be read: an unreadable bundle must not silence auditing).
func (b *Bundle) AuditLog() AuditLog {
	d, err := b.Load()
	if err != nil {
		d = nil
	}
	return b.AuditLogFor(d)
}

// AuditLogFor is AuditLog for a caller that has already loaded the bundle (nil d: defaults).
func (b *Bundle) AuditLogFor(d *Data) AuditLog {
	var s AuditSettings
	if d != nil {
		s = d.Audit
	}
	if s.Disabled {
		return discard{}
	}
	return audit.New(b.root, audit.Options{MaxBytes: s.MaxBytes})
}
