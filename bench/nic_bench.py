#!/usr/bin/env python3
"""Side-by-side benchmark of two guests on one wire (issue 4).

twoOStwo: two twoostwo-vmm guests with RTL8029 cards whose backends are the
two ends of one SOCK_SEQPACKET socketpair. QEMU: two `qemu-system-i386 -accel
tcg` guests with `-device ne2k_pci`, wired to each other with `-netdev dgram`
over loopback UDP. Same kernel, initrd, node configuration and 128 MiB; both
drive the guests through their COM2 command channel (guest/tools/agent-client.py).

Per side it measures:

  rtt         average round-trip of `ping -c 20 -i 0.2` (ms)
  throughput  20 MiB of /tmp data through busybox nc over TCP (MiB/s),
              timed from the sender's start to the receiver holding it all

and prints a table with the ratio twoOStwo/QEMU. Nothing here is a test: the
numbers go into closing notes.

Both guests must time `ping` with a fine clock. twoostwo-vmm tells its
guests the TSC rate (tsc_early_khz, vmcore/monitor.cpp). A QEMU TCG guest
with this command line (acpi=off: no HPET or ACPI PM timer) fails to
calibrate its TSC against the PIT and falls back to the jiffies clocksource,
whose 4 ms steps make every ping read 0.000 or 4.000 ms -- an average of
0.20 ms then only says that 1 ping in 20 crossed a tick. Outside icount
mode TCG's guest TSC is the host's (QEMU cpu_get_host_ticks; checked here:
with it, guest uptime kept to host time within 0.3% over 20 s), so the QEMU
guests get tsc_early_khz set to the host's TSC rate, measured by
host_tsc_khz(), and use the TSC clocksource as twoOStwo's guests do.
The table also gives the median and the minimum round-trip, which other
load on the host disturbs less than the average (one late ping moves the
average of 20 a lot).

  bench/nic_bench.py [--vmm build/default/vmcore/twoostwo-vmm] [--guest build/guest/i386] [--mib 20]
                     [--jit off|on]

--jit passes twoostwo-vmm --jit (the emulator's JIT); the default is the
monitor's own default.
"""
import argparse
import ctypes
import mmap
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
# vm_bench: the agent client loader, and the command line twoostwo-vmm gives
# every guest, which QEMU's guests get too.
from vm_bench import CMDLINE, load_agent_client  # noqa: E402

AC = load_agent_client()


