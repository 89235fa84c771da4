// SPDX-License-Identifier: Apache-2.0

package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the value of "v" written by this package.
const SchemaVersion = 1

// TimeFormat is the layout of "ts": RFC 3339, UTC, milliseconds.
const TimeFormat = "2006-01-02T15:04:05.000Z07:00"

// Action is what an event records.
type Action string

// The actions of schema version 1.
const (
	ActionSetup           Action = "setup"
	ActionAllow           Action = "allow"
	ActionDeny            Action = "deny"
	ActionUp              Action = "up"
	ActionDown            Action = "down"
	ActionBlock           Action = "block"
	ActionResolverStart   Action = "resolver_start"
	ActionResolverStop    Action = "resolver_stop"
	ActionResolverRestart Action = "resolver_restart"
	ActionTeardown        Action = "teardown"
	ActionError           Action = "error"
	ActionNotice          Action = "notice"
)

// Actions returns every action of schema version 1.
func Actions() []Action {
	return []Action{ActionSetup, ActionAllow, ActionDeny, ActionUp, ActionDown, ActionBlock,
		ActionResolverStart, ActionResolverStop, ActionResolverRestart, ActionTeardown, ActionError, ActionNotice}
}

// Event is one audit record; see the package documentation for the schema.
type Event struct {
	V         int
	TS        time.Time
	Container string
	Action    Action
	Target    string
	IPs       []string
	Mode      string
	Profiles  []string
	Reason    string
	Source    string
	Detail    string
}

// wire is the JSON form; field order is the schema's key order.
type wire struct {
	V         int      `json:"v"`
	TS        string   `json:"ts"`
	Container string   `json:"container"`
	Action    Action   `json:"action"`
	Target    string   `json:"target,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	Mode      string   `json:"mode,omitempty"`
	Profiles  []string `json:"profiles,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Source    string   `json:"source,omitempty"`
	Detail    string   `json:"detail,omitempty"`
}

// MarshalJSON writes the schema form, with ts in UTC milliseconds.
func (e Event) MarshalJSON() ([]byte, error) {
	return json.Marshal(wire{
		V: e.V, TS: e.TS.UTC().Format(TimeFormat), Container: e.Container, Action: e.Action,
		Target: e.Target, IPs: e.IPs, Mode: e.Mode, Profiles: e.Profiles, Reason: e.Reason, Source: e.Source, Detail: e.Detail,
	})
}

// UnmarshalJSON reads the schema form; v, ts, container and action are
// required.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.V < 1 {
		return errors.New("missing or invalid \"v\"")
	}
	ts, err := time.Parse(time.RFC3339Nano, w.TS)
	if err != nil {
		return fmt.Errorf("invalid \"ts\": %w", err)
	}
	if w.Container == "" || w.Action == "" {
		return errors.New("missing \"container\" or \"action\"")
	}
	*e = Event{V: w.V, TS: ts.UTC(), Container: w.Container, Action: w.Action, Target: w.Target, IPs: w.IPs,
		Mode: w.Mode, Profiles: w.Profiles, Reason: w.Reason, Source: w.Source, Detail: w.Detail}
	return nil
}
