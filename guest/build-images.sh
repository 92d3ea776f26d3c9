#!/usr/bin/env bash
# Builds the twoOStwo guest images (kernel + uncompressed busybox initramfs)
# from Debian packages. Nothing here is committed output: set-up runs this.
#
#   guest/build-images.sh OUTDIR [i386|x86_64|all]      (default: all)
#
# Writes, per architecture:
#   OUTDIR/<arch>/vmlinuz          the kernel's bzImage
#   OUTDIR/<arch>/initrd.cpio      UNCOMPRESSED newc cpio (busybox, /init, agent, NIC modules)
#   OUTDIR/<arch>/kernel-version   e.g. 6.1.0-50-686
#   OUTDIR/<arch>/modules.txt      the .ko files in the initrd's /lib/modules, one a line
# Downloaded .debs are kept in OUTDIR/debs (apt-get download only; nothing is
# installed on the host). Idempotent: an image whose inputs (the .debs, the
# guest/ scripts, this script) did not change is not rebuilt.
#
# Needs: apt-get, apt-cache, dpkg-deb, cpio, xz (only for .ko.xz modules), and
# root for mknod (without root it re-runs the packing step under fakeroot).
# Assumes `dpkg --add-architecture i386 && apt-get update` were done
# (scripts/setup.sh does that).
set -euo pipefail

me="build-images"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "$me: $*"; }
die() { echo "$me: error: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Internal entry point: pack a staging directory into a newc cpio. Run as
# root, or under fakeroot by a non-root caller (so mknod and uid 0 work).
#   build-images.sh --pack STAGE OUTFILE
if [[ ${1:-} == --pack ]]; then
  stage="$2" out="$3"
  mknod -m 600 "$stage/dev/console" c 5 1
  mknod -m 666 "$stage/dev/null" c 1 3
  # Fixed timestamps and sorted names: the same inputs give the same bytes.
  find "$stage" -exec touch -h -d @946684800 {} +
  extra=()
  cpio --help 2>/dev/null | grep -q -- --reproducible && extra+=(--reproducible)
  (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet "${extra[@]}") >"$out"
  exit 0
fi

usage() { sed -n '5,6p' "$0" | sed 's/^# *//' >&2; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
[[ $1 == -h || $1 == --help ]] && usage
outdir="$1"
which="${2:-all}"
case "$which" in
  i386) archs=(i386) ;;
  x86_64) archs=(x86_64) ;;
  all) archs=(i386 x86_64) ;;
  *) usage ;;
esac

for tool in apt-get apt-cache dpkg-deb cpio sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed (scripts/setup.sh installs what is needed)"
done
if [[ $EUID -ne 0 ]] && ! command -v fakeroot >/dev/null; then
  die "needs root (for mknod of /dev/console in the initrd) or fakeroot"
fi

mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
debs="$outdir/debs"
mkdir -p "$debs"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/twoostwo-guest.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

native="$(dpkg --print-architecture)"

# apt-cache is slow here (~1.5 s a call), so the look-ups are batched: one
# pkgnames, one policy for every package of interest, one show for checksums.
#   candidates PKG:ARCH... -> prints "PKG:ARCH VERSION" for those with a candidate
candidates() {
  apt-cache policy "$@" 2>/dev/null | awk -v native="$native" '
    /^[^ \t].*:$/ { name = substr($0, 1, length($0) - 1); if (name !~ /:/) name = name ":" native; next }
    $1 == "Candidate:" && $2 != "(none)" && name != "" { print name, $2; name = "" }'
}
#   checksums PKG:ARCH=VERSION... -> prints "PKG:ARCH=VERSION SHA256"
checksums() {
  apt-cache show "$@" 2>/dev/null | awk '
    $1 == "Package:" { p = $2 } $1 == "Version:" { v = $2 } $1 == "Architecture:" { a = $2 }
    $1 == "SHA256:" { print p ":" a "=" v, $2 }'
}

