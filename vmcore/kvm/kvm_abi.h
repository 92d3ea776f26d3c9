// C layouts and ioctl numbers that <linux/kvm.h> gets wrong when compiled as
// C++ (Linux 6.1 UAPI headers, Debian 12). Internal to vmcore/kvm.
//
// The UAPI headers declare flexible arrays with __DECLARE_FLEX_ARRAY, which
// wraps the array in a struct beside an empty struct. In C that empty struct
// has size 0; in C++ it has size 1, which moves the array (kvm_msrs,
// kvm_cpuid2: 8 -> 12 bytes; kvm_coalesced_mmio_ring: entries at offset 16
// instead of 8) and changes the ioctl numbers derived from sizeof
// (KVM_GET_SUPPORTED_CPUID becomes 0xc00cae05, which KVM rejects with
// EINVAL). So we use the fixed-size headers below, laid out as the kernel's
// C structs, and ioctl numbers computed from them.
#pragma once

#include <linux/kvm.h>

#include <cstddef>

namespace twoostwo::vmcore::kvm {

/// struct kvm_cpuid2 without its entries (kvm_cpuid_entry2 follow it).
struct CpuidHeader {
  __u32 nent;
  __u32 padding;
};

/// struct kvm_msrs without its entries (kvm_msr_entry follow it).
struct MsrsHeader {
  __u32 nmsrs;
  __u32 pad;
};

/// struct kvm_coalesced_mmio_ring without its entries (kvm_coalesced_mmio
/// follow it, filling the rest of the page).
struct CoalescedRingHeader {
  __u32 first;
  __u32 last;
};

static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(CoalescedRingHeader) == 8);
static_assert(sizeof(kvm_cpuid_entry2) == 40 && sizeof(kvm_msr_entry) == 16 && sizeof(kvm_coalesced_mmio) == 24);
static_assert(offsetof(kvm_coalesced_mmio, data) == 16);

inline constexpr unsigned long kIoctlGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kIoctlSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kIoctlGetCpuid2 = _IOWR(KVMIO, 0x91, CpuidHeader);
inline constexpr unsigned long kIoctlSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
// The values a C compiler computes from <linux/kvm.h>.
static_assert(kIoctlGetSupportedCpuid == 0xc008ae05 && kIoctlSetCpuid2 == 0x4008ae90 &&
              kIoctlGetCpuid2 == 0xc008ae91 && kIoctlSetMsrs == 0x4008ae89);

/// Entries in the coalesced MMIO/PIO ring page (KVM_COALESCED_MMIO_MAX in C).
inline constexpr size_t kCoalescedRingEntries = (4096 - sizeof(CoalescedRingHeader)) / sizeof(kvm_coalesced_mmio);

}  // namespace twoostwo::vmcore::kvm
