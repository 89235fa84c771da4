// SPDX-License-Identifier: Apache-2.0

package control

import (
	"fmt"
	"io"
	"strings"

	"github.com/terok-ai/terok-shield/audit"
)

// WriteChanges prints one line per allow/deny change:
//
//	Allowed example.com -> 93.184.215.14, 2606:2800:21f:cb07:6820:80da:af6b:8b2c for web
//	Denied 203.0.113.7 for web
func WriteChanges(w io.Writer, changes []Change) error {
	for _, ch := range changes {
		verb := "Allowed"
		if ch.Action == "deny" {
			verb = "Denied"
		}
		line := verb + " " + ch.Target
		switch {
		case (ch.Kind == "domain") && len(ch.IPs) > 0 && ch.Action == "allow":
			line += " -> " + strings.Join(ch.IPs, ", ")
		case ch.Kind == "domain" && len(ch.IPs) > 0:
			line += " (" + strings.Join(ch.IPs, ", ") + ")"
		}
		line += " for " + ch.Container
		if !ch.Changed {
			line += " (already " + map[string]string{"allow": "allowed", "deny": "denied"}[ch.Action] + ")"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
		for _, n := range ch.Notes {
			if _, err := fmt.Fprintln(w, "  note: "+n); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteModeChange prints the outcome of up, down or block.
func WriteModeChange(w io.Writer, mc *ModeChange) error {
	var s string
	switch mc.Mode {
	case "up":
		s = "Shield up for " + mc.Container
	case "down":
		s = "Shield down for " + mc.Container
	case "down_all":
		s = "Shield down for " + mc.Container + " (all traffic, private ranges included)"
	case "block":
		s = "Shield blocked for " + mc.Container + ": all traffic dropped"
	default:
		s = "Shield " + mc.Mode + " for " + mc.Container
	}
	_, err := fmt.Fprintln(w, s)
	return err
}

// WriteStatus prints a container's state as one word (scriptable), the reason for inactive
// and error on a second line, then the resolver's state when it has one.
func WriteStatus(w io.Writer, st *ContainerStatus) error {
	if _, err := fmt.Fprintln(w, st.State); err != nil {
		return err
	}
	if st.Detail != "" && (st.State == StateError || st.State == StateInactive) {
		if _, err := fmt.Fprintln(w, "  "+st.Detail); err != nil {
			return err
		}
	}
	if st.ResolverState != "" {
		line := "  resolver: " + st.ResolverState
		if st.ResolverError != "" {
			line += " (" + st.ResolverError + ")"
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// WriteRules prints the state line and the live table.
func WriteRules(w io.Writer, st *ContainerStatus) error {
	fmt.Fprintf(w, "State: %s\n", st.State)
	if st.Detail != "" {
		fmt.Fprintf(w, "Detail: %s\n", st.Detail)
	}
	if st.Listing == "" {
		_, err := fmt.Fprintf(w, "No rules found for %s\n", st.Container)
		return err
	}
	_, err := io.WriteString(w, st.Listing)
	return err
}

// WriteGlobal prints the installation overview.
func WriteGlobal(w io.Writer, gs *GlobalStatus) error {
	hooks := gs.Hooks + " (" + gs.HooksDir + ")"
	if gs.HooksProblem != "" {
		hooks += ": " + gs.HooksProblem
	}
	resolver := gs.ResolverTier
	if gs.ResolverDetail != "" {
		resolver += " (" + gs.ResolverDetail + ")"
	}
	profiles := strings.Join(gs.Profiles, ", ")
	if profiles == "" {
		profiles = "(none)"
	}
	_, err := fmt.Fprintf(w, "Version:    %s\nState dir:  %s\nHooks:      %s\nResolver:   %s\nProfiles:   %s\nContainers: %d\n",
		gs.Version, gs.StateDir, hooks, resolver, profiles, len(gs.Containers))
	return err
}

// WriteEvent prints one audit event on one line: time, container, action, then the keys that
// are set.
func WriteEvent(w io.Writer, e audit.Event) error {
	parts := []string{e.TS.UTC().Format(audit.TimeFormat), e.Container, string(e.Action)}
	if e.Target != "" {
		parts = append(parts, e.Target)
	}
	if len(e.IPs) > 0 {
		parts = append(parts, "["+strings.Join(e.IPs, " ")+"]")
	}
	for _, kv := range [][2]string{{"mode", e.Mode}, {"profiles", strings.Join(e.Profiles, ",")}, {"reason", e.Reason}, {"source", e.Source}, {"detail", e.Detail}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+quoteIfSpace(kv[1]))
		}
	}
	_, err := fmt.Fprintln(w, strings.Join(parts, " "))
	return err
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t\"") {
		return fmt.Sprintf("%q", s)
	}
	return s
}

// WriteChecks prints doctor's findings, with the fix under each failure.
func WriteChecks(w io.Writer, checks []Check) error {
	for _, c := range checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "%s %s: %s\n", mark, c.Name, c.Detail)
		if !c.OK && c.Fix != "" {
			fmt.Fprintf(w, "     fix: %s\n", c.Fix)
		}
	}
	return nil
}
