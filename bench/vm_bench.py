#!/usr/bin/env python3
"""Side-by-side benchmark of one VM: twoostwo-vmm against QEMU TCG (issue 3).

Both run the same kernel, initrd and kernel command line, with 128 MiB; both
expose the guest's COM2 command channel on a Unix socket, which this script
drives with guest/tools/agent-client.py. Per engine and run it measures:

  ready    launch -> "@@twoostwo ready" on COM2 (seconds)
  md5      `dd if=/dev/zero bs=1M count=64 | md5sum` (seconds; the sum is checked)
  loop     an ash loop to 200,000 (seconds)
  *_cpu    CPU seconds (user + system) of the VM process during md5 / loop
           (steadier than wall time on a loaded machine)
  idle     host CPU used by the idle guest over --idle-seconds (% of one core; every
           run, or the first only with --idle-once)

and prints a table of medians with the ratio twoostwo/QEMU (lower is better
for every row). Nothing here is a test: the numbers go into closing notes.

  bench/vm_bench.py [--runs 3] [--idle-seconds 30] [--idle-once] [--only twoostwo|qemu]
                    [--vmm build/default/vmcore/twoostwo-vmm] [--guest build/guest/i386]
                    [--jit off|on|both]

--jit passes twoostwo-vmm --jit (the emulator's JIT; on by default, as in
twoostwo-vmm); `both` runs the emulator twice, as "twoostwo" (JIT off) and
"twoostwo-jit" (JIT on), and adds a column jit/interpreter.
"""
import argparse
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ZERO_64M_MD5 = "7f614da9329cd3aebf59b91aadc30bf0"
# The command line twoostwo-vmm gives every guest (vmcore/monitor.h kDefaultCmdline).
CMDLINE = ("console=ttyS0 noapic acpi=off pci=conf1 reboot=k panic=1 i8042.noaux i8042.nopnp "
           "tsc=reliable no_timer_check cryptomgr.notests mitigations=off quiet")


