// String instruction handlers: MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS with
// REP/REPE/REPNE, in 16- and 32-bit address sizes, honouring DF.
//
// A REP instruction runs at most kRepChunk elements per call; if the count
// is not exhausted it leaves EIP on itself and ends the block, so
// interrupts and kicks are taken between chunks (the architecture allows
// this: the registers always describe the elements done). Every element is
// committed (registers updated) before the next one starts, so a fault
// leaves a restartable state. REP MOVS/STOS with DF=0 copy whole runs that
// stay within one page of RAM on each side with memcpy/memset.
#include <algorithm>
#include <cstring>

#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {
namespace {

constexpr uint32_t kRepChunk = 1u << 16;

enum RepKind : unsigned { kNoRep = 0, kRepE = 1, kRepNe = 2 };

// Stop a REP instruction after a chunk, EIP left on it so that it resumes.
// Each chunk counts as one retired instruction (the block loop counts only
// instructions whose EIP moved on), so the slice and the virtual clock
// advance during a long REP.
EMU_INLINE void yield_chunk(Cpu& c) {
  c.stop_block = true;
  ++c.icount;
}

template <bool A16>
EMU_INLINE uint32_t index_reg(const Cpu& c, unsigned r) {
  return A16 ? (c.gpr[r] & 0xFFFF) : c.gpr[r];
}
template <bool A16>
EMU_INLINE void advance_reg(Cpu& c, unsigned r, int32_t delta) {
  if constexpr (A16) c.gpr[r] = (c.gpr[r] & 0xFFFF0000u) | ((c.gpr[r] + static_cast<uint32_t>(delta)) & 0xFFFF);
  else c.gpr[r] += static_cast<uint32_t>(delta);
}
template <bool A16>
EMU_INLINE uint32_t count_reg(const Cpu& c) {
  return A16 ? (c.gpr[kEcx] & 0xFFFF) : c.gpr[kEcx];
}
template <bool A16>
EMU_INLINE void set_count(Cpu& c, uint32_t v) {
  if constexpr (A16) c.gpr[kEcx] = (c.gpr[kEcx] & 0xFFFF0000u) | (v & 0xFFFF);
  else c.gpr[kEcx] = v;
}
template <unsigned S>
EMU_INLINE int32_t step(const Cpu& c) {
  return (c.eflags & kDF) ? -static_cast<int32_t>(S) : static_cast<int32_t>(S);
}

// Elements of S bytes that fit from `off` to the end of its page (linear
// `lin`), within the segment's write/read limit `hi` and, for 16-bit
// addressing, without wrapping at 64 KiB.
template <unsigned S, bool A16>
EMU_INLINE uint32_t run_length(uint32_t lin, uint32_t off, uint32_t hi) {
  uint32_t n = (0x1000 - (lin & 0xFFF)) / S;
  if (uint64_t{off} + S - 1 > hi) return 0;
  n = std::min<uint64_t>(n, (uint64_t{hi} - off + 1) / S);
  if constexpr (A16) n = std::min<uint32_t>(n, (0x10000 - off) / S);
  return n;
}

// --- MOVS --------------------------------------------------------------------------

template <unsigned S, bool A16>
EMU_INLINE void movs_one(Cpu& c, const Insn& i) {
  const uint32_t v = c.read<S>(i.seg, index_reg<A16>(c, kEsi));
  c.write<S>(kEs, index_reg<A16>(c, kEdi), v);
  const int32_t d = step<S>(c);
  advance_reg<A16>(c, kEsi, d);
  advance_reg<A16>(c, kEdi, d);
}

// One memcpy run of REP MOVS (DF=0); returns elements done (0: use the slow path).
template <unsigned S, bool A16>
uint32_t movs_run(Cpu& c, const Insn& i, uint32_t count) {
  const SegmentCache& ss = c.seg[i.seg];
  const SegmentCache& ds = c.seg[kEs];
  const uint32_t so = index_reg<A16>(c, kEsi), doff = index_reg<A16>(c, kEdi);
  if (so < ss.rd_lo || doff < ds.wr_lo) return 0;
  const uint32_t slin = ss.base + so, dlin = ds.base + doff;
  uint32_t n = std::min({count, run_length<S, A16>(slin, so, ss.rd_hi), run_length<S, A16>(dlin, doff, ds.wr_hi)});
  if (n < 2) return 0;
  const uint8_t* src = c.host_ptr(slin, n * S, false);
  if (src == nullptr) return 0;
  uint8_t* dst = c.host_ptr(dlin, n * S, true);
  if (dst == nullptr) return 0;
  if (dst > src && dst < src + n * S) {
    // Forward element copy over an overlap (e.g. a pattern fill): as the CPU does.
    for (uint32_t k = 0; k < n * S; ++k) dst[k] = src[k];
  } else {
    std::memmove(dst, src, size_t{n} * S);
  }
  advance_reg<A16>(c, kEsi, static_cast<int32_t>(n * S));
  advance_reg<A16>(c, kEdi, static_cast<int32_t>(n * S));
  set_count<A16>(c, count - n);
  return n;
}

template <unsigned S, bool A16, unsigned R>
void movs(Cpu& c, const Insn& i) {
  if constexpr (R == kNoRep) {
    movs_one<S, A16>(c, i);
  } else {
    uint32_t budget = kRepChunk;
    for (;;) {
      const uint32_t count = count_reg<A16>(c);
      if (count == 0) break;
      if (budget == 0) {
        yield_chunk(c);
        return;
      }
      if (!(c.eflags & kDF)) {
        const uint32_t n = movs_run<S, A16>(c, i, count);
        if (n != 0) {
          budget -= std::min(budget, n);
          continue;
        }
      }
      movs_one<S, A16>(c, i);
      set_count<A16>(c, count - 1);
      --budget;
    }
  }
  next(c, i);
}

// --- STOS --------------------------------------------------------------------------

template <unsigned S, bool A16>
uint32_t stos_run(Cpu& c, uint32_t count) {
  const SegmentCache& ds = c.seg[kEs];
  const uint32_t doff = index_reg<A16>(c, kEdi);
  if (doff < ds.wr_lo) return 0;
  const uint32_t dlin = ds.base + doff;
  const uint32_t n = std::min(count, run_length<S, A16>(dlin, doff, ds.wr_hi));
  if (n < 2) return 0;
  uint8_t* dst = c.host_ptr(dlin, n * S, true);
  if (dst == nullptr) return 0;
  const uint32_t v = c.reg<S>(0);
  if constexpr (S == 1) {
    std::memset(dst, static_cast<int>(v), n);
  } else {
    for (uint32_t k = 0; k < n; ++k) std::memcpy(dst + k * S, &v, S);
  }
  advance_reg<A16>(c, kEdi, static_cast<int32_t>(n * S));
  set_count<A16>(c, count - n);
  return n;
}

template <unsigned S, bool A16, unsigned R>
void stos(Cpu& c, const Insn& i) {
  if constexpr (R == kNoRep) {
    c.write<S>(kEs, index_reg<A16>(c, kEdi), c.reg<S>(0));
    advance_reg<A16>(c, kEdi, step<S>(c));
  } else {
    uint32_t budget = kRepChunk;
    for (;;) {
      const uint32_t count = count_reg<A16>(c);
      if (count == 0) break;
      if (budget == 0) {
        yield_chunk(c);
        return;
      }
      if (!(c.eflags & kDF)) {
        const uint32_t n = stos_run<S, A16>(c, count);
        if (n != 0) {
          budget -= std::min(budget, n);
          continue;
        }
      }
      c.write<S>(kEs, index_reg<A16>(c, kEdi), c.reg<S>(0));
      advance_reg<A16>(c, kEdi, step<S>(c));
      set_count<A16>(c, count - 1);
      --budget;
    }
  }
  next(c, i);
}

// --- LODS --------------------------------------------------------------------------

template <unsigned S, bool A16, unsigned R>
void lods(Cpu& c, const Insn& i) {
  if constexpr (R == kNoRep) {
    c.set_reg<S>(0, c.read<S>(i.seg, index_reg<A16>(c, kEsi)));
    advance_reg<A16>(c, kEsi, step<S>(c));
  } else {
    uint32_t budget = kRepChunk;
    for (;;) {
      const uint32_t count = count_reg<A16>(c);
      if (count == 0) break;
      if (budget-- == 0) {
        yield_chunk(c);
        return;
      }
      c.set_reg<S>(0, c.read<S>(i.seg, index_reg<A16>(c, kEsi)));
      advance_reg<A16>(c, kEsi, step<S>(c));
      set_count<A16>(c, count - 1);
    }
  }
  next(c, i);
}

// --- CMPS / SCAS ------------------------------------------------------------------------

template <unsigned S, bool A16, unsigned R, bool Cmps>
void compare_string(Cpu& c, const Insn& i) {
  auto one = [&] {
    uint32_t a;
    if constexpr (Cmps) a = c.read<S>(i.seg, index_reg<A16>(c, kEsi));
    else a = c.reg<S>(0);
    const uint32_t b = c.read<S>(kEs, index_reg<A16>(c, kEdi));
    c.set_lazy<Cpu::kLazySub, S>(a, b);
    const int32_t d = step<S>(c);
    if constexpr (Cmps) advance_reg<A16>(c, kEsi, d);
    advance_reg<A16>(c, kEdi, d);
  };
  if constexpr (R == kNoRep) {
    one();
  } else {
    uint32_t budget = kRepChunk;
    for (;;) {
      const uint32_t count = count_reg<A16>(c);
      if (count == 0) break;
      if (budget-- == 0) {
        yield_chunk(c);
        return;
      }
      one();
      set_count<A16>(c, count - 1);
      const bool zf = c.lazy_a == c.lazy_b;  // ZF of the CMP just done
      if ((R == kRepE && !zf) || (R == kRepNe && zf)) break;
    }
  }
  next(c, i);
}

// --- INS / OUTS ---------------------------------------------------------------------------

// The port accesses of one REP INS/OUTS chunk (a NIC's `rep insl`/`rep
// outsl` moves a whole frame through one data port). Cpu::io_read/io_write
// take the device lock, sync the virtual clock and re-read the PIC for every
// element; here that is done once per run of up to kIoLockRun elements: the
// lock is then let go, so that the I/O thread waits at most one run. The
// virtual clock cannot move within one instruction, and the PIC is re-read
// whenever the lock is let go (also when a fault unwinds), before any
// interrupt could be taken.
class PortRun {
 public:
  static constexpr unsigned kIoLockRun = 256;
  explicit PortRun(Cpu& c) : c_(c), m_(c.bind.machine != nullptr && c.bind.machine->io != nullptr ? c.bind.machine
                                                                                                  : nullptr) {}
  ~PortRun() { release(); }
  PortRun(const PortRun&) = delete;
  PortRun& operator=(const PortRun&) = delete;

