#!/usr/bin/env python3
"""Lab start-up benchmark: `twoostwo up` of star labs beside as many QEMU TCG guests.

For each size N (--sizes, default 2,8,32) it runs, one after the other:

twoOStwo  A generated star lab: N nodes h1..hN (10.0.0.1/24 ..) with one
          RTL8029 each, all linked to one learning switch, captures on (the
          default: one pcap file per link, in the temporary directory),
          --memory MiB per node (default 64), cpu_engine --engine (default
          emulator). `twoostwo up` runs with TWOOSTWO_RUN_DIR in a temporary
          directory; "up" is the wall time until `twoostwo up` returns, which
          it does once every guest's agent has said "@@twoostwo ready" on COM2.
          Then `twoostwo status --json` must show N ready nodes and
          `twoostwo exec h1 -- ping` must reach hN across the switch.
QEMU      N `qemu-system-i386 -accel tcg -m MEMORY -vga none` guests with the
          same kernel, initrd (plus the same node.conf appended as a second
          cpio archive, as twoostwo-vmm does), and the kernel command line the
          twoOStwo guests got (read from h1's /proc/cmdline -- with --only
          qemu, twoostwo-vmm's default as bench/vm_bench.py has it -- with
          tsc_early_khz set to the host's TSC rate instead of the emulator's
          1 GHz, as bench/nic_bench.py explains), each with `-device
          ne2k_pci,romfile=` on one `vde_switch`. "up" is the wall time from
          launching the first QEMU to every guest's "@@twoostwo ready" line on
          its COM2 (a Unix socket, as bench/nic_bench.py reads it). The node.conf
          archives are built before the clock starts; the monitor builds its
          own inside the timed part. Then h1 must ping hN across vde_switch.

Memory    Once all are ready and the ping went through: PSS and RSS
          (/proc/PID/smaps_rollup) of every monitor plus the lab supervisor,
          resp. every QEMU plus vde_switch, divided by N. PSS splits shared
          pages (the binaries, libraries, page cache) between the processes that
          map them; RSS counts them in every process. For the largest N the
          PSS is taken again after the idle window.
Idle CPU  For the largest N only: utime+stime (/proc/PID/stat) of the same
          processes over --idle-seconds (default 30) once all are ready, as %
          of one core (all nodes together, and per node).

Each measurement records the host's 1-minute load average at its start and
end, and how busy the host's CPUs were (/proc/stat) in the 2 s before it
started, so that runs disturbed by other work show: the load average lags by
minutes and the lab itself drives it up (N busy guests), so the busy figure
is the better sign of outside work at the start. Everything the bench starts is
stopped even on errors and Ctrl-C: `twoostwo down`, then (if a lab survives)
its processes by PID; the QEMU and vde_switch processes by PID. Nothing here
is a test: the final markdown table goes into closing notes.

  bench/lab_bench.py [--sizes 2,8,32] [--memory 64] [--idle-seconds 30]
                     [--engine emulator] [--only twoostwo|qemu] [--json FILE]
                     [--twoostwo build/default/topology/twoostwo] [--guest build/guest/i386]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing the sibling benches
from vm_bench import CMDLINE, load_agent_client  # noqa: E402  the monitor's default command line
from nic_bench import host_tsc_khz  # noqa: E402

AC = load_agent_client()
TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def host_busy(seconds=2.0):
    """Percent of all CPUs busy (not idle or iowait) over the next `seconds`, from /proc/stat."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(seconds)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def cpu_seconds(pid):
    """utime + stime of all the process's threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def memory_of(pid):
    """smaps_rollup of a process: {Rss, Pss, Pss_Anon, Pss_File, ...} in KiB."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def memory_sum(node_pids, shared_pid, n):
    """Per-node PSS and RSS (MiB): the nodes' processes plus a shared one (supervisor / vde_switch)."""
    nodes = [memory_of(p) for p in node_pids]
    shared = memory_of(shared_pid)
    keys = ("Pss", "Rss", "Pss_Anon", "Pss_File")
    total = {k: sum(m.get(k, 0) for m in nodes) + shared.get(k, 0) for k in keys}
    return {
        "pss_per_node_mib": total["Pss"] / 1024 / n,
        "rss_per_node_mib": total["Rss"] / 1024 / n,
        "pss_anon_per_node_mib": total["Pss_Anon"] / 1024 / n,
        "pss_file_per_node_mib": total["Pss_File"] / 1024 / n,
        "node_process_pss_mib": sum(m["Pss"] for m in nodes) / 1024 / n,
        "shared_process_pss_mib": shared["Pss"] / 1024,
        "shared_process_rss_mib": shared["Rss"] / 1024,
    }