# fetch PKG ARCH VERSION SHA256 -> prints the path of the verified .deb in
# $debs, downloading it only when it is missing or does not match the checksum.
fetch() {
  local pkg="$1" arch="$2" ver="$3" want="$4"
  local file="$debs/${pkg}_${ver//:/%3a}_${arch}.deb"
  if [[ -f $file ]]; then
    if [[ -z $want ]] || [[ "$(sha256sum <"$file" | cut -d' ' -f1)" == "$want" ]]; then
      echo "$file"
      return 0
    fi
    say "  $pkg $ver: cached .deb does not match its checksum, downloading again" >&2
    rm -f "$file"
  fi
  say "  downloading $pkg:$arch $ver" >&2
  local part="$debs/.partial"
  rm -rf "$part"
  mkdir -p "$part"
  local sandbox=()
  [[ $EUID -eq 0 ]] && sandbox=(-o APT::Sandbox::User=root)
  if ! (cd "$part" && apt-get download -q "${sandbox[@]}" "$pkg:$arch=$ver" >"$tmp/apt.log" 2>&1); then
    cat "$tmp/apt.log" >&2
    die "apt-get download $pkg:$arch=$ver failed"
  fi
  local got
  got="$(find "$part" -maxdepth 1 -name '*.deb' | head -1)"
  [[ -n $got ]] || die "apt-get download $pkg:$arch=$ver produced no .deb"
  if [[ -n $want && "$(sha256sum <"$got" | cut -d' ' -f1)" != "$want" ]]; then
    die "apt-get download $pkg:$arch=$ver: checksum mismatch"
  fi
  mv -f "$got" "$file"
  rm -rf "$part"
  echo "$file"
}

# --- package selection (all architectures at once) ---------------------------
say "selecting packages"
declare -A debarch=([i386]=i386 [x86_64]=amd64) flavour=([i386]=686 [x86_64]=amd64)
kernel_names="$(apt-cache pkgnames linux-image-6.1.0- 2>/dev/null | sort -V -r)"
query=()
for arch in "${archs[@]}"; do
  da="${debarch[$arch]}"
  query+=("busybox-static:$da")
  # Strictly -686-unsigned / -amd64-unsigned: not -cloud-amd64, -rt-amd64, -686-pae.
  while read -r k; do
    [[ -n $k ]] && query+=("$k:$da")
  done < <(grep -E -- "^linux-image-6\.1\.0-[0-9]+-${flavour[$arch]}-unsigned\$" <<<"$kernel_names")
done
declare -A cand=()
while read -r name ver; do cand[$name]="$ver"; done < <(candidates "${query[@]}")

declare -A sel_kpkg=() sel_kver=() sel_bver=()
for arch in "${archs[@]}"; do
  da="${debarch[$arch]}"
  sel_bver[$arch]="${cand[busybox-static:$da]:-}"
  [[ -n ${sel_bver[$arch]} ]] ||
    die "no candidate for busybox-static:$da (apt-cache policy busybox-static:$da) — run 'dpkg --add-architecture i386 && apt-get update' first (scripts/setup.sh does)"
  for q in "${query[@]}"; do # newest first
    [[ $q == linux-image-*-${flavour[$arch]}-unsigned:$da ]] || continue
    if [[ -n ${cand[$q]:-} ]]; then
      sel_kpkg[$arch]="${q%:*}" sel_kver[$arch]="${cand[$q]}"
      break
    fi
    say "$arch: $q has no installation candidate, trying an older one"
  done
  [[ -n ${sel_kpkg[$arch]:-} ]] ||
    die "no linux-image-6.1.0-*-${flavour[$arch]}-unsigned:$da with a candidate (apt-get update?)"
  say "$arch: kernel ${sel_kpkg[$arch]} ${sel_kver[$arch]}, busybox-static ${sel_bver[$arch]}"
done
shaq=()
for arch in "${archs[@]}"; do
  shaq+=("${sel_kpkg[$arch]}:${debarch[$arch]}=${sel_kver[$arch]}" "busybox-static:${debarch[$arch]}=${sel_bver[$arch]}")
done
declare -A sha=()
while read -r name sum; do sha[$name]="$sum"; done < <(checksums "${shaq[@]}")

