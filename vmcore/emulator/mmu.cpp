// Paging, the software TLB and physical memory access of the emulator's CPU
// (Intel SDM vol. 3, 4.3 "32-bit paging", 4.6 access rights, 4.7 page-fault
// exceptions, 4.8 accessed and dirty flags, 4.10 TLBs).
#include <algorithm>

#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/cpu.h"

namespace twoostwo::vmcore::emu {

namespace {

constexpr uint32_t kPteP = 1u << 0, kPteW = 1u << 1, kPteU = 1u << 2, kPteA = 1u << 5, kPteD = 1u << 6,
                   kPtePs = 1u << 7, kPteG = 1u << 8;
// 4 MiB PDE bits 21:13 are reserved when PSE-36 is absent (SDM vol. 3, 4.3, table 4-4).
constexpr uint32_t kLargeReserved = 0x003FE000u;

}  // namespace

void raise(uint8_t vector) { throw CpuException{vector, false, 0}; }
void raise(uint8_t vector, uint32_t error) { throw CpuException{vector, true, error}; }

// ---------------------------------------------------------------------------
// Control registers

void Cpu::set_cpl(uint8_t new_cpl) {
  cpl = new_cpl;
  tlb_cur_ = tlb_[new_cpl == 3 ? 1 : 0];
}

void Cpu::set_cr0(uint32_t v) {
  // Reserved bits are ignored on writes; ET is hardwired to 1 (P6).
  v = (v & (kCr0Pe | kCr0Mp | kCr0Em | kCr0Ts | kCr0Ne | kCr0Wp | kCr0Am | kCr0Nw | kCr0Cd | kCr0Pg)) | kCr0Et;
  if ((v & kCr0Pg) && !(v & kCr0Pe)) raise_gp(0);
  if ((v & kCr0Nw) && !(v & kCr0Cd)) raise_gp(0);
  const uint32_t old = cr0;
  cr0 = v;
  if ((old ^ v) & (kCr0Pg | kCr0Wp | kCr0Pe)) flush_tlb(true);
  if ((old ^ v) & kCr0Pe) {
    if (!(v & kCr0Pe)) set_cpl(0);
    recompute_segments();
  }
  stop_block = true;  // the decoding mode or the translation may have changed
}

void Cpu::set_cr3(uint32_t v) {
  cr3 = v & 0xFFFFF018u;
  flush_tlb(false);
  stop_block = true;
}

void Cpu::set_cr4(uint32_t v) {
  if (v & ~kCr4Supported) raise_gp(0);
  const uint32_t old = cr4;
  cr4 = v;
  if ((old ^ v) & (kCr4Pse | kCr4Pge | kCr4Pae)) flush_tlb(true);
  stop_block = true;
}

void Cpu::flush_tlb(bool include_global) {
  unsigned large = 0;
  for (auto& table : tlb_) {
    for (TlbEntry& e : table) {
      if (e.read_tag == kNoTag && e.write_tag == kNoTag) continue;
      if (!include_global && e.global) {
        large += e.large;
        continue;
      }
      e.read_tag = e.write_tag = kNoTag;
      e.global = e.large = 0;
    }
  }
  large_entries_ = large;
}

void Cpu::invlpg(uint32_t lin) {
  const uint32_t page = lin & ~0xFFFu;
  for (auto& table : tlb_) {
    TlbEntry& e = table[(lin >> 12) & (kTlbEntries - 1)];
    if (e.read_tag == page || e.write_tag == page) {
      e.read_tag = e.write_tag = kNoTag;
      e.global = e.large = 0;
    }
  }
  if (large_entries_ != 0) {
    // The page may lie in a 4 MiB mapping whose other 4 KiB parts are cached.
    const uint32_t region = lin & 0xFFC00000u;
    for (auto& table : tlb_) {
      for (TlbEntry& e : table) {
        if (!e.large) continue;
        const uint32_t tag = e.read_tag != kNoTag ? e.read_tag : e.write_tag;
        if (tag != kNoTag && (tag & 0xFFC00000u) == region) {
          e.read_tag = e.write_tag = kNoTag;
          e.global = e.large = 0;
        }
      }
    }
  }
  stop_block = true;
}

void Cpu::protect_code_page(uint32_t phys_page) {
  for (auto& table : tlb_) {
    for (TlbEntry& e : table) {
      if (e.write_tag != kNoTag && e.phys_page == phys_page) e.write_tag = kNoTag;
    }
  }
}

// ---------------------------------------------------------------------------
// Translation

uint32_t Cpu::translate(uint32_t lin, bool write, bool user, bool fault_user_bit) {
  const uint32_t page = lin & ~0xFFFu;
  TlbEntry& e = tlb_[user ? 1 : 0][(lin >> 12) & (kTlbEntries - 1)];
  uint32_t phys_page;
  bool writable = true;
  bool global = false;
  bool large = false;
  if (!paging()) {
    phys_page = page;
  } else {
    auto page_fault = [&](uint32_t code) {
      cr2 = lin;
      raise(kVecPF, code | (write ? kPfWrite : 0) | (fault_user_bit ? kPfUser : 0));
    };
    const uint32_t pde_addr = (cr3 & 0xFFFFF000u) | ((lin >> 22) << 2);
    uint32_t pde = phys_read32(pde_addr);
    if (!(pde & kPteP)) page_fault(0);
    large = (pde & kPtePs) && (cr4 & kCr4Pse);
    uint32_t perms;
    uint32_t pte_addr = 0;
    uint32_t pte = 0;
    if (large) {
      if (pde & kLargeReserved) page_fault(kPfPresent | kPfReserved);
      perms = pde;
      phys_page = (pde & 0xFFC00000u) | (lin & 0x003FF000u);
    } else {
      pte_addr = (pde & 0xFFFFF000u) | (((lin >> 12) & 0x3FF) << 2);
      pte = phys_read32(pte_addr);
      if (!(pte & kPteP)) page_fault(0);
      perms = pde & pte;
      phys_page = pte & 0xFFFFF000u;
    }
    const bool u_ok = perms & kPteU;
    const bool w_ok = perms & kPteW;
    if (user) {
      if (!u_ok || (write && !w_ok)) page_fault(kPfPresent);
      writable = w_ok;
    } else {
      if (write && !w_ok && (cr0 & kCr0Wp)) page_fault(kPfPresent);
      writable = w_ok || !(cr0 & kCr0Wp);
    }
    // Accessed and dirty bits (SDM vol. 3, 4.8).
    if (!(pde & kPteA)) {
      pde |= kPteA;
      phys_write32(pde_addr, pde);
    }
    bool dirty;
    if (large) {
      if (write && !(pde & kPteD)) {
        pde |= kPteD;
        phys_write32(pde_addr, pde);
      }
      dirty = pde & kPteD;
      global = (cr4 & kCr4Pge) && (pde & kPteG);
    } else {
      const uint32_t want = kPteA | (write ? kPteD : 0);
      if ((pte & want) != want) {
        pte |= want;
        phys_write32(pte_addr, pte);
      }
      dirty = pte & kPteD;
      global = (cr4 & kCr4Pge) && (pte & kPteG);
    }
    writable = writable && dirty;
  }
  // Fill the TLB entry.
  if (e.large && e.read_tag != kNoTag && large_entries_ > 0) --large_entries_;
  e.phys_page = phys_page;
  e.global = global;
  e.large = large;
  if (large) ++large_entries_;
  if (is_ram(phys_page, 0x1000)) {
    e.read_tag = page;
    e.addend = reinterpret_cast<uintptr_t>(ram_ + phys_page) - page;
    const bool code = code_pages != nullptr && code_pages[phys_page >> 12];
    e.write_tag = (writable && !code) ? page : kNoTag;
  } else {
    e.read_tag = e.write_tag = kNoTag;
    e.addend = 0;
  }
  return phys_page | (lin & 0xFFF);
}

uint32_t Cpu::translate_fetch(uint32_t lin) {
  const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
  if (EMU_LIKELY(e.read_tag == (lin & ~0xFFFu))) return e.phys_page | (lin & 0xFFF);
  const bool user = cpl == 3;
  return translate(lin, false, user, user);
}

bool Cpu::peek_translate(uint32_t lin, uint32_t& phys) const {
  if (!paging()) {
    phys = lin;
    return true;
  }
  auto rd = [&](uint32_t pa, uint32_t& out) {
    if (!is_ram(pa, 4)) return false;
    std::memcpy(&out, ram_ + pa, 4);
    return true;
  };
  uint32_t pde;
  if (!rd((cr3 & 0xFFFFF000u) | ((lin >> 22) << 2), pde) || !(pde & kPteP)) return false;
  if ((pde & kPtePs) && (cr4 & kCr4Pse)) {
    phys = (pde & 0xFFC00000u) | (lin & 0x003FFFFFu);
    return true;
  }
  uint32_t pte;
  if (!rd((pde & 0xFFFFF000u) | (((lin >> 12) & 0x3FF) << 2), pte) || !(pte & kPteP)) return false;
  phys = (pte & 0xFFFFF000u) | (lin & 0xFFF);
  return true;
}

// ---------------------------------------------------------------------------
// Physical access

uint32_t Cpu::phys_read(uint32_t pa, unsigned size) {
  if (EMU_LIKELY(is_ram(pa, size))) {
    uint32_t v = 0;
    std::memcpy(&v, ram_ + pa, size);
    return v;
  }
  uint8_t buf[4] = {0xFF, 0xFF, 0xFF, 0xFF};
  MachineBindings* m = bind.machine;
  if (m != nullptr && m->mmio != nullptr) {
    sync_clock();
    DeviceLock lock(m);
    m->mmio->read(pa, std::span(buf, size));
    if (m->pic != nullptr) irq_hint = m->pic->interrupt_pending();
  }
  uint32_t v = 0;
  std::memcpy(&v, buf, size);
  return v;
}

void Cpu::phys_write(uint32_t pa, unsigned size, uint32_t v) {
  if (EMU_LIKELY(is_ram(pa, size))) {
    note_code_write(pa, size);
    std::memcpy(ram_ + pa, &v, size);
    return;
  }
  MachineBindings* m = bind.machine;
  if (m != nullptr && m->mmio != nullptr) {
    uint8_t buf[4];
    std::memcpy(buf, &v, 4);
    sync_clock();
    DeviceLock lock(m);
    m->mmio->write(pa, std::span<const uint8_t>(buf, size));
    if (m->pic != nullptr) irq_hint = m->pic->interrupt_pending();
  }
}

void Cpu::note_code_write(uint32_t pa, unsigned size) {
  if (code_pages == nullptr) return;
  const uint32_t first = pa >> 12, last = (pa + size - 1) >> 12;
  for (uint32_t p = first; p <= last; ++p) {
    if (code_pages[p] && bind.cache != nullptr) {
      bind.cache->invalidate_page(p);
      ++code_invalidations;
      stop_block = true;
    }
  }
}

uint32_t Cpu::phys_read32(uint32_t pa) { return phys_read(pa, 4); }
void Cpu::phys_write32(uint32_t pa, uint32_t v) { phys_write(pa, 4, v); }

// ---------------------------------------------------------------------------
// Slow paths of linear access

uint32_t Cpu::read_slow(uint32_t lin, unsigned size, Priv priv) {
  const bool user = access_user(priv);
  const unsigned first = std::min<unsigned>(size, 0x1000 - (lin & 0xFFF));
  const uint32_t pa1 = translate(lin, false, user, user);
  if (first == size) return phys_read(pa1, size);
  // Crosses a page boundary: both pages are checked before either is read.
  const uint32_t pa2 = translate(lin + first, false, user, user);
  const uint32_t lo = phys_read(pa1, first);
  const uint32_t hi = phys_read(pa2, size - first);
  return lo | (hi << (8 * first));
}

void Cpu::write_slow(uint32_t lin, unsigned size, uint32_t v, Priv priv) {
  const bool user = access_user(priv);
  const unsigned first = std::min<unsigned>(size, 0x1000 - (lin & 0xFFF));
  const uint32_t pa1 = translate(lin, true, user, user);
  if (first == size) {
    phys_write(pa1, size, v);
    return;
  }
  const uint32_t pa2 = translate(lin + first, true, user, user);
  phys_write(pa1, first, v);
  phys_write(pa2, size - first, v >> (8 * first));
}

void Cpu::probe_write(uint32_t lin, unsigned size, Priv priv) {
  const bool user = access_user(priv);
  translate(lin, true, user, user);
  const uint32_t last = lin + size - 1;
  if ((last & ~0xFFFu) != (lin & ~0xFFFu)) translate(last, true, user, user);
}

void Cpu::read_bytes(uint32_t lin, std::span<uint8_t> out, Priv priv) {
  const bool user = access_user(priv);
  // Check every page first (no partial effects on a fault).
  for (uint32_t off = 0; off < out.size();) {
    const uint32_t n = std::min<uint32_t>(static_cast<uint32_t>(out.size()) - off, 0x1000 - ((lin + off) & 0xFFF));
    translate(lin + off, false, user, user);
    off += n;
  }
  for (uint32_t off = 0; off < out.size();) {
    const uint32_t n = std::min<uint32_t>(static_cast<uint32_t>(out.size()) - off, 0x1000 - ((lin + off) & 0xFFF));
    const uint32_t pa = translate(lin + off, false, user, user);
    if (is_ram(pa, n)) {
      std::memcpy(out.data() + off, ram_ + pa, n);
    } else {
      for (uint32_t i = 0; i < n; ++i) out[off + i] = static_cast<uint8_t>(phys_read(pa + i, 1));
    }
    off += n;
  }
}

void Cpu::write_bytes(uint32_t lin, std::span<const uint8_t> in, Priv priv) {
  const bool user = access_user(priv);
  for (uint32_t off = 0; off < in.size();) {
    const uint32_t n = std::min<uint32_t>(static_cast<uint32_t>(in.size()) - off, 0x1000 - ((lin + off) & 0xFFF));
    translate(lin + off, true, user, user);
    off += n;
  }
  for (uint32_t off = 0; off < in.size();) {
    const uint32_t n = std::min<uint32_t>(static_cast<uint32_t>(in.size()) - off, 0x1000 - ((lin + off) & 0xFFF));
    const uint32_t pa = translate(lin + off, true, user, user);
    if (is_ram(pa, n)) {
      note_code_write(pa, n);
      std::memcpy(ram_ + pa, in.data() + off, n);
    } else {
      for (uint32_t i = 0; i < n; ++i) phys_write(pa + i, 1, in[off + i]);
    }
    off += n;
  }
}

uint8_t* Cpu::host_ptr(uint32_t lin, uint32_t len, bool write) {
  if (len == 0 || (lin & 0xFFF) + len > 0x1000) return nullptr;
  const bool user = cpl == 3;
  const TlbEntry& e = tlb_cur_[(lin >> 12) & (kTlbEntries - 1)];
  const uint32_t page = lin & ~0xFFFu;
  if ((write ? e.write_tag : e.read_tag) == page) return reinterpret_cast<uint8_t*>(e.addend + lin);
  const uint32_t pa = translate(lin, write, user, user);
  if (!is_ram(pa, len)) return nullptr;
  if (write) note_code_write(pa, len);
  return ram_ + pa;
}

void Cpu::segment_fault(unsigned sr) {
  if (sr == kSs) raise(kVecSS, 0);
  raise_gp(0);
}

}  // namespace twoostwo::vmcore::emu