def idle_cpu(pids, seconds, n):
    time.sleep(2)  # let the last exec and ARP settle
    la0 = loadavg()
    c0, w0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
    time.sleep(seconds)
    c1, w1 = sum(cpu_seconds(p) for p in pids), time.monotonic()
    pct = 100.0 * (c1 - c0) / (w1 - w0)
    return {"idle_cpu_pct": pct, "idle_cpu_pct_per_node": pct / n, "idle_seconds": w1 - w0,
            "idle_load": [la0, loadavg()]}


def ip_of(i):
    return f"10.0.0.{i}"


def node_conf(lab, name, i):
    """What topology/planner.cpp node_conf() writes for a star node with one RTL8029."""
    return (f"# node.conf of node '{name}' in lab '{lab}' (generated by twoostwo)\n"
            f"hostname {name}\nmodule ne2k-pci\naddr eth0 {ip_of(i)}/24\n")


def lab_yaml(lab, n, memory, engine, captures=True):
    lines = [f"# star lab of {n} nodes around one switch (bench/lab_bench.py)",
             f"name: {lab}", f"captures: {'captures' if captures else 'false'}", "defaults:", f"  memory: {memory}",
             f"  cpu_engine: {engine}", "nodes:"]
    lines += [f"  h{i}: {{nics: {{eth0: {{addresses: [{ip_of(i)}/24]}}}}}}" for i in range(1, n + 1)]
    lines += ["switches:", "  hub: {}", "links:"]
    lines += [f"  - [h{i}:eth0, hub]" for i in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def cpio_newc(entries):
    """A cpio "newc" archive of (name, mode, data) entries, as vmcore/boot/cpio.cpp writes it."""
    out = bytearray()

    def put(name, mode, data, ino):
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 2 if mode & 0o040000 else 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % v for v in fields) + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, 1):
        put(name, mode, data, ino)
    put("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def node_archive(conf):
    return cpio_newc([("etc", 0o040755, b""), ("etc/twoostwo", 0o040755, b""),
                      ("etc/twoostwo/node.conf", 0o100644, conf.encode())])


class Cleanup:
    """Everything started, so that it can be stopped on any exit."""

    def __init__(self):
        self.labs = []     # (twoostwo, lab name, env, work dir)
        self.procs = []    # Popen of QEMU guests and vde_switch (with its stdin pipe)

    def stop_lab(self, twoostwo, lab, env, work):
        try:
            subprocess.run([twoostwo, "down", "--lab", lab], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
        except (subprocess.TimeoutExpired, OSError):
            pass
        # A supervisor that did not answer: its processes are the ones whose
        # command line names this lab's own temporary directory.
        left = [pid for pid in own_pids_naming(work)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while left and time.monotonic() < deadline:
                left = [p for p in left if os.path.exists(f"/proc/{p}")]
                time.sleep(0.1)
            if not left:
                break
        if left:
            log(f"warning: processes {left} of lab '{lab}' survived SIGKILL")

    def stop_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def all(self):
        for lab in self.labs:
            self.stop_lab(*lab)
        self.labs = []
        self.stop_procs()


def own_pids_naming(text):
    """PIDs of this user's processes whose command line contains `text` (a unique temporary path)."""
    pids = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != os.getuid():
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            pass
    return pids


def milestones(n):
    step = max(1, n // 4)
    return {k for k in range(step, n + 1, step)} | {n}


def twoostwo_side(n, args, work, cleanup, result):
    d = os.path.join(work, f"twoostwo-{n}")
    os.makedirs(d)
    lab = f"bench{n}"
    yaml = os.path.join(d, f"{lab}.yaml")
    with open(yaml, "w") as f:
        f.write(lab_yaml(lab, n, args.memory, args.engine, captures=not args.no_captures))
    env = dict(os.environ, TWOOSTWO_RUN_DIR=os.path.join(d, "run"), TWOOSTWO_GUEST_DIR=os.path.dirname(args.guest))
    if args.vmm:
        env["TWOOSTWO_VMM"] = args.vmm
    tw = args.twoostwo
    busy = host_busy()
    la0 = loadavg()
    log(f"[N={n} twoostwo] up {yaml} (load {la0:.2f}, host CPU {busy:.0f}% busy)")
    cleanup.labs.append((tw, lab, env, d))
    t0 = time.monotonic()
    up = subprocess.Popen([tw, "up", yaml, "--timeout", str(int(args.timeout))], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    ready, marks, out = 0, milestones(n), []
    for line in up.stdout:
        out.append(line)
        if re.match(r"^\S+: ready \(", line):
            ready += 1
            if ready in marks:
                log(f"[N={n} twoostwo] {ready}/{n} ready at {time.monotonic() - t0:.1f} s")
    rc = up.wait()
    elapsed = time.monotonic() - t0
    la1 = loadavg()
    with open(os.path.join(d, "up.out"), "w") as f:
        f.writelines(out)
    if rc != 0:
        raise RuntimeError(f"twoostwo up exited with {rc}:\n" + "".join(out[-20:]))
    log(f"[N={n} twoostwo] up returned after {elapsed:.2f} s (load {la1:.2f})")

    def cli(*words, timeout=120):
        r = subprocess.run([tw, *words], env=env, capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    rc, text = cli("status", "--lab", lab, "--json")
    if rc != 0:
        raise RuntimeError(f"twoostwo status: {text}")
    status = json.loads(text)
    states = [x["state"] for x in status["nodes"]]
    if len(states) != n or any(s != "ready" for s in states):
        raise RuntimeError(f"twoostwo status: {states.count('ready')}/{n} ready: {states}")
    pids = [x["pid"] for x in status["nodes"]]
    supervisor = parent_of(pids[0])
    if any(parent_of(p) != supervisor for p in pids):
        raise RuntimeError("the monitors do not share one parent (the supervisor)")
    rc, text = cli("exec", "--lab", lab, "h1", "--", f"ping -c 2 -W 10 {ip_of(n)}")
    if rc != 0:
        raise RuntimeError(f"ping from h1 to {ip_of(n)} failed ({rc}): {text}")
    log(f"[N={n} twoostwo] status: {n}/{n} ready; h1 -> h{n} ping ok")
    rc, cmdline = cli("exec", "--lab", lab, "h1", "--", "cat /proc/cmdline")
    for i in (1, n):
        with open(os.path.join(d, "run", lab, "nodes", f"h{i}", "node.conf")) as f:
            if f.read() != node_conf(lab, f"h{i}", i):
                log(f"warning: h{i}'s node.conf differs from what the QEMU side gets (node_conf() here)")
    mem = memory_sum(pids, supervisor, n)
    result.update(up_s=elapsed, up_load=[la0, la1], busy_before_pct=busy, **mem,
                  cmdline=cmdline.strip() if rc == 0 else None)
    log(f"[N={n} twoostwo] memory per node: PSS {mem['pss_per_node_mib']:.1f} MiB, RSS "
        f"{mem['rss_per_node_mib']:.1f} MiB (supervisor PSS {mem['shared_process_pss_mib']:.1f} MiB)")
    if n == args.idle_n:
        log(f"[N={n} twoostwo] idle CPU over {args.idle_seconds:.0f} s ...")
        result.update(idle_cpu(pids + [supervisor], args.idle_seconds, n))
        result["pss_per_node_mib_after_idle"] = memory_sum(pids, supervisor, n)["pss_per_node_mib"]
        log(f"[N={n} twoostwo] idle: {result['idle_cpu_pct']:.1f}% of one core")
    if args.smaps_dir:
        for name, pid in (("monitor-h1", pids[0]), ("supervisor", supervisor)):
            shutil.copyfile(f"/proc/{pid}/smaps", os.path.join(args.smaps_dir, f"twoostwo-{n}-{name}.smaps"))
    cleanup.labs.remove((tw, lab, env, d))
    cleanup.stop_lab(tw, lab, env, d)
    log(f"[N={n} twoostwo] down")


def qemu_side(n, args, work, cleanup, result, cmdline):
    d = os.path.join(work, f"qemu-{n}")
    os.makedirs(d)
    lab = f"bench{n}"
    with open(os.path.join(args.guest, "initrd.cpio"), "rb") as f:
        base = f.read()
    base += b"\0" * (-len(base) % 4)  # the node archive starts 4-byte aligned, as the monitor appends it
    for i in range(1, n + 1):
        with open(os.path.join(d, f"h{i}.initrd"), "wb") as f:
            f.write(base + node_archive(node_conf(lab, f"h{i}", i)))
    vde_dir = os.path.join(d, "vde")
    vde = subprocess.Popen(["vde_switch", "-s", vde_dir, "-n", str(n + 4)], stdin=subprocess.PIPE,
                           stdout=open(os.path.join(d, "vde_switch.log"), "w"), stderr=subprocess.STDOUT)
    cleanup.procs.append(vde)
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(vde_dir, "ctl")):
        if vde.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"vde_switch made no {vde_dir}/ctl (status {vde.poll()})")
        time.sleep(0.01)
    busy = host_busy()
    la0 = loadavg()
    log(f"[N={n} qemu] launching {n} guests (load {la0:.2f}, host CPU {busy:.0f}% busy)")
    procs = []
    t0 = time.monotonic()
    for i in range(1, n + 1):
        p = subprocess.Popen(
            ["qemu-system-i386", "-accel", "tcg", "-m", str(args.memory), "-display", "none", "-vga", "none",
             "-monitor", "none", "-no-reboot", "-kernel", os.path.join(args.guest, "vmlinuz"),
             "-initrd", os.path.join(d, f"h{i}.initrd"), "-append", cmdline,
             "-serial", "file:" + os.path.join(d, f"h{i}.console"),
             "-serial", "unix:" + os.path.join(d, f"h{i}.com2") + ",server=on,wait=off",
             "-netdev", f"vde,id=n0,sock={vde_dir}",
             "-device", f"ne2k_pci,netdev=n0,romfile=,mac=52:54:00:00:{i >> 8:02x}:{i & 0xff:02x}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, f"h{i}.stderr"), "w"))
        procs.append(p)
        cleanup.procs.append(p)
    # Connect to every COM2 as soon as it exists: QEMU's `server=on,wait=off`
    # serial drops what the guest writes while no client is connected, and
    # the agent says "ready" only once (it comes seconds after start).
    clients = []
    for i, p in enumerate(procs, 1):
        sock = os.path.join(d, f"h{i}.com2")
        while not os.path.exists(sock):
            if p.poll() is not None or time.monotonic() - t0 > args.timeout:
                raise RuntimeError(f"h{i}: QEMU made no {sock} (status {p.poll()}): "
                                   + open(os.path.join(d, f"h{i}.stderr")).read().strip())
            time.sleep(0.005)
        clients.append(AC.AgentClient(sock, timeout=args.timeout))
    # Wait for all at once, one thread each, so each guest's time is its own.
    times, errors, lock = {}, {}, threading.Lock()
    marks = milestones(n)

    def wait(i, c):
        try:
            c.wait_ready(timeout=args.timeout - (time.monotonic() - t0))
            with lock:
                times[i] = time.monotonic() - t0
                if len(times) in marks:
                    log(f"[N={n} qemu] {len(times)}/{n} ready at {times[i]:.1f} s")
        except Exception as e:  # noqa: BLE001 - reported below
            errors[i] = e

    threads = [threading.Thread(target=wait, args=(i, c), daemon=True) for i, c in enumerate(clients, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    la1 = loadavg()
    if errors:
        raise RuntimeError(f"QEMU guests not ready: {errors}")
    elapsed = max(times.values())
    log(f"[N={n} qemu] all ready after {elapsed:.2f} s (load {la1:.2f})")
    out, status = clients[0].exec(f"ping -c 2 -W 10 {ip_of(n)}", timeout=120)
    if status != 0:
        raise RuntimeError(f"QEMU h1 -> {ip_of(n)} ping failed ({status}): {out.decode(errors='replace')}")
    log(f"[N={n} qemu] h1 -> h{n} ping ok")
    pids = [p.pid for p in procs]
    mem = memory_sum(pids, vde.pid, n)
    result.update(up_s=elapsed, up_load=[la0, la1], busy_before_pct=busy, **mem)
    log(f"[N={n} qemu] memory per node: PSS {mem['pss_per_node_mib']:.1f} MiB, RSS "
        f"{mem['rss_per_node_mib']:.1f} MiB (vde_switch PSS {mem['shared_process_pss_mib']:.1f} MiB)")
    if n == args.idle_n:
        log(f"[N={n} qemu] idle CPU over {args.idle_seconds:.0f} s ...")
        result.update(idle_cpu(pids + [vde.pid], args.idle_seconds, n))
        result["pss_per_node_mib_after_idle"] = memory_sum(pids, vde.pid, n)["pss_per_node_mib"]
        log(f"[N={n} qemu] idle: {result['idle_cpu_pct']:.1f}% of one core")
    if args.smaps_dir:
        shutil.copyfile(f"/proc/{pids[0]}/smaps", os.path.join(args.smaps_dir, f"qemu-{n}-h1.smaps"))
    for c in clients:
        c.close()
    cleanup.stop_procs()
    log(f"[N={n} qemu] stopped")


def qemu_cmdline(twoostwo_cmdline, khz):
    """The twoOStwo guests' command line for QEMU: the emulator's 1 GHz TSC rate replaced by the host's."""
    line = twoostwo_cmdline or CMDLINE
    line = re.sub(r"\s*tsc_early_khz=\d+", "", line).strip()
    return f"{line} tsc_early_khz={khz}" if khz else line


def table(args, results):
    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else "-"

    def num(v, fmt="{:.2f}"):
        return "-" if v is None else fmt.format(v)

    def load(r):
        if not r or "up_load" not in r:
            return "-"
        return f"{r['up_load'][0]:.2f}→{r['up_load'][1]:.2f} ({r['busy_before_pct']:.0f}%)"

    lines = ["| N | twoostwo up (s) | QEMU up (s) | up ratio | twoostwo PSS MiB/node | QEMU PSS MiB/node | PSS ratio "
             "| twoostwo RSS MiB/node | QEMU RSS MiB/node | load twoostwo | load QEMU |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in args.sizes:
        t, q = results[n].get("twoostwo", {}), results[n].get("qemu", {})
        lines.append(
            f"| {n} | {num(t.get('up_s'))} | {num(q.get('up_s'))} | {ratio(t.get('up_s'), q.get('up_s'))} "
            f"| {num(t.get('pss_per_node_mib'), '{:.1f}')} | {num(q.get('pss_per_node_mib'), '{:.1f}')} "
            f"| {ratio(t.get('pss_per_node_mib'), q.get('pss_per_node_mib'))} "
            f"| {num(t.get('rss_per_node_mib'), '{:.1f}')} | {num(q.get('rss_per_node_mib'), '{:.1f}')} "
            f"| {load(t)} | {load(q)} |")
    n = args.idle_n
    t, q = results.get(n, {}).get("twoostwo", {}), results.get(n, {}).get("qemu", {})
    if "idle_cpu_pct" in t or "idle_cpu_pct" in q:
        def idle(r):
            if "idle_cpu_pct" not in r:
                return "-"
            return f"{r['idle_cpu_pct']:.1f}% ({r['idle_cpu_pct_per_node']:.2f}%/node)"

        def iload(r):
            return f"{r['idle_load'][0]:.2f}→{r['idle_load'][1]:.2f}" if "idle_load" in r else "-"

        lines.append(f"| idle CPU, N={n}, {args.idle_seconds:.0f} s (% of one core) | {idle(t)} | {idle(q)} "
                     f"| {ratio(t.get('idle_cpu_pct'), q.get('idle_cpu_pct'))} | | | | | | {iload(t)} | {iload(q)} |")
    if "pss_per_node_mib_after_idle" in t or "pss_per_node_mib_after_idle" in q:
        lines.append(f"| PSS MiB/node after the idle window, N={n} | | | | "
                     f"{num(t.get('pss_per_node_mib_after_idle'), '{:.1f}')} "
                     f"| {num(q.get('pss_per_node_mib_after_idle'), '{:.1f}')} "
                     f"| {ratio(t.get('pss_per_node_mib_after_idle'), q.get('pss_per_node_mib_after_idle'))} "
                     "| | | | |")
    lines.append("")
    lines.append(f"Star labs, one switch; {args.memory} MiB per guest; twoOStwo cpu_engine {args.engine}, "
                 f"captures {'off' if args.no_captures else 'on'}; "
                 f"QEMU {qemu_version()} TCG with ne2k_pci on vde_switch. MiB/node: the nodes' processes plus the "
                 "supervisor (twoOStwo) or vde_switch (QEMU), divided by N. up ratio and PSS ratio: twoOStwo/QEMU "
                 "(targets: ≤ 1x and ≤ 0.5x). load: 1-minute load average at the start → end of that measurement "
                 f"({os.cpu_count()} CPUs; the lab itself drives the end value up), and in parentheses how busy the "
                 "host's CPUs were in the 2 s before it started (work other than the bench).")
    return "\n".join(lines)


def qemu_version():
    try:
        out = subprocess.run(["qemu-system-i386", "--version"], capture_output=True, text=True).stdout
        return out.split("\n")[0].replace("QEMU emulator version ", "")
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2,8,32", help="lab sizes N, comma-separated (default 2,8,32)")
    ap.add_argument("--memory", type=int, default=64, help="guest memory in MiB, both sides (default 64)")
    ap.add_argument("--engine", default="emulator", help="twoOStwo cpu_engine: auto, kvm or emulator (default emulator)")
    ap.add_argument("--idle-seconds", type=float, default=30.0, help="idle CPU window for the largest N (default 30)")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle CPU measurement")
    ap.add_argument("--no-captures", action="store_true", help="twoOStwo labs with `captures: false` (to see what "
                                                                  "captures cost; the default keeps them on)")
    ap.add_argument("--only", choices=["twoostwo", "qemu"], help="run one side only")
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds N guests get to become ready (default 1200)")
    ap.add_argument("--twoostwo", default=os.path.join(ROOT, "build", "default", "topology", "twoostwo"),
                    help="the twoostwo CLI (default build/default/topology/twoostwo)")
    ap.add_argument("--vmm", help="twoostwo-vmm to use (sets TWOOSTWO_VMM; default: the one beside the CLI)")
    ap.add_argument("--guest", default=os.path.join(ROOT, "build", "guest", "i386"),
                    help="the i386 guest image directory: vmlinuz, initrd.cpio (default build/guest/i386)")
    ap.add_argument("--json", metavar="FILE", help="also write every measurement as JSON to FILE ('-': stdout)")
    ap.add_argument("--smaps-dir", metavar="DIR", help="save /proc/PID/smaps of one monitor, the supervisor and one "
                                                       "QEMU per size into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, consoles, captures)")
    args = ap.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not args.sizes or min(args.sizes) < 2 or max(args.sizes) > 250:
        ap.error("--sizes: each N from 2 to 250")
    args.idle_n = None if args.no_idle else max(args.sizes)
    args.twoostwo = os.path.abspath(args.twoostwo)
    args.guest = os.path.abspath(args.guest)
    if os.path.basename(args.guest) != "i386":
        ap.error("--guest: the i386 image directory (named i386; twoostwo's 'default' image is <dir>/i386)")
    if args.smaps_dir:
        os.makedirs(args.smaps_dir, exist_ok=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    khz = host_tsc_khz() if args.only != "twoostwo" else None
    if args.only != "twoostwo" and not khz:
        log("warning: cannot measure the host's TSC rate; QEMU's guests calibrate theirs")
    work = tempfile.mkdtemp(prefix="twoostwo-lab-bench-")
    cleanup = Cleanup()
    results = {n: {} for n in args.sizes}
    twoostwo_cmdline = None
    log(f"lab_bench: sizes {args.sizes}, {args.memory} MiB per guest, work dir {work}")
    try:
        for n in args.sizes:
            if args.only != "qemu":
                results[n]["twoostwo"] = {}
                twoostwo_side(n, args, work, cleanup, results[n]["twoostwo"])
                twoostwo_cmdline = twoostwo_cmdline or results[n]["twoostwo"].get("cmdline")
            if args.only != "twoostwo":
                cmdline = qemu_cmdline(twoostwo_cmdline, khz)
                results[n]["qemu"] = {"cmdline": cmdline}
                qemu_side(n, args, work, cleanup, results[n]["qemu"], cmdline)
    except KeyboardInterrupt:
        log("lab_bench: interrupted; stopping everything it started")
        cleanup.all()
        return 130
    finally:
        cleanup.all()
        if args.keep:
            log(f"lab_bench: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(args, results))
    if args.json:
        doc = {"sizes": args.sizes, "memory_mib": args.memory, "engine": args.engine, "cpus": os.cpu_count(),
               "host_tsc_khz": khz, "results": {str(n): r for n, r in results.items()}}
        if args.json == "-":
            print(json.dumps(doc, indent=2))
        else:
            with open(args.json, "w") as f:
                json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
