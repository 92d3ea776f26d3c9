// The report a monitor prints when a VM ends abnormally (triple fault, an
// exit no engine can handle): the reason, the registers, and the code around
// the faulting instruction, disassembled with Zydis.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "vmcore/bus/guest_memory.h"
#include "vmcore/cpu_state.h"

namespace twoostwo::vmcore {

/// Translate a linear address to guest-physical by walking the guest's page
/// tables as the CPU would (Intel SDM vol. 3, 4.3 32-bit paging with PSE,
/// 4.4 PAE, 4.5 4-level paging). Returns nullopt if paging is on and the
/// address is not mapped or a table lies outside RAM. No A/D bits are set.
std::optional<uint64_t> linear_to_physical(const CpuState& s, const bus::GuestMemory& mem, uint64_t linear);

/// Disassemble up to `count` instructions starting at the linear address
/// `linear` in the mode implied by `s` (real, 16/32-bit protected, long).
/// One line per instruction: "  ffffffff81000000: 0f 0b    ud2"; the line
/// for `mark` (if it equals an instruction address) is prefixed with "=>".
std::string disassemble(const CpuState& s, const bus::GuestMemory& mem, uint64_t linear, unsigned count,
                        uint64_t mark);

/// The whole report: "twoostwo-vmm: fault: <reason>\n", the registers, a hex
/// dump of the 32 bytes before CS:RIP and the disassembly from CS:RIP.
std::string fault_report(const std::string& reason, const CpuState& s, const bus::GuestMemory& mem);

}  // namespace twoostwo::vmcore
