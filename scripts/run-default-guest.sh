#!/usr/bin/env bash
# Builds twoostwo-vmm (default preset) if needed, boots the default i386 guest
# and runs a command in it through the COM2 command channel; the command's
# output and exit status are passed through. Run scripts/setup.sh first.
#
#   scripts/run-default-guest.sh [COMMAND...]      (default: uname -a)
#   TWOOSTWO_VMM_ARGS="--cpu-engine=kvm" scripts/run-default-guest.sh ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
guest="$here/build/guest/i386"
if [[ ! -f "$guest/vmlinuz" || ! -f "$guest/initrd.cpio" ]]; then
  echo "run-default-guest: no guest image in $guest: run scripts/setup.sh first" >&2
  exit 1
fi
cmd="${*:-uname -a}"
echo "run-default-guest: building twoostwo-vmm" >&2
cmake --preset default >/dev/null
cmake --build --preset default --target twoostwo-vmm >/dev/null
conf="$(mktemp)"
trap 'rm -f "$conf"' EXIT
printf 'hostname twoostwo-demo\n' >"$conf"
echo "run-default-guest: booting the default guest and running: $cmd" >&2
# shellcheck disable=SC2086
exec "$here/build/default/vmcore/twoostwo-vmm" --name default --kernel "$guest/vmlinuz" \
  --initrd "$guest/initrd.cpio" --node-config "$conf" --console-log "$here/build/default-guest-console.log" \
  ${TWOOSTWO_VMM_ARGS:-} --exec "$cmd"