build_arch() {
  local arch="$1" modules
  case "$arch" in
    i386) modules=(8390 8390p ne ne2k-pci) ;;
    x86_64) modules=(8390 ne2k-pci) ;;
  esac
  local dest="$outdir/$arch" da="${debarch[$arch]}"
  local kpkg="${sel_kpkg[$arch]}" kver="${sel_kver[$arch]}" bver="${sel_bver[$arch]}"
  local kdeb bdeb
  kdeb="$(fetch "$kpkg" "$da" "$kver" "${sha[$kpkg:$da=$kver]:-}")"
  bdeb="$(fetch busybox-static "$da" "$bver" "${sha[busybox-static:$da=$bver]:-}")"

  # Inputs of this image: the two .debs (by name and content) and our scripts.
  local stamp_want
  stamp_want="$(
    echo "$(basename "$kdeb") $(basename "$bdeb") ${modules[*]}"
    cd "$here" && sha256sum build-images.sh init agent
  )"
  local outputs=("$dest/vmlinuz" "$dest/initrd.cpio" "$dest/kernel-version" "$dest/modules.txt")
  local up_to_date=1 f i
  for f in "${outputs[@]}"; do
    [[ -s $f ]] || up_to_date=0
    for i in "$kdeb" "$bdeb" "$here/build-images.sh" "$here/init" "$here/agent"; do
      [[ -s $f && $f -nt $i ]] || up_to_date=0
    done
  done
  [[ -f $dest/.inputs && "$(cat "$dest/.inputs")" == "$stamp_want" ]] || up_to_date=0
  if [[ $up_to_date == 1 ]]; then
    say "$arch: up to date ($(cat "$dest/kernel-version")), nothing to do"
    return 0
  fi

  local work="$tmp/$arch"
  rm -rf "$work"
  mkdir -p "$work/kernel" "$work/busybox" "$work/stage"

  say "$arch: unpacking the kernel"
  # Only the bzImage and the 8390 driver folder: the full package is ~400 MB unpacked.
  dpkg-deb --fsys-tarfile "$kdeb" |
    tar -x -C "$work/kernel" --wildcards --no-anchored 'boot/vmlinuz-*' '*/kernel/drivers/net/ethernet/8390/*'
  local vmlinuz
  vmlinuz="$(find "$work/kernel/boot" -maxdepth 1 -name 'vmlinuz-*' | head -1)"
  [[ -n $vmlinuz ]] || die "$arch: no boot/vmlinuz-* in $(basename "$kdeb")"
  local kversion="${vmlinuz##*/vmlinuz-}"
  local moddir
  moddir="$(find "$work/kernel" -type d -path "*/modules/$kversion/kernel/drivers/net/ethernet/8390" | head -1)"
  [[ -n $moddir ]] || die "$arch: no modules/$kversion/kernel/drivers/net/ethernet/8390 in $(basename "$kdeb")"

  say "$arch: unpacking busybox"
  dpkg-deb -x "$bdeb" "$work/busybox"
  local bb="$work/busybox/bin/busybox"
  [[ -x $bb ]] || die "$arch: no bin/busybox in $(basename "$bdeb")"

  say "$arch: staging the initramfs"
  local st="$work/stage"
  mkdir -p "$st"/{bin,sbin,usr/bin,usr/sbin,lib/modules,proc,sys,dev,tmp,run,etc/twoostwo,root,mnt,var/log}
  chmod 1777 "$st/tmp"
  chmod 700 "$st/root"
  install -m 755 "$bb" "$st/bin/busybox"
  # Applet symlinks, each in busybox's preferred folder. The i386 binary is
  # static and runs on amd64 hosts; if it cannot run here, fall back to a
  # fixed list of the applets the guest scripts and users need.
  local applets
  if ! applets="$("$bb" --list-full 2>/dev/null)" || [[ -z $applets ]]; then
    say "$arch: cannot run busybox on this host, using a fixed applet list"
    applets="$(printf '%s\n' bin/sh bin/ash bin/cat bin/cp bin/mv bin/rm bin/ln bin/ls bin/mkdir bin/mknod \
      bin/mount bin/umount bin/echo bin/sleep bin/stty bin/hostname bin/dmesg bin/ps bin/kill bin/grep bin/sed \
      bin/chmod bin/chown bin/date bin/df bin/ping bin/ping6 bin/netstat bin/pidof bin/uname bin/true bin/false \
      bin/mktemp bin/sync bin/vi bin/more bin/touch bin/pwd bin/login bin/ip bin/busybox \
      sbin/insmod sbin/rmmod sbin/lsmod sbin/modprobe sbin/mdev sbin/sysctl sbin/ifconfig sbin/route \
      sbin/poweroff sbin/reboot sbin/halt sbin/init sbin/arp sbin/udhcpc \
      usr/bin/base64 usr/bin/cttyhack usr/bin/setsid usr/bin/awk usr/bin/tr usr/bin/cut usr/bin/head \
      usr/bin/tail usr/bin/wc usr/bin/od usr/bin/hexdump usr/bin/xxd usr/bin/env usr/bin/printf usr/bin/test \
      'usr/bin/[' usr/bin/timeout usr/bin/nc usr/bin/wget usr/bin/traceroute usr/bin/nslookup usr/bin/find \
      usr/bin/xargs usr/bin/sort usr/bin/uniq usr/bin/md5sum usr/bin/sha256sum usr/bin/seq usr/bin/top \
      usr/bin/free usr/bin/uptime usr/bin/which usr/bin/less usr/bin/tee usr/bin/expr usr/bin/id \
      usr/sbin/telnetd usr/sbin/httpd usr/sbin/brctl usr/sbin/arping usr/sbin/udhcpd)"
  fi
  local a n=0
  while read -r a; do
    a="${a#/}"
    case "$a" in '' | bin/busybox | linuxrc) continue ;; esac
    [[ -e $st/$a || -L $st/$a ]] && continue
    mkdir -p "$st/$(dirname "$a")"
    ln -s /bin/busybox "$st/$a"
    n=$((n + 1))
  done <<<"$applets"

  install -m 755 "$here/init" "$st/init"
  install -m 755 "$here/agent" "$st/bin/twoostwo-agent"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$st/etc/passwd"
  printf 'root:x:0:\n' >"$st/etc/group"
  printf '127.0.0.1\tlocalhost\n' >"$st/etc/hosts"
  printf 'guest\n' >"$st/etc/hostname"
  printf '%s\n' "$kversion" >"$st/etc/twoostwo/kernel-version"

  local m
  : >"$work/modules.txt"
  for m in "${modules[@]}"; do
    if [[ -f $moddir/$m.ko ]]; then
      cp "$moddir/$m.ko" "$st/lib/modules/$m.ko"
    elif [[ -f $moddir/$m.ko.xz ]]; then
      command -v xz >/dev/null || die "$arch: $m.ko.xz needs xz (apt-get install xz-utils)"
      xz -dc "$moddir/$m.ko.xz" >"$st/lib/modules/$m.ko"
    elif [[ -f $moddir/$m.ko.zst ]]; then
      command -v zstd >/dev/null || die "$arch: $m.ko.zst needs zstd"
      zstd -qdc "$moddir/$m.ko.zst" >"$st/lib/modules/$m.ko"
    else
      die "$arch: module $m not in $kpkg (looked for $moddir/$m.ko{,.xz,.zst})"
    fi
    chmod 644 "$st/lib/modules/$m.ko"
    echo "$m.ko" >>"$work/modules.txt"
  done

  say "$arch: packing initrd.cpio ($n applets, modules: ${modules[*]})"
  local pack=(bash "$here/build-images.sh" --pack "$st" "$work/initrd.cpio")
  if [[ $EUID -ne 0 ]]; then pack=(fakeroot -- "${pack[@]}"); fi
  "${pack[@]}" || die "$arch: packing the initrd failed"

  # Install the outputs; the stamp goes last, so an interrupted run rebuilds.
  mkdir -p "$dest"
  rm -f "$dest/.inputs"
  cp "$vmlinuz" "$dest/vmlinuz.new" && mv -f "$dest/vmlinuz.new" "$dest/vmlinuz"
  mv -f "$work/initrd.cpio" "$dest/initrd.cpio"
  echo "$kversion" >"$dest/kernel-version"
  mv -f "$work/modules.txt" "$dest/modules.txt"
  printf '%s\n' "$stamp_want" >"$dest/.inputs"
  rm -rf "$work"
  say "$arch: done: $dest (kernel $kversion, vmlinuz $(du -k "$dest/vmlinuz" | cut -f1) KiB, initrd.cpio $(du -k "$dest/initrd.cpio" | cut -f1) KiB)"
}

for arch in "${archs[@]}"; do
  build_arch "$arch"
done
