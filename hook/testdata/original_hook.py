#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# FOR BENCHMARKING ONLY. This reconstructs the original (Python, v0.6.37) tool's createRuntime
# hook mechanism from docs/reference (original-tool.md §2.4, §3.5, §4.4, §6.3, §6.4) so that
# BenchmarkHookCreateRuntime can measure it side by side with terok-shield's hook. It is not
# part of terok-shield and is never installed. Like the original it is stdlib-only, runs under
# `#!/usr/bin/env python3`, reads the OCI state from stdin, validates the state_dir annotation,
# pipes the pre-generated ruleset.nft to `nsenter -n -t PID -- nft -f -` (no verification) and
# starts dnsmasq with `nsenter -n -t PID -- dnsmasq --conf-file=...`, checking its pid file.
import json
import os
import stat
import subprocess
import sys

BUNDLE_VERSION = 12
SENSITIVE = ("/etc", "/proc", "/sys", "/dev", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/root")
NSENTER_TIMEOUT = 30


class HookError(Exception):
    pass


def bootstrap_env():
    # HOME/XDG_RUNTIME_DIR from the outer host uid (uid_map), PATH pinned, LD_*/PYTHON* wiped.
    outer = os.getuid()
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, out, _count = line.split()
                if int(inside) == os.getuid():
                    outer = int(out)
                    break
    except OSError:
        pass
    for k in list(os.environ):
        if k.startswith("LD_") or k.startswith("PYTHON"):
            del os.environ[k]
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    os.environ.setdefault("HOME", "/root" if outer == 0 else "/home/%d" % outer)
    os.environ.setdefault("XDG_RUNTIME_DIR", "/run/user/%d" % outer)


def which(name, fallback):
    for d in os.environ["PATH"].split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK):
            return p
    return fallback


def under(path, roots):
    return any(path == r or path.startswith(r + "/") for r in roots)


def state_dir_from_oci(state):
    ann = state.get("annotations") or {}
    if not isinstance(ann, dict):
        raise HookError("annotations must be a JSON object")
    sd = ann.get("terok.shield.state_dir")
    if not isinstance(sd, str) or not os.path.isabs(sd):
        raise HookError("state_dir annotation missing or not absolute")
    if under(sd, SENSITIVE):
        raise HookError("state_dir %s is under a sensitive directory" % sd)
    resolved = os.path.realpath(sd, strict=True)
    if under(resolved, SENSITIVE):
        raise HookError("state_dir %s resolves under a sensitive directory" % sd)
    st = os.lstat(sd)
    if stat.S_ISLNK(st.st_mode):
        raise HookError("state_dir %s is a symlink" % sd)
    if not stat.S_ISDIR(st.st_mode):
        raise HookError("state_dir %s is not a directory" % sd)
    if st.st_uid != os.geteuid():
        raise HookError("state_dir %s is not owned by uid %d" % (sd, os.geteuid()))
    if st.st_mode & 0o022:
        raise HookError("state_dir %s is group- or world-writable" % sd)
    return sd, ann


def nsenter(pid, argv, stdin=None):
    cmd = ["/usr/bin/nsenter", "-n", "-t", str(pid), "--"] + argv
    try:
        p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=NSENTER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise HookError("nsenter command timed out after 30 s: cmd=%r" % (cmd,))
    if p.returncode != 0:
        out = p.stdout.decode(errors="replace").strip() or "(no output)"
        raise HookError("nsenter command failed (exit %d) cmd=%r:\n%s" % (p.returncode, cmd, out))


def is_our_dnsmasq(pid, conf):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    if not args or not (args[0] == b"dnsmasq" or args[0].endswith(b"/dnsmasq")):
        return False
    return ("--conf-file=" + conf).encode() in args


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


def start_dnsmasq(sd, pid):
    conf = os.path.join(sd, "dnsmasq.conf")
    if not os.path.exists(conf):
        return
    pidfile = os.path.join(sd, "dnsmasq.pid")
    old = read_pid(pidfile)
    if old and is_our_dnsmasq(old, conf):
        return
    try:
        os.unlink(pidfile)
    except FileNotFoundError:
        pass
    nsenter(pid, [which("dnsmasq", "/usr/sbin/dnsmasq"), "--conf-file=" + conf])
    new = read_pid(pidfile)
    if not new:
        raise HookError("dnsmasq started but PID file not written at %s. The container's DNS may not be functional." % pidfile)
    if not is_our_dnsmasq(new, conf):
        raise HookError("dnsmasq PID %d is not the expected process." % new)


def create_runtime(state):
    sd, ann = state_dir_from_oci(state)
    if ann.get("terok.shield.version") != str(BUNDLE_VERSION):
        raise HookError("bundle version '%s' != %d. Re-run pre_start()." % (ann.get("terok.shield.version"), BUNDLE_VERSION))
    pid = state.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        raise HookError("missing pid in OCI state")
    try:
        os.stat("/proc/%d/ns/net" % pid)
    except PermissionError:
        pass
    except FileNotFoundError:
        raise HookError("network namespace file missing for pid %d" % pid)
    ruleset = os.path.join(sd, "ruleset.nft")
    try:
        with open(ruleset, "rb") as f:
            rules = f.read()
    except FileNotFoundError:
        raise HookError("ruleset.nft not found: %s" % ruleset)
    nsenter(pid, [which("nft", "/usr/sbin/nft"), "-f", "-"], stdin=rules)
    with open(os.path.join(sd, "container.id"), "w") as f:
        f.write(str(state.get("id", ""))[:12] + "\n")
    start_dnsmasq(sd, pid)


def log_error(sd, msg):
    sys.stderr.write("terok-shield hook: %s\n" % msg)
    if sd:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(os.path.join(sd, "hook-error.log"), flags, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(msg + "\n")
        except OSError:
            pass


def main():
    bootstrap_env()
    stage = sys.argv[1] if len(sys.argv) > 1 else "createRuntime"
    sd = None
    try:
        try:
            state = json.load(sys.stdin)
        except ValueError as e:
            raise HookError("bad OCI state: %s" % e)
        if not isinstance(state, dict):
            raise HookError("OCI state must be a JSON object")
        if stage == "createRuntime":
            create_runtime(state)
        elif stage != "poststop":
            raise HookError("unknown stage '%s'" % stage)
    except Exception as e:  # noqa: BLE001 - the original logs every failure and exits 1
        log_error(sd, str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
