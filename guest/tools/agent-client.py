#!/usr/bin/env python3
"""Talk to a twoOStwo guest agent (guest/README.md, "Command channel").

Connects to the guest's COM2 as exposed by QEMU (`-serial unix:PATH,server,nowait`)
or by anything else offering a unix or TCP stream socket, waits for the
"@@twoostwo ready NAME" line, then runs commands.

  agent-client.py SOCKET [--timeout S] [--no-wait] -- COMMAND...   run one command;
        its output goes to stdout (raw bytes), the exit status becomes ours
  agent-client.py SOCKET --ping                                      ping the agent
  agent-client.py SOCKET --selftest [--expect-module M] [--expect-mac MAC]
        the checks of guest/tools/qemu-test.sh (node "alice", eth0 10.0.0.2/24)

SOCKET is a unix socket path or HOST:PORT.
"""
import argparse
import base64
import socket
import sys
import time


class ProtocolError(Exception):
    pass


class AgentClient:
    def __init__(self, address, timeout=120.0, verbose=False):
        self.timeout = timeout
        self.verbose = verbose
        self.buf = b""
        self.ready_name = None
        self.stray = []
        if ":" in address and not address.startswith("/") and not address.startswith("."):
            host, port = address.rsplit(":", 1)
            self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(address)
        self.next_id = 1

    def close(self):
        self.sock.close()

    def _log(self, msg):
        if self.verbose:
            print(f"[agent-client] {msg}", file=sys.stderr)

    def send_line(self, text):
        self._log(f"-> {text}")
        self.sock.sendall(text.encode() + b"\n")

    def read_line(self, deadline):
        """Next line from the guest (without the newline), or TimeoutError."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the guest agent in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no line from the guest agent in time") from None
            if not chunk:
                raise ProtocolError("the guest's serial port closed (VM ended?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.rstrip(b"\r").decode("ascii", errors="replace")
        self._log(f"<- {text}")
        return text

    def wait_ready(self, timeout=None):
        """Wait for "@@twoostwo ready NAME"; returns NAME."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            line = self.read_line(deadline)
            if line.startswith("@@twoostwo ready"):
                self.ready_name = line[len("@@twoostwo ready"):].strip() or "guest"
                return self.ready_name
            self.stray.append(line)

    def ping(self, timeout=None):
        """Send @@ping and wait for the @@pong; also works when the ready line was missed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        pid = self.next_id
        self.next_id += 1
        self.send_line(f"@@ping {pid}")
        while True:
            line = self.read_line(deadline)
            if line == f"@@pong {pid}":
                return True
            if line.startswith("@@twoostwo ready"):
                self.ready_name = line[len("@@twoostwo ready"):].strip()
            elif line.startswith("@@error"):
                raise ProtocolError(line)
            else:
                self.stray.append(line)

    def exec(self, command, on_output=None, timeout=None):
        """Run a shell command in the guest; returns (output bytes, exit status)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        cid = self.next_id
        self.next_id += 1
        payload = base64.b64encode(command.encode() if isinstance(command, str) else command).decode()
        self.send_line(f"@@exec {cid} {payload}")
        out = bytearray()
        begun = False
        while True:
            line = self.read_line(deadline)
            if line == f"@@begin {cid}":
                begun = True
            elif line.startswith(f"@@end {cid} "):
                return bytes(out), int(line.split()[2])
            elif line.startswith("@@error"):
                raise ProtocolError(f"agent answered: {line}")
            elif begun and not line.startswith("@@"):
                # Each line is self-contained base64 (a multiple of 4 characters).
                chunk = base64.b64decode(line, validate=True)
                out += chunk
                if on_output:
                    on_output(chunk)
            else:
                self.stray.append(line)


