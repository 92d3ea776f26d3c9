#!/usr/bin/env bash
# Boots a built guest image under QEMU (TCG) with a node.conf appended as a
# second cpio, and checks /init and the command agent with agent-client.py.
#
#   guest/tools/qemu-test.sh IMAGEDIR [ARCH] [pci|isa]
#     IMAGEDIR as given to build-images.sh; ARCH i386 (default) or x86_64;
#     NIC: pci = RTL8029 (ne2k-pci.ko, default); isa = NE2000 at 0x300 IRQ 5
#     (ne.ko, i386 only; QEMU's ACPI holds IRQ 9; also sets the MAC via node.conf).
#
# Console log: $WORK/console.log (WORK defaults to a fresh temp dir, kept).
# Uses only QEMU's user-mode network with restrict=on (nothing leaves the VM).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
imgdir="${1:?usage: qemu-test.sh IMAGEDIR [i386|x86_64]}"
arch="${2:-i386}"
nic="${3:-pci}"
case "$arch" in
  i386) qemu="qemu-system-i386" ;;
  x86_64) qemu="qemu-system-x86_64" ;;
  *) echo "qemu-test: unknown arch $arch" >&2; exit 2 ;;
esac
img="$imgdir/$arch"
work="${WORK:-$(mktemp -d /tmp/twoostwo-qemu-test.XXXXXX)}"
mkdir -p "$work/node/etc/twoostwo"

case "$nic" in
  pci)
    nic_conf='module ne2k-pci'
    nic_post=''
    nic_dev=(-device "ne2k_pci,netdev=n0,romfile=")
    expect=(--expect-module ne2k_pci)
    ;;
  isa)
    nic_conf='module ne io=0x300 irq=5'
    nic_post='mac eth0 02:00:00:00:00:AA' # after addr: eth0 is up, init must down/up it
    nic_dev=(-device "ne2k_isa,netdev=n0,iobase=0x300,irq=5")
    expect=(--expect-module ne --expect-mac 02:00:00:00:00:aa)
    ;;
  *) echo "qemu-test: unknown NIC $nic" >&2; exit 2 ;;
esac
cat >"$work/node/etc/twoostwo/node.conf" <<EOF
# test node
hostname alice
$nic_conf
addr eth0 10.0.0.2/24
$nic_post
route default via 10.0.0.1
sysctl net.ipv4.ip_forward=1
run echo hello-from-run
run false
bogus directive
EOF
(cd "$work/node" && find etc | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet) >"$work/node.cpio"
cat "$img/initrd.cpio" "$work/node.cpio" >"$work/initrd-alice.cpio"

rm -f "$work/cmd.sock" "$work/console.log"
t0=$(date +%s.%N)
"$qemu" -accel tcg -m 128 -display none -monitor none -no-reboot \
  -kernel "$img/vmlinuz" -initrd "$work/initrd-alice.cpio" \
  -append "console=ttyS0 quiet panic=1 cryptomgr.notests tsc=reliable no_timer_check mitigations=off" \
  -serial "file:$work/console.log" -serial "unix:$work/cmd.sock,server,nowait" \
  "${nic_dev[@]}" -netdev user,id=n0,restrict=on &
qpid=$!
trap 'kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null || true' EXIT
echo "qemu-test: started $qemu (pid $qpid), work dir $work"

for _ in $(seq 100); do [[ -S $work/cmd.sock ]] && break; sleep 0.1; done
rc=0
python3 "$here/agent-client.py" "$work/cmd.sock" --timeout 180 --selftest "${expect[@]}" || rc=$?
t1=$(date +%s.%N)
echo "qemu-test: agent session ended after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s with status $rc"
echo "--- console (ttyS0) ---"
cat "$work/console.log"
echo "--- end of console ---"
grep -q 'hello-from-run' "$work/console.log" || { echo "FAIL: 'run' output not on the console"; rc=1; }
grep -q "twoostwo-init: run false: exit status 1" "$work/console.log" || { echo "FAIL: failing run not reported"; rc=1; }
grep -q "twoostwo-init: node.conf:[0-9]*: unknown directive 'bogus'" "$work/console.log" || { echo "FAIL: bad directive not reported"; rc=1; }
exit "$rc"
