# SPDX-License-Identifier: MIT
"""Helpers for integration tests: the dev network, a running zerohopd, and clients in the client
namespace. An independent client: Debian's python3-msgpack and kernel sockets, no project code.

Everything started here is bounded in time and stopped by PID; namespaces are removed afterwards.
"""
import contextlib
import ctypes
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

import msgpack

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
APPLIANCE_IP = "198.18.0.1"
UDP_PORT = 9000

_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000

STATUS = {"ok": 0, "bad_request": 1, "unknown_model": 2, "busy": 3, "too_large": 4,
          "unauthorized": 5, "draining": 6, "internal": 7}


@contextlib.contextmanager
def netns(name):
    """Run the body in network namespace `name` (this thread only); sockets made inside stay there."""
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(there, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
        yield
    finally:
        _libc.setns(here, _CLONE_NEWNET)
        os.close(here)
        os.close(there)


class DevNet:
    """A private copy of the dev network under its own prefix, so tests never meet `make run`."""

    def __init__(self, prefix):
        self.prefix = prefix
        env = subprocess.run([f"{ROOT}/platform/devnet.sh", "env", "--name", prefix], check=True,
                             capture_output=True, text=True).stdout
        vals = dict(line.split("=", 1) for line in env.split())
        self.app_ns, self.client_ns = vals["APP_NS"], vals["CLIENT_NS"]
        self.app_if, self.client_if = vals["APP_IF"], vals["CLIENT_IF"]
        self.client_ip = vals["CLIENT_IP"]

    def up(self):
        subprocess.run([f"{ROOT}/platform/devnet.sh", "up", "--name", self.prefix], check=True,
                       capture_output=True, timeout=30)

    def down(self):
        subprocess.run([f"{ROOT}/platform/devnet.sh", "down", "--name", self.prefix],
                       capture_output=True, timeout=30)

    def client_mac(self):
        out = subprocess.run(["ip", "-n", self.client_ns, "-j", "link", "show", self.client_if],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]["address"]

    def neigh(self, ip):
        """The client kernel's neighbour entry for `ip`: (lladdr or None, state list)."""
        out = subprocess.run(["ip", "-n", self.client_ns, "-j", "neigh", "show", ip],
                             check=True, capture_output=True, text=True).stdout
        entries = json.loads(out) if out.strip() else []
        if not entries:
            return None, []
        return entries[0].get("lladdr"), entries[0].get("state", [])

    def flush_neigh(self):
        subprocess.run(["ip", "-n", self.client_ns, "neigh", "flush", "dev", self.client_if],
                       check=True, capture_output=True)


class Appliance:
    """zerohopd running in the app namespace, its stdout read line by line in a thread."""

    def __init__(self, build, net, extra_args=(), start_timeout_s=60, lcores="0-1", vdev_extra="", vdev=None):
        """`vdev` replaces the af_packet port, with {iface} for the app namespace's veth
        (e.g. "net_pcap0,iface={iface}"); `vdev_extra` is appended to it."""
        self.net = net
        self.build = build
        self.ctl_socket = f"/tmp/zh-test-{net.prefix}-{os.getpid()}-{id(self) & 0xffff:x}.sock"
        self.lines = queue.Queue()
        self.log = []
        cmd = ["ip", "netns", "exec", net.app_ns, f"{ROOT}/{build}/zerohopd",
               "--no-pci", "--no-huge", "-m", "512", "--file-prefix", f"zh-test-{net.prefix}-{os.getpid()}",
               "--vdev", (vdev or "net_af_packet0,iface={iface}").format(iface=net.app_if) + vdev_extra,
               *(["--lcores", lcores] if "@" in lcores else ["-l", lcores]),
               "--log-level=lib.eal:warning",
               "--", "--ip", APPLIANCE_IP, "--udp-port", str(UDP_PORT), "--idle", "backoff",
               # A private control socket: several appliances (and `make run`) may run at once.
               "--ctl-socket", self.ctl_socket,
               *extra_args]
        env = dict(os.environ)
        # Sanitizer builds: any leak or error makes zerohopd exit non-zero, which the fixture checks.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.mac = None
        deadline = time.monotonic() + start_timeout_s
        while True:
            line = self._next_line(deadline)
            m = re.search(r"MAC ([0-9A-Fa-f:]{17})", line)
            if m:
                self.mac = m.group(1).lower()
            if line.startswith("zerohopd: ready"):
                break

    def _read(self):
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _next_line(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("zerohopd said nothing in time:\n" + "".join(self.log[-40:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError("zerohopd exited:\n" + "".join(self.log[-40:]))
            return line

    def stats(self, timeout_s=10):
        """Ask for the counters (SIGUSR1) and return them as a dict."""
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._next_line(deadline)
            if line.startswith("zerohopd: stats "):
                return json.loads(line[len("zerohopd: stats "):])

    def lcore_stats(self, timeout_s=10):
        """Per rx/tx lcore counters (SIGUSR1's `lcores` line)."""
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._next_line(deadline)
            if line.startswith("zerohopd: lcores "):
                return json.loads(line[len("zerohopd: lcores "):])

    def stop(self, timeout_s=20):
        """SIGTERM, wait, and return (exit code, final counters or None)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        final = None
        for line in self.log:
            if line.startswith("zerohopd: stats "):
                final = json.loads(line[len("zerohopd: stats "):])
        return rc, final


class Client:
    """A UDP client socket in the client namespace."""

    def __init__(self, net, timeout_s=2.0):
        with netns(net.client_ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect((APPLIANCE_IP, UDP_PORT))
        self.sock.settimeout(timeout_s)

    def close(self):
        self.sock.close()

    def send_raw(self, payload):
        self.sock.send(payload)

    def recv_answer(self):
        data = self.sock.recv(65536)
        return msgpack.unpackb(data, raw=False, strict_map_key=False)

    def ask(self, request):
        self.send_raw(msgpack.packb(request))
        return self.recv_answer()

    def ask_raw(self, payload):
        self.send_raw(payload)
        return self.recv_answer()

    def expect_silence(self, wait_s=0.3):
        """True if nothing arrives within wait_s."""
        old = self.sock.gettimeout()
        self.sock.settimeout(wait_s)
        try:
            self.sock.recv(65536)
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(old)


def send_frame(net, frame):
    """Put one raw Ethernet frame on the client's veth."""
    with netns(net.client_ns):
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((net.client_if, 0))
        s.send(frame)
    finally:
        s.close()


def drops_total(stats):
    return sum(v for k, v in stats.items() if k.startswith("drop_"))