def host_tsc_khz():
    """The host's TSC rate in kHz, timed against CLOCK_MONOTONIC, or None.

    Runs RDTSC from a small executable mapping (x86-64 only; None where
    such a mapping is refused)."""
    if os.uname().machine != "x86_64":
        return None
    code = bytes([0x0F, 0x31,              # rdtsc
                  0x48, 0xC1, 0xE2, 0x20,  # shl rdx, 32
                  0x48, 0x09, 0xD0,        # or rax, rdx
                  0xC3])                   # ret
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    page.write(code)
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    rates = []
    for _ in range(5):
        t0, c0 = time.perf_counter_ns(), rdtsc()
        time.sleep(0.05)
        c1, t1 = rdtsc(), time.perf_counter_ns()
        rates.append((c1 - c0) * 1e6 / (t1 - t0))
    return int(sorted(rates)[len(rates) // 2])


def node_conf(name, ip):
    return (f"hostname {name}\nsysctl net.ipv6.conf.all.disable_ipv6=1\n"
            f"sysctl net.ipv6.conf.default.disable_ipv6=1\nmodule ne2k-pci\naddr eth0 {ip}/24\n")


def wait_socket(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not os.path.exists(path):
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{path} never appeared (process status {proc.poll()})")
        time.sleep(0.05)


def run(client, cmd, timeout=900):
    out, status = client.exec(cmd, timeout=timeout)
    return status, out.decode(errors="replace")


def measure(a, b, mib):
    """a and b are AgentClients of guests 10.0.0.1 and 10.0.0.2."""
    run(a, "ping -c 2 -W 5 10.0.0.2")  # ARP, warm-up
    _, text = run(a, "ping -c 20 -i 0.2 10.0.0.2")
    m = re.search(r"min/avg/max = ([0-9.]+)/([0-9.]+)/", text)
    if not m:
        raise RuntimeError(f"ping failed: {text}")
    rtt_min, rtt = float(m.group(1)), float(m.group(2))
    times = [float(t) for t in re.findall(r"time=([0-9.]+) ms", text)]
    rtt_median = statistics.median(times) if times else float("nan")
    run(b, "rm -f /tmp/recv; (sleep 900 | nc -l -p 5001 > /tmp/recv) </dev/null >/dev/null 2>&1 &")
    run(a, f"dd if=/dev/urandom of=/tmp/send bs=1M count={mib} 2>/dev/null")
    size = mib << 20
    t0 = time.time()
    run(a, "nc 10.0.0.2 5001 < /tmp/send")
    status, text = run(b, f"for i in $(seq 3000); do [ \"$(stat -c %s /tmp/recv)\" = {size} ] && break; sleep 0.1; done; "
                          "stat -c %s /tmp/recv")
    elapsed = time.time() - t0
    if text.strip() != str(size):
        raise RuntimeError(f"transfer incomplete: {text}")
    _, sa = run(a, "md5sum < /tmp/send")
    _, sb = run(b, "md5sum < /tmp/recv")
    if sa != sb:
        raise RuntimeError(f"checksums differ: {sa} {sb}")
    return rtt, rtt_median, rtt_min, mib / elapsed


def twoostwo_side(args, work):
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    procs, clients = [], []
    try:
        for name, ip, end in (("a", "10.0.0.1", left), ("b", "10.0.0.2", right)):
            d = os.path.join(work, "twoostwo-" + name)
            os.makedirs(d)
            with open(os.path.join(d, "node.conf"), "w") as f:
                f.write(node_conf(name, ip))
            fd = end.fileno()
            p = subprocess.Popen([args.vmm, "--name", name, "--kernel", os.path.join(args.guest, "vmlinuz"), "--initrd",
                                  os.path.join(args.guest, "initrd.cpio"), "--cpu-engine=emulator", "--node-config",
                                  os.path.join(d, "node.conf"), "--console-log", os.path.join(d, "console.log"),
                                  "--command-socket", os.path.join(d, "com2.sock"), "-q",
                                  "--nic", f"model=rtl8029,backend=fd,fd={fd}"] + (["--jit", args.jit] if args.jit else []),
                                 pass_fds=[fd], stderr=open(os.path.join(d, "stderr"), "w"))
            procs.append(p)
        left.close()
        right.close()
        for name, p in zip("ab", procs):
            sock = os.path.join(work, "twoostwo-" + name, "com2.sock")
            wait_socket(sock, p)
            c = AC.AgentClient(sock, timeout=300)
            c.wait_ready()
            clients.append(c)
        return measure(clients[0], clients[1], args.mib)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def qemu_side(args, work):
    cmdline = CMDLINE
    khz = host_tsc_khz()
    if khz:
        cmdline += f" tsc_early_khz={khz}"
    else:
        print("nic_bench: cannot measure the host's TSC rate: QEMU's guests time pings with 4 ms jiffies",
              file=sys.stderr)
    with open(os.path.join(args.guest, "initrd.cpio"), "rb") as f:
        base = f.read()
    base += b"\0" * (-len(base) % 4)  # the node archive starts 4-byte aligned, as the monitor appends it
    procs, clients = [], []
    ports = {"a": (21001, 21002), "b": (21002, 21001)}
    try:
        for name, ip in (("a", "10.0.0.1"), ("b", "10.0.0.2")):
            d = os.path.join(work, "qemu-" + name)
            os.makedirs(os.path.join(d, "node", "etc", "twoostwo"))
            with open(os.path.join(d, "node", "etc", "twoostwo", "node.conf"), "w") as f:
                f.write(node_conf(name, ip))
            cpio = subprocess.run("find etc | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet", shell=True,
                                  cwd=os.path.join(d, "node"), capture_output=True, check=True).stdout
            initrd = os.path.join(d, "initrd.cpio")
            with open(initrd, "wb") as f:
                f.write(base + cpio)
            local, remote = ports[name]
            mac = "52:54:00:00:00:0" + ("1" if name == "a" else "2")
            p = subprocess.Popen(["qemu-system-i386", "-accel", "tcg", "-m", "128", "-display", "none", "-monitor",
                                  "none", "-no-reboot", "-kernel", os.path.join(args.guest, "vmlinuz"), "-initrd",
                                  initrd, "-append", cmdline, "-serial", "file:" + os.path.join(d, "console.log"),
                                  "-serial", "unix:" + os.path.join(d, "com2.sock") + ",server,nowait",
                                  "-netdev", f"dgram,id=n0,local.type=inet,local.host=127.0.0.1,local.port={local},"
                                             f"remote.type=inet,remote.host=127.0.0.1,remote.port={remote}",
                                  "-device", f"ne2k_pci,netdev=n0,romfile=,mac={mac}"],
                                 stderr=open(os.path.join(d, "stderr"), "w"))
            procs.append(p)
        # Connect to both before waiting for either: QEMU's `server,nowait`
        # serial drops what the guest writes while no client is connected,
        # and the agent says "ready" only once.
        for name, p in zip("ab", procs):
            sock = os.path.join(work, "qemu-" + name, "com2.sock")
            wait_socket(sock, p)
            clients.append(AC.AgentClient(sock, timeout=300))
        for c in clients:
            c.wait_ready()
        return measure(clients[0], clients[1], args.mib)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vmm", default=os.path.join(ROOT, "build", "default", "vmcore", "twoostwo-vmm"))
    ap.add_argument("--guest", default=os.path.join(ROOT, "build", "guest", "i386"))
    ap.add_argument("--mib", type=int, default=20)
    ap.add_argument("--jit", choices=["off", "on"], help="twoostwo-vmm --jit (default: the monitor's default)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="twoostwo-nic-bench-") as work:
        t_rtt, t_med, t_min, t_tp = twoostwo_side(args, work)
        print(f"twoostwo: rtt {t_rtt:.2f} ms (median {t_med:.2f}, min {t_min:.2f}), throughput {t_tp:.2f} MiB/s",
              flush=True)
        q_rtt, q_med, q_min, q_tp = qemu_side(args, work)
        print(f"qemu:     rtt {q_rtt:.2f} ms (median {q_med:.2f}, min {q_min:.2f}), throughput {q_tp:.2f} MiB/s",
              flush=True)
    def ratio(a, b):
        return f"{a / b:.2f}x" if b > 0 else "-"

    print("| what | twoostwo | qemu | twoostwo/QEMU | target |")
    print("|---|---|---|---|---|")
    print(f"| ping round-trip, average (ms) | {t_rtt:.2f} | {q_rtt:.2f} | {ratio(t_rtt, q_rtt)} | <= 1x |")
    print(f"| ping round-trip, median (ms) | {t_med:.2f} | {q_med:.2f} | {ratio(t_med, q_med)} | |")
    print(f"| ping round-trip, minimum (ms) | {t_min:.2f} | {q_min:.2f} | {ratio(t_min, q_min)} | |")
    print(f"| TCP throughput, {args.mib} MiB (MiB/s) | {t_tp:.2f} | {q_tp:.2f} | {ratio(t_tp, q_tp)} | >= 2x |")


if __name__ == "__main__":
    sys.exit(main())