def selftest(client, expect_module="ne2k_pci", expect_mac=None):
    ok = True

    def check(what, cond):
        nonlocal ok
        print(f"{'PASS' if cond else 'FAIL'}: {what}")
        ok = ok and cond

    cmd = "uname -a; ip addr show eth0; cat /proc/cpuinfo | head -3"
    t0 = time.monotonic()
    out, status = client.exec(cmd)
    print(f"--- exec 1: {cmd!r} -> status {status} ({time.monotonic() - t0:.2f} s)")
    sys.stdout.write(out.decode(errors="replace"))
    print("---")
    check("uname/ip/cpuinfo exit status 0", status == 0)
    check("eth0 has 10.0.0.2/24", b"inet 10.0.0.2/24" in out)

    out, status = client.exec("echo to-stdout; echo to-stderr >&2; exit 3")
    print(f"--- exit 3 -> status {status}, output {out!r}")
    check("exit status 3 comes back", status == 3)
    check("stdout and stderr merged", out == b"to-stdout\nto-stderr\n")

    out, status = client.exec(r"printf '\000\001\377'")
    print(f"--- binary -> status {status}, output {out!r}")
    check("binary bytes 00 01 ff come back exactly", out == b"\x00\x01\xff" and status == 0)

    out, status = client.exec("head -c 100000 /dev/urandom | tee /tmp/r | md5sum; cat /tmp/r")
    digest = out[:32].decode(errors="replace")
    import hashlib

    data = out[out.index(b"\n") + 1:]
    check("100000 random bytes round-trip (md5 matches)", len(data) == 100000 and hashlib.md5(data).hexdigest() == digest)

    out, status = client.exec("cat /proc/modules; hostname; cat /etc/twoostwo/node.conf")
    print(f"--- modules/hostname -> status {status}\n{out.decode(errors='replace')}---")
    mods = [ln.split()[0] for ln in out.decode(errors="replace").splitlines() if ln.endswith(")") or " Live " in ln]
    dep = "8390p" if expect_module == "ne" else "8390"
    check(f"{expect_module} and {dep} loaded, hostname alice",
          expect_module in mods and dep in mods and b"alice" in out)
    if expect_mac:
        out, status = client.exec("cat /sys/class/net/eth0/address")
        check(f"eth0 MAC is {expect_mac}", out.strip().decode() == expect_mac.lower())

    chunks = []
    t0 = time.monotonic()
    out, status = client.exec("for i in 1 2 3; do head -c 300 /dev/zero | tr '\\0' x; sleep 2; done",
                              on_output=lambda c: chunks.append((time.monotonic() - t0, len(c))))
    print(f"--- streaming: chunks (seconds, bytes): {[(round(t, 1), n) for t, n in chunks]}")
    check("output streamed while the command ran (first chunk before the first sleep ended)",
          len(out) == 900 and len(chunks) >= 3 and chunks[0][0] < 1.9)

    client.send_line("hello there")
    line = client.read_line(time.monotonic() + 30)
    print(f"--- garbage line -> {line!r}")
    check("unknown line answered with @@error", line.startswith("@@error "))
    client.send_line("@@exec 77 !!!notbase64")
    line = client.read_line(time.monotonic() + 30)
    print(f"--- bad base64 -> {line!r}")
    check("bad base64 answered with @@error", line.startswith("@@error exec 77"))
    check("ping answered", client.ping())
    out, status = client.exec("")
    check("empty command -> status 0, no output", out == b"" and status == 0)

    big = "x" * 30000
    t0 = time.monotonic()
    out, status = client.exec(f"echo {big} | wc -c")
    print(f"--- 30 KB command line -> {out!r} status {status} ({time.monotonic() - t0:.2f} s)")
    check("30 KB command line arrives intact", out.strip() == b"30001" and status == 0)

    # Two requests sent back to back: the second waits in the tty until the first ends.
    a, b = client.next_id, client.next_id + 1
    client.next_id += 2
    client.send_line(f"@@exec {a} " + base64.b64encode(b"sleep 1; echo first").decode())
    client.send_line(f"@@exec {b} " + base64.b64encode(b"echo second; exit 7").decode())
    deadline = time.monotonic() + 60
    got = []
    while len(got) < 6:
        got.append(client.read_line(deadline))
    print(f"--- back-to-back requests -> {got}")
    check("back-to-back requests answered in order",
          got == [f"@@begin {a}", base64.b64encode(b"first\n").decode(), f"@@end {a} 0",
                  f"@@begin {b}", base64.b64encode(b"second\n").decode(), f"@@end {b} 7"])
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("socket")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness / a command")
    ap.add_argument("--no-wait", action="store_true", help="do not wait for the ready line (use --ping to probe)")
    ap.add_argument("--ping", action="store_true")
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--expect-module", default="ne2k_pci", help="--selftest: NIC driver that must be loaded")
    ap.add_argument("--expect-mac", help="--selftest: MAC address eth0 must have")
    ap.add_argument("-v", "--verbose", action="store_true", help="log protocol lines on stderr")
    ap.add_argument("command", nargs="*", help="the command (after --), joined with spaces")
    argv = sys.argv[1:]
    command = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    args = ap.parse_args(argv)
    args.command = args.command + command

    client = AgentClient(args.socket, timeout=args.timeout, verbose=args.verbose)
    try:
        if not args.no_wait and not args.ping:
            t0 = time.monotonic()
            name = client.wait_ready()
            print(f"[agent-client] ready: {name} (after {time.monotonic() - t0:.1f} s)", file=sys.stderr)
        if args.ping:
            client.ping()
            print("[agent-client] pong", file=sys.stderr)
            return 0
        if args.selftest:
            return 0 if selftest(client, args.expect_module, args.expect_mac) else 1
        if not args.command:
            return 0
        out_stream = sys.stdout.buffer

        def emit(chunk):
            out_stream.write(chunk)
            out_stream.flush()

        _, status = client.exec(" ".join(args.command), on_output=emit)
        print(f"[agent-client] exit status {status}", file=sys.stderr)
        return status
    except (ProtocolError, TimeoutError, OSError) as e:
        print(f"[agent-client] error: {e}", file=sys.stderr)
        return 255
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
