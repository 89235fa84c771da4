// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// Caps is the capability and privilege state from /proc/self/status.
type Caps struct {
	Inh        string   `json:"inh"`
	Prm        string   `json:"prm"`
	Eff        string   `json:"eff"`
	Bnd        string   `json:"bnd"`
	Amb        string   `json:"amb"`
	EffNames   []string `json:"eff_names"`
	BndNames   []string `json:"bnd_names"`
	NoNewPrivs string   `json:"no_new_privs,omitempty"`
	Seccomp    string   `json:"seccomp,omitempty"`
	UID        string   `json:"uid,omitempty"`
}

// capNames indexes capability numbers (linux/capability.h).
func capNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

// DecodeCaps turns a hex capability mask into names (unknown bits as "cap_N").
func DecodeCaps(hexMask string) ([]string, error) {
	v, err := strconv.ParseUint(hexMask, 16, 64)
	if err != nil {
		return nil, fmt.Errorf("capability mask %q: %w", hexMask, err)
	}
	names := capNames()
	out := []string{}
	for i := 0; i < 64; i++ {
		if v&(1<<i) == 0 {
			continue
		}
		if i < len(names) {
			out = append(out, names[i])
		} else {
			out = append(out, "cap_"+strconv.Itoa(i))
		}
	}
	return out, nil
}

// ParseStatus extracts Caps from the text of /proc/PID/status.
func ParseStatus(b []byte) (*Caps, error) {
	c := &Caps{}
	fields := map[string]*string{
		"CapInh": &c.Inh, "CapPrm": &c.Prm, "CapEff": &c.Eff, "CapBnd": &c.Bnd, "CapAmb": &c.Amb,
		"NoNewPrivs": &c.NoNewPrivs, "Seccomp": &c.Seccomp, "Uid": &c.UID,
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if p, known := fields[k]; ok && known {
			*p = strings.Join(strings.Fields(v), " ")
		}
	}
	if c.Eff == "" || c.Bnd == "" {
		return nil, errors.New("status has no CapEff/CapBnd")
	}
	var err error
	if c.EffNames, err = DecodeCaps(c.Eff); err != nil {
		return nil, err
	}
	if c.BndNames, err = DecodeCaps(c.Bnd); err != nil {
		return nil, err
	}
	return c, nil
}

func probeCaps(path string) Result {
	r := Result{}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(r, err)
	}
	c, err := ParseStatus(b)
	if err != nil {
		return fail(r, err)
	}
	r.Result, r.Caps = OK, c
	return r
}

// attempt records the outcome of one try.
func attempt(name string, err error) Attempt {
	a := Attempt{Name: name}
	a.Result, a.Errno = classify(err)
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

// summarize sets r.Result: ok if any attempt succeeded, refused if all were refused, else error.
func summarize(r Result) Result {
	r.Result = Refused
	for _, a := range r.Attempts {
		if a.Result == OK {
			r.Result = OK
			return r
		}
		if a.Result != Refused {
			r.Result = Error
		}
	}
	return r
}

func probeRawSock() Result {
	htons := func(v uint16) int { return int(v>>8 | v<<8&0xff00) }
	tries := []struct {
		name              string
		family, typ, prot int
	}{
		{"packet-raw", unix.AF_PACKET, unix.SOCK_RAW, htons(unix.ETH_P_ALL)},
		{"packet-dgram", unix.AF_PACKET, unix.SOCK_DGRAM, htons(unix.ETH_P_IP)},
		{"inet-raw-icmp", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
		{"inet-raw-ipproto-raw", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW},
		{"inet6-raw-icmp", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6},
	}
	r := Result{}
	for _, t := range tries {
		fd, err := unix.Socket(t.family, t.typ|unix.SOCK_CLOEXEC, t.prot)
		if err == nil {
			unix.Close(fd)
		}
		r.Attempts = append(r.Attempts, attempt(t.name, err))
	}
	return summarize(r)
}

// probeNft tries to create (then remove) an nftables table through netlink, and to list tables.
func probeNft() Result {
	r := Result{}
	c, err := nftables.New()
	if err != nil {
		r.Attempts = append(r.Attempts, attempt("netlink", err))
		return summarize(r)
	}
	tbl := c.AddTable(&nftables.Table{Name: "terok_probe", Family: nftables.TableFamilyINet})
	err = c.Flush()
	r.Attempts = append(r.Attempts, attempt("newtable", err))
	if err == nil {
		c.DelTable(tbl)
		_ = c.Flush()
	}
	_, err = c.ListTables()
	r.Attempts = append(r.Attempts, attempt("listtables", err))
	return summarize(r)
}

// probeUserns re-executes the probe as "nft" in a new user+network namespace (mapping the
// current uid to root). Its result is "refused" when the namespaces cannot be created, else
// that of the nft attempt inside them.
func probeUserns(timeout time.Duration) Result {
	r := Result{}
	self, err := os.Executable()
	if err != nil {
		return fail(r, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, self, "nft")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNET,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		r.Attempts = append(r.Attempts, attempt("clone-newuser-newnet", err))
		return summarize(r)
	}
	r.Attempts = append(r.Attempts, attempt("clone-newuser-newnet", nil))
	err = cmd.Wait()
	inner, derr := Decode(bytes.TrimSpace(stdout.Bytes()))
	a := Attempt{Name: "nft-in-userns", Inner: &inner}
	switch {
	case err != nil:
		a.Result, a.Error = Error, err.Error()
	case derr != nil:
		a.Result, a.Error = Error, derr.Error()
	default:
		a.Result = inner.Result
	}
	r.Attempts = append(r.Attempts, a)
	r.Result = a.Result
	return r
}
