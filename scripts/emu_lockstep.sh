#!/usr/bin/env bash
# Lockstep check of the emulator's JIT against its interpreter on a real
# boot (vmcore/emulator/JIT-PLAN.md §6.3): boots the guest twice with
# --clock=virtual (repeatable: the same instructions every run, no input is
# given), once interpreted (TWOOSTWO_EMU_JIT=off) and once with every block
# compiled (always; --jit on: compiled as they get hot, which exercises
# the mix of interpreted and compiled blocks), with a CPU digest (icount, EIP, hash of GPRs, EFLAGS,
# CR3, CS) every Nth slice, for SECONDS of wall time each; then compares
# the digests both runs reached. Exit status 0 if they are identical.
#
#   scripts/emu_lockstep.sh [--vmm build/ci/vmcore/twoostwo-vmm] [--guest build/guest/i386]
#                           [--seconds 60] [--every 16] [--jit always|on]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
vmm="$root/build/ci/vmcore/twoostwo-vmm"
guest="$root/build/guest/i386"
seconds=60
every=16
jit=always
while [ $# -gt 0 ]; do
  case "$1" in
    --vmm) vmm="$2"; shift 2 ;;
    --guest) guest="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --every) every="$2"; shift 2 ;;
    --jit) jit="$2"; shift 2 ;;
    *) echo "emu_lockstep: unknown option $1" >&2; exit 2 ;;
  esac
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for mode in off "$jit"; do
  TWOOSTWO_EMU_JIT="$mode" TWOOSTWO_EMU_TRACE="digest:$every" timeout "$seconds" \
    "$vmm" --kernel "$guest/vmlinuz" --initrd "$guest/initrd.cpio" --cpu-engine emulator --clock virtual -q \
    --console-log "$tmp/console-$mode.log" 2> "$tmp/stderr-$mode.log" > /dev/null || true
  grep '^emu: digest ' "$tmp/stderr-$mode.log" > "$tmp/digest-$mode.txt" || true
done
n_off=$(wc -l < "$tmp/digest-off.txt")
n_jit=$(wc -l < "$tmp/digest-$jit.txt")
n=$(( n_off < n_jit ? n_off : n_jit ))
if [ "$n" -eq 0 ]; then
  echo "emu_lockstep: no digests (interpreter $n_off, JIT $n_jit)" >&2
  exit 1
fi
head -n "$n" "$tmp/digest-off.txt" > "$tmp/a"
head -n "$n" "$tmp/digest-$jit.txt" > "$tmp/b"
last="$(tail -n 1 "$tmp/a")"
if cmp -s "$tmp/a" "$tmp/b"; then
  echo "emu_lockstep: $n digests identical (interpreter $n_off, JIT ($jit) $n_jit in ${seconds}s); last: $last"
  exit 0
fi
first="$(diff "$tmp/a" "$tmp/b" | head -n 3)"
echo "emu_lockstep: digests differ after $(cmp "$tmp/a" "$tmp/b" | sed 's/.*line //') lines:" >&2
echo "$first" >&2
exit 1