def load_agent_client():
    path = os.path.join(ROOT, "guest", "tools", "agent-client.py")
    spec = importlib.util.spec_from_file_location("agent_client", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime of all threads


def command(engine, args, tmp):
    sock = os.path.join(tmp, "com2.sock")
    console = os.path.join(tmp, "console.log")
    kernel = os.path.join(args.guest, "vmlinuz")
    initrd = os.path.join(args.guest, "initrd.cpio")
    if engine == "qemu":
        return sock, [
            "qemu-system-i386", "-accel", "tcg", "-m", "128", "-display", "none", "-monitor", "none",
            "-no-reboot", "-kernel", kernel, "-initrd", initrd, "-append", CMDLINE,
            "-serial", f"file:{console}", "-serial", f"unix:{sock},server=on,wait=off"]
    argv = [args.vmm, "--kernel", kernel, "--initrd", initrd, "--cpu-engine", args.engine, "-m", "128",
            "--console-log", console, "--command-socket", sock, "-q"]
    argv += ["--jit", "on" if engine == "twoostwo-jit" or args.jit == "on" else "off"]
    return sock, argv


def run_once(engine, args, agent, measure_idle):
    with tempfile.TemporaryDirectory(prefix=f"vmbench-{engine}-") as tmp:
        sock, argv = command(engine, args, tmp)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "stderr"), "w"))
        try:
            while not os.path.exists(sock):
                if proc.poll() is not None:
                    raise RuntimeError(f"{engine} exited with {proc.returncode}: "
                                       + open(os.path.join(tmp, "stderr")).read().strip())
                if time.monotonic() - t0 > args.timeout:
                    raise RuntimeError(f"{engine}: no command socket after {args.timeout} s")
                time.sleep(0.005)
            client = agent.AgentClient(sock, timeout=args.timeout)
            client.wait_ready(timeout=args.timeout)
            result = {"ready": time.monotonic() - t0}

            t, cpu = time.monotonic(), cpu_seconds(proc.pid)
            out, status = client.exec("dd if=/dev/zero bs=1M count=64 2>/dev/null | md5sum", timeout=args.timeout)
            result["md5"] = time.monotonic() - t
            result["md5_cpu"] = cpu_seconds(proc.pid) - cpu
            if status != 0 or ZERO_64M_MD5 not in out.decode(errors="replace"):
                raise RuntimeError(f"{engine}: md5sum workload printed {bytes(out)!r} (status {status})")

            t, cpu = time.monotonic(), cpu_seconds(proc.pid)
            out, status = client.exec('i=0; while [ "$i" -lt 200000 ]; do i=$((i+1)); done; echo "$i"',
                                      timeout=args.timeout)
            result["loop"] = time.monotonic() - t
            result["loop_cpu"] = cpu_seconds(proc.pid) - cpu
            if status != 0 or out.strip() != b"200000":
                raise RuntimeError(f"{engine}: shell loop printed {bytes(out)!r} (status {status})")

            if measure_idle:
                time.sleep(2)  # let the exec settle
                c0, w0 = cpu_seconds(proc.pid), time.monotonic()
                time.sleep(args.idle_seconds)
                c1, w1 = cpu_seconds(proc.pid), time.monotonic()
                result["idle"] = 100.0 * (c1 - c0) / (w1 - w0)
            client.close()
            return result
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--idle-once", action="store_true",
                    help="measure idle on the first run only (the idle figure is then one reading, not a median)")
    ap.add_argument("--only", choices=["twoostwo", "qemu"])
    ap.add_argument("--vmm", default=os.path.join(ROOT, "build", "default", "vmcore", "twoostwo-vmm"))
    ap.add_argument("--engine", default="emulator", help="twoostwo-vmm --cpu-engine")
    ap.add_argument("--guest", default=os.path.join(ROOT, "build", "guest", "i386"))
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--jit", choices=["off", "on", "both"], default="on",
                    help="twoostwo-vmm --jit (default on); both: the emulator with the JIT off and on")
    args = ap.parse_args()
    agent = load_agent_client()
    engines = [args.only] if args.only else ["twoostwo", "qemu"]
    if args.jit == "both" and "twoostwo" in engines:
        engines.insert(engines.index("twoostwo") + 1, "twoostwo-jit")
    results = {e: [] for e in engines}
    for run in range(args.runs):
        for engine in engines:  # interleaved, so both see the same machine load
            r = run_once(engine, args, agent, measure_idle=(run == 0 or not args.idle_once))
            results[engine].append(r)
            print(f"run {run + 1} {engine}: " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr)

    def median(engine, key):
        vals = [r[key] for r in results[engine] if key in r]
        return statistics.median(vals) if vals else None

    rows = [("launch -> guest ready (s)", "ready"), ("md5sum of 64 MiB (s)", "md5"),
            ("md5sum, CPU of the VM process (s)", "md5_cpu"), ("ash loop to 200,000 (s)", "loop"),
            ("ash loop, CPU of the VM process (s)", "loop_cpu"), ("idle guest CPU (% of a core)", "idle")]
    # Ratio columns (lower is better): a/b for each pair present.
    pairs = [(a, b) for a, b in [("twoostwo", "qemu"), ("twoostwo-jit", "qemu"), ("twoostwo-jit", "twoostwo")]
             if a in engines and b in engines]
    print(f"| what | {' | '.join(engines)} |" + "".join(f" {a}/{b} |" for a, b in pairs))
    print("|---|" + "---|" * (len(engines) + len(pairs)))
    for label, key in rows:
        vals = {e: median(e, key) for e in engines}
        line = f"| {label} | " + " | ".join("-" if vals[e] is None else f"{vals[e]:.2f}" for e in engines) + " |"
        for a, b in pairs:
            ok = vals[a] is not None and vals[b] is not None and vals[b] > 0
            line += f" {vals[a] / vals[b]:.2f}x |" if ok else " - |"
        print(line)
    idle_runs = "the first run" if args.idle_once else "every run"
    print(f"(medians of {args.runs} runs; idle over {args.idle_seconds:.0f} s on {idle_runs})")


if __name__ == "__main__":
    main()