  uint32_t read(uint16_t port, unsigned size) {
    uint8_t buf[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    if (m_ != nullptr) {
      acquire();
      m_->io->read(port, std::span(buf, size));
    }
    uint32_t v = 0;
    std::memcpy(&v, buf, size);
    return v;
  }
  void write(uint16_t port, unsigned size, uint32_t v) {
    if (m_ == nullptr) return;
    uint8_t buf[4];
    std::memcpy(buf, &v, 4);
    acquire();
    m_->io->write(port, std::span<const uint8_t>(buf, size));
  }

 private:
  void acquire() {
    if (held_ == kIoLockRun) release();
    if (held_ == 0) {
      c_.sync_clock();
      if (m_->lock_devices) m_->lock_devices();
    }
    ++held_;
  }
  void release() {
    if (held_ == 0) return;
    if (m_->pic != nullptr) c_.irq_hint = m_->pic->interrupt_pending();
    if (m_->unlock_devices) m_->unlock_devices();
    held_ = 0;
  }
  Cpu& c_;
  MachineBindings* m_;
  unsigned held_ = 0;  // elements done under the lock now held (0: not held)
};

// The elements of one INS/OUTS (all of them, or one chunk of a REP): true
// if the chunk ran out with elements left (yield_chunk done). The PortRun
// ends here, before the handler goes on to the next instruction (next()
// must stay a tail call, and the lock must not be held past this one).
template <unsigned S, bool A16, unsigned R, bool In>
bool port_string_elements(Cpu& c, const Insn& i, uint16_t port) {
  PortRun ports(c);
  auto one = [&] {
    if constexpr (In) {
      const uint32_t off = index_reg<A16>(c, kEdi);
      // Check the destination before the port is read, so no data is lost to a fault.
      c.probe_write(c.check_segment(kEs, off, S, true), S);
      const uint32_t v = ports.read(port, S);
      c.write<S>(kEs, off, v);
      advance_reg<A16>(c, kEdi, step<S>(c));
    } else {
      const uint32_t v = c.read<S>(i.seg, index_reg<A16>(c, kEsi));
      ports.write(port, S, v);
      advance_reg<A16>(c, kEsi, step<S>(c));
    }
  };
  if constexpr (R == kNoRep) {
    one();
  } else {
    uint32_t budget = kRepChunk;
    for (;;) {
      const uint32_t count = count_reg<A16>(c);
      if (count == 0) break;
      if (budget-- == 0) {
        yield_chunk(c);
        return true;
      }
      one();
      set_count<A16>(c, count - 1);
    }
  }
  return false;
}

template <unsigned S, bool A16, unsigned R>
void ins(Cpu& c, const Insn& i) {
  const auto port = static_cast<uint16_t>(c.gpr[kEdx]);
  c.check_io(port, S);
  if (port_string_elements<S, A16, R, true>(c, i, port)) return;
  next(c, i);
}

template <unsigned S, bool A16, unsigned R>
void outs(Cpu& c, const Insn& i) {
  const auto port = static_cast<uint16_t>(c.gpr[kEdx]);
  c.check_io(port, S);
  if (port_string_elements<S, A16, R, false>(c, i, port)) return;
  next(c, i);
}

// --- selection -------------------------------------------------------------------------

enum class StrOp { kMovs, kStos, kLods, kCmps, kScas, kIns, kOuts };

template <StrOp Op, unsigned S, bool A16, unsigned R>
Handler pick3() {
  if constexpr (Op == StrOp::kMovs) return movs<S, A16, R == kNoRep ? kNoRep : kRepE>;
  else if constexpr (Op == StrOp::kStos) return stos<S, A16, R == kNoRep ? kNoRep : kRepE>;
  else if constexpr (Op == StrOp::kLods) return lods<S, A16, R == kNoRep ? kNoRep : kRepE>;
  else if constexpr (Op == StrOp::kCmps) return compare_string<S, A16, R, true>;
  else if constexpr (Op == StrOp::kScas) return compare_string<S, A16, R, false>;
  else if constexpr (Op == StrOp::kIns) return ins<S, A16, R == kNoRep ? kNoRep : kRepE>;
  else return outs<S, A16, R == kNoRep ? kNoRep : kRepE>;
}
template <StrOp Op, unsigned S, bool A16>
Handler pick2(unsigned rep) {
  return rep == kNoRep ? pick3<Op, S, A16, kNoRep>() : rep == kRepE ? pick3<Op, S, A16, kRepE>()
                                                                     : pick3<Op, S, A16, kRepNe>();
}
template <StrOp Op, unsigned S>
Handler pick1(bool a16, unsigned rep) {
  return a16 ? pick2<Op, S, true>(rep) : pick2<Op, S, false>(rep);
}
template <StrOp Op>
Handler pick(unsigned s, bool a16, unsigned rep) {
  return s == 1 ? pick1<Op, 1>(a16, rep) : s == 2 ? pick1<Op, 2>(a16, rep) : pick1<Op, 4>(a16, rep);
}

}  // namespace

bool translate_string(const Decoded& d, Insn& in) {
  StrOp op;
  unsigned s;
  switch (d.zi.mnemonic) {
    case ZYDIS_MNEMONIC_MOVSB: op = StrOp::kMovs; s = 1; break;
    case ZYDIS_MNEMONIC_MOVSW: op = StrOp::kMovs; s = 2; break;
    case ZYDIS_MNEMONIC_MOVSD: op = StrOp::kMovs; s = 4; break;
    case ZYDIS_MNEMONIC_STOSB: op = StrOp::kStos; s = 1; break;
    case ZYDIS_MNEMONIC_STOSW: op = StrOp::kStos; s = 2; break;
    case ZYDIS_MNEMONIC_STOSD: op = StrOp::kStos; s = 4; break;
    case ZYDIS_MNEMONIC_LODSB: op = StrOp::kLods; s = 1; break;
    case ZYDIS_MNEMONIC_LODSW: op = StrOp::kLods; s = 2; break;
    case ZYDIS_MNEMONIC_LODSD: op = StrOp::kLods; s = 4; break;
    case ZYDIS_MNEMONIC_CMPSB: op = StrOp::kCmps; s = 1; break;
    case ZYDIS_MNEMONIC_CMPSW: op = StrOp::kCmps; s = 2; break;
    case ZYDIS_MNEMONIC_CMPSD: op = StrOp::kCmps; s = 4; break;
    case ZYDIS_MNEMONIC_SCASB: op = StrOp::kScas; s = 1; break;
    case ZYDIS_MNEMONIC_SCASW: op = StrOp::kScas; s = 2; break;
    case ZYDIS_MNEMONIC_SCASD: op = StrOp::kScas; s = 4; break;
    case ZYDIS_MNEMONIC_INSB: op = StrOp::kIns; s = 1; break;
    case ZYDIS_MNEMONIC_INSW: op = StrOp::kIns; s = 2; break;
    case ZYDIS_MNEMONIC_INSD: op = StrOp::kIns; s = 4; break;
    case ZYDIS_MNEMONIC_OUTSB: op = StrOp::kOuts; s = 1; break;
    case ZYDIS_MNEMONIC_OUTSW: op = StrOp::kOuts; s = 2; break;
    case ZYDIS_MNEMONIC_OUTSD: op = StrOp::kOuts; s = 4; break;
    default: return false;
  }
  if (d.has(ZYDIS_ATTRIB_HAS_MODRM)) return false;  // the SSE2 MOVSD/CMPSD xmm forms: not ours
  const bool a16 = d.zi.address_width == 16;
  if (a16) in.flags |= kInsnAddr16;
  // Source segment (DS unless overridden) from the hidden source memory operand.
  in.seg = kDs;
  if (op == StrOp::kMovs || op == StrOp::kLods || op == StrOp::kCmps || op == StrOp::kOuts) {
    for (unsigned n = 0; n < d.zi.operand_count; ++n) {
      const ZydisDecodedOperand& o = d.ops[n];
      if (o.type == ZYDIS_OPERAND_TYPE_MEMORY && (o.mem.base == ZYDIS_REGISTER_ESI || o.mem.base == ZYDIS_REGISTER_SI)) {
        const uint8_t sr = seg_number(o.mem.segment);
        if (sr != 0xFF) in.seg = sr;
      }
    }
  }
  unsigned rep = kNoRep;
  if (d.has(ZYDIS_ATTRIB_HAS_REPNE)) rep = kRepNe;
  else if (d.has(ZYDIS_ATTRIB_HAS_REP) || d.has(ZYDIS_ATTRIB_HAS_REPE)) rep = kRepE;
  if (rep != kNoRep) {
    in.flags |= kInsnEndsBlock;  // may stop early and resume: keep it last in its block
    if (op != StrOp::kCmps && op != StrOp::kScas) rep = kRepE;
  }
  switch (op) {
    case StrOp::kMovs: in.fn = pick<StrOp::kMovs>(s, a16, rep); break;
    case StrOp::kStos: in.fn = pick<StrOp::kStos>(s, a16, rep); break;
    case StrOp::kLods: in.fn = pick<StrOp::kLods>(s, a16, rep); break;
    case StrOp::kCmps: in.fn = pick<StrOp::kCmps>(s, a16, rep); break;
    case StrOp::kScas: in.fn = pick<StrOp::kScas>(s, a16, rep); break;
    case StrOp::kIns: in.fn = pick<StrOp::kIns>(s, a16, rep); break;
    case StrOp::kOuts: in.fn = pick<StrOp::kOuts>(s, a16, rep); break;
  }
  return true;
}

}  // namespace twoostwo::vmcore::emu
