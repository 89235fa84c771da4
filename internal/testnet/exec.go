// SPDX-License-Identifier: Apache-2.0

package testnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
)

// User is an unprivileged account commands can run as (the rootless podman user).
type User struct {
	Name     string
	UID, GID int
	Home     string
}

// LookupUser resolves a local account by name.
func LookupUser(name string) (User, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return User{}, fmt.Errorf("lookup user %s: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return User{}, fmt.Errorf("uid of %s: %w", name, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return User{}, fmt.Errorf("gid of %s: %w", name, err)
	}
	return User{Name: name, UID: uid, GID: gid, Home: u.HomeDir}, nil
}

// RuntimeDir is the user's XDG_RUNTIME_DIR (/run/user/UID).
func (u User) RuntimeDir() string { return "/run/user/" + strconv.Itoa(u.UID) }

// Env is a minimal environment for the user (HOME, USER, XDG_RUNTIME_DIR, PATH) plus extra.
func (u User) Env(extra ...string) []string {
	return append([]string{
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"XDG_RUNTIME_DIR=" + u.RuntimeDir(),
		"PATH=" + defaultPath,
	}, extra...)
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HostCommand returns a command that runs argv as root inside the host namespace via
// nsenter --net (never `ip netns exec`, which remounts /sys and breaks podman's cgroups).
// env nil means the process environment with a sane PATH.
func (n *Net) HostCommand(ctx context.Context, env []string, argv ...string) *exec.Cmd {
	args := append([]string{"--net=" + n.HostPath(), "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	if env == nil {
		env = append(os.Environ(), "PATH="+defaultPath)
	}
	cmd.Env = env
	return cmd
}

// UserCommand returns a command that runs argv as u inside the host namespace (nsenter as root,
// then setpriv drops to u with its supplementary groups). The environment is u.Env(extra...).
func (n *Net) UserCommand(ctx context.Context, u User, extra []string, argv ...string) *exec.Cmd {
	args := append([]string{
		"--net=" + n.HostPath(), "--",
		"setpriv", "--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--init-groups", "--",
	}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = u.Env(extra...)
	cmd.Dir = "/"
	return cmd
}

// DialHost dials addr from inside the host namespace. Use it as http.Transport.DialContext (or
// similar) instead of wrapping a client in HostDo: clients that dial on other goroutines would
// otherwise connect from the real machine's namespace.
func (n *Net) DialHost(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.HostDo(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// WanCommand returns a command that runs argv as root inside the wan namespace (for example
// nft, to make wan reject or drop chosen traffic).
func (n *Net) WanCommand(ctx context.Context, argv ...string) *exec.Cmd {
	args := append([]string{"--net=" + n.WanPath(), "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append(os.Environ(), "PATH="+defaultPath)
	return cmd
}
