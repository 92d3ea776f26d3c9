#!/usr/bin/env bash
# The main job: builds `twoostwo` (default preset) if needed, brings up the
# built-in default lab (alice 10.0.0.1 and bob 10.0.0.2 on switch sw1), pings
# across it, shows its status and captures, and brings it down. Run
# scripts/setup.sh first. Captures are written to ./twoostwo-captures.
#
#   scripts/run-default-lab.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
if [[ ! -f build/guest/i386/vmlinuz || ! -f build/guest/i386/initrd.cpio ]]; then
  echo "run-default-lab: no guest image in build/guest/i386: run scripts/setup.sh first" >&2
  exit 1
fi
echo "run-default-lab: building twoostwo and twoostwo-vmm" >&2
cmake --preset default >/dev/null
cmake --build --preset default --target twoostwo twoostwo-vmm >/dev/null
twoostwo="$here/build/default/topology/twoostwo"
down() { "$twoostwo" down --lab default || true; }
trap down EXIT
set -x
"$twoostwo" up
"$twoostwo" exec alice -- ping -c 3 10.0.0.2
"$twoostwo" exec bob -- ping -c 3 10.0.0.1
"$twoostwo" status
trap - EXIT
"$twoostwo" down
ls -l twoostwo-captures
