#include "vmcore/emulator/jit.h"

#include <fmt/format.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xbyak/xbyak.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <vector>

#include "vmcore/emulator/alu.h"
#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/chain.h"

// libgcc's unwinder: register a .eh_frame table (a CIE, FDEs, a zero terminator).
extern "C" void __register_frame(void*);
extern "C" void __deregister_frame(void*);

namespace twoostwo::vmcore::emu {

namespace {

using namespace Xbyak::util;
using Xbyak::Label;
constexpr auto kNear = Xbyak::CodeGenerator::T_NEAR;

constexpr size_t kMinCacheBytes = size_t{64} << 10;
constexpr size_t kStubBytes = 256;
/// The fixed frame of every generated block (the entry stub pushes rbx and
/// r12 and keeps rsp 16-byte aligned): CFA = rsp + 32.
constexpr uint8_t kFrameBytes = 32;

void put32(uint8_t*& p, uint32_t v) {
  std::memcpy(p, &v, 4);
  p += 4;
}
void put64(uint8_t*& p, uint64_t v) {
  std::memcpy(p, &v, 8);
  p += 8;
}

/// One CIE and one FDE covering [code, code + size): the return address at
/// CFA-8, rbx at CFA-16, r12 at CFA-24, CFA = rsp + 32 everywhere (the entry
/// stub itself never throws).
std::vector<uint8_t> eh_frame_for(const uint8_t* code, size_t size) {
  std::vector<uint8_t> v(128, 0);
  uint8_t* q = v.data();
  uint8_t* const cie = q;
  put32(q, 0);  // length (patched)
  put32(q, 0);  // CIE id
  *q++ = 1;     // version
  *q++ = 'z';
  *q++ = 'R';
  *q++ = 0;
  *q++ = 1;     // code alignment factor
  *q++ = 0x78;  // data alignment factor -8 (SLEB128)
  *q++ = 16;    // return address column (rip)
  *q++ = 1;     // augmentation data length
  *q++ = 0x00;  // FDE pointer encoding: absolute
  *q++ = 0x0c;  // DW_CFA_def_cfa rsp+8
  *q++ = 7;
  *q++ = 8;
  *q++ = 0x80 | 16;  // DW_CFA_offset rip, 1*-8
  *q++ = 1;
  while ((q - cie) % 8 != 0) *q++ = 0;
  const auto cie_len = static_cast<uint32_t>(q - cie - 4);
  std::memcpy(cie, &cie_len, 4);
  uint8_t* const fde = q;
  put32(q, 0);                                   // length (patched)
  put32(q, static_cast<uint32_t>(q - cie));      // CIE pointer (offset back to the CIE)
  put64(q, reinterpret_cast<uint64_t>(code));    // initial location
  put64(q, size);                                // range
  *q++ = 0;                                      // augmentation data length
  *q++ = 0x0e;                                   // DW_CFA_def_cfa_offset 32
  *q++ = kFrameBytes;
  *q++ = 0x80 | 3;  // DW_CFA_offset rbx, 2*-8
  *q++ = 2;
  *q++ = 0x80 | 12;  // DW_CFA_offset r12, 3*-8
  *q++ = 3;
  while ((q - fde) % 8 != 0) *q++ = 0;
  const auto fde_len = static_cast<uint32_t>(q - fde - 4);
  std::memcpy(fde, &fde_len, 4);
  put32(q, 0);  // terminator
  v.resize(static_cast<size_t>(q - v.data()));
  return v;
}

/// Byte offset of a member of `c`'s object (Cpu is not standard-layout, so
/// not offsetof).
template <typename T>
int32_t off_of(const Cpu& c, const T& member) {
  return static_cast<int32_t>(reinterpret_cast<const uint8_t*>(&member) - reinterpret_cast<const uint8_t*>(&c));
}

/// What the compiler knows about the lazy flags inside a block (as QEMU's
/// cc_op): set by an inline flag producer, forgotten at a handler call.
struct Known {
  bool valid = false;
  Cpu::LazyOp op = Cpu::kLazyNone;
  unsigned size = 4;
};

/// An out-of-line slow path: the whole instruction by its handler.
struct Slow {
  Label entry, back;
  const Insn* insn;
  uint32_t off;
  bool branch;  // CALL/RET: the handler ended the block (leave through a dynamic exit)
};

/// A called instruction's copy in the code buffer (see call_fn()).
struct InsnCopy {
  Label label;
  bool used = false;
};

/// A guard stub of a cross-page link (Jit::link_exit): with block_lin =
/// the target's linear address, jump to `target` (RX) if Cpu::code_epoch is
/// still `epoch` and the TLB maps the target's page to `phys_page`, else to
/// `fail` (RX: the exit's call of link_exit). Fixed encodings, so that a
/// relink patches `epoch`, `phys_page` and `target` in place (at the
/// offsets returned: the ends of their 32-bit fields).
constexpr size_t kGuardBytes = 96;
struct GuardLayout {
  size_t epoch_end, phys_end, target_end;
};
GuardLayout emit_guard(const Cpu& c, uint8_t* rw, const uint8_t* rx, uint32_t epoch, uint32_t phys_page,
                       const uint8_t* target, const uint8_t* fail) {
  GuardLayout layout;
  Xbyak::CodeGenerator g(kGuardBytes, rw);
  const auto rw_of = [&](const uint8_t* p) { return reinterpret_cast<const void*>(p - (rx - rw)); };
  // The immediates go through MOV r32, imm32 (CMP would take an imm8 for
  // small values, and a patch needs all 32 bits).
  g.mov(edx, epoch);
  layout.epoch_end = g.getSize();
  g.cmp(g.dword[rbx + off_of(c, c.code_epoch)], edx);
  g.jne(rw_of(fail));  // always rel32
  g.mov(eax, g.dword[rbx + off_of(c, c.block_lin)]);
  g.mov(ecx, eax);
  g.shr(ecx, 12);
  g.and_(ecx, kTlbEntries - 1);
  g.lea(ecx, g.ptr[rcx + rcx * 2]);
  g.shl(ecx, 3);
  g.add(rcx, g.qword[rbx + Jit::tlb_cur_offset(c)]);
  g.and_(eax, 0xFFFFF000u);
  g.cmp(g.dword[rcx + static_cast<int32_t>(offsetof(TlbEntry, read_tag))], eax);
  g.jne(rw_of(fail));  // always rel32
  g.mov(edx, phys_page);
  layout.phys_end = g.getSize();
  g.cmp(g.dword[rcx + static_cast<int32_t>(offsetof(TlbEntry, phys_page))], edx);
  g.jne(rw_of(fail));  // always rel32
  g.jmp(rw_of(target), Xbyak::CodeGenerator::T_NEAR);
  layout.target_end = g.getSize();
  g.ready();
  return layout;
}

/// The sentinel after an instruction copy: returns to the generated code.
void handler_jit_return(Cpu&, const Insn&) {}

struct ExitData {
  Label label;
  JitExit exit;
  size_t rel32_pos;   // in the block's code
  Label nolink, helper;
};

/// The out-of-line part of an exit's checks (a kick, or a pending
/// interrupt: is IF set?).
struct ColdExit {
  Label irq, go;
};

class Compiler : public Xbyak::CodeGenerator {
 public:
  Compiler(Cpu& c, Block& b, uint8_t* rw, uint8_t* rx, size_t room, const uint8_t* leave, Jit* jit)
      : Xbyak::CodeGenerator(room, rw), c_(c), b_(b), rw_(rw), rx_(rx), leave_(leave), jit_(jit) {}

  uint64_t inline_count = 0, called_count = 0;
  /// Where each region of the code starts (for the perf map): offset, name
  /// (null: data up to the next region).
  std::vector<std::pair<size_t, const char*>> regions;

  void compile() {
    const Insn* in = b_.insns();
    // Entry (from the loop or a link): the bookkeeping end_block() does.
    region("entry");
    mov(rax, reinterpret_cast<uint64_t>(&b_));
    mov(qword[rbx + o(c_.current_block)], rax);
    mov(byte[rbx + o(c_.irq_shadow)], 0);
    mov(r12d, dword[rbx + o(c_.eip)]);
    mov(dword[rbx + o(c_.block_eip)], r12d);
    region("body");
    uint32_t off = 0;
    bool eip_exact = true;  // c.eip == entry + off
    bool ended = false;
    for (uint32_t k = 0; k < b_.count; ++k) {
      const Insn& i = in[k];
      const bool last = k + 1 == b_.count;
      bool inlined = emit_inline(i, off, ended);
      if (inlined) {
        ++inline_count;
        eip_exact = false;
      } else {
        ++called_count;
        call_handler(i, off, !eip_exact);
        known_ = {};
        eip_exact = true;
        if (last && (i.flags & kInsnEndsBlock)) {
          // A branch handler reached end_block() (jit_chain); anything else
          // (far branch, INT, IRET, HLT...) returns to the loop.
          cmp(byte[rbx + o(c_.jit_chain)], 0);
          je(stop_, kNear);
          mov(byte[rbx + o(c_.jit_chain)], 0);
          emit_exit(false, 0);
          ended = true;
        }
      }
      off += i.len;
    }
    if (!ended) {
      if (!eip_exact) set_eip(off);
      emit_exit(true, off);
    }
    region("slow");
    for (Slow& s : slows_) {
      L(s.entry);
      set_eip(s.off);
      call_fn(*s.insn);
      cmp(byte[rbx + o(c_.stop_block)], 0);
      jne(stop_, kNear);
      if (s.branch) {
        mov(byte[rbx + o(c_.jit_chain)], 0);
        emit_exit(false, 0);
      } else {
        jmp(s.back, kNear);
      }
    }
    // The continuations of inline CALLs (entered from a RET's exit through
    // the return-address stack, block_lin = this block's entry, counted
    // and checked): a static exit to the return address.
    region("cont");
    for (Cont& k : conts_) {
      L(k.label);
      emit_link(k.off);
    }
    // The exits' cold paths: before a link, a pending interrupt. Then the
    // block's jump cache lookup, shared by its exits.
    region("tail");
    for (ExitData& e : exits_) {
      L(e.helper);
      lea(rsi, ptr[rip + e.label]);
      mov(rdi, reinterpret_cast<uint64_t>(jit_));
      call_abs(reinterpret_cast<const void*>(&Jit::link_exit));
      test(rax, rax);
      jz(stop_, kNear);
      jmp(rax);
      L(e.nolink);
      sub(dword[rbx + o(c_.block_lin)], e.exit.off);
      jmp(jc_, kNear);
    }
    for (ColdExit& k : cold_) {
      L(k.irq);
      cmp(byte[rbx + o(c_.exit_request)], 0);
      jne(to_loop_, kNear);
      cmp(byte[rbx + o(c_.irq_hint)], 0);
      je(k.go, kNear);
      test(dword[rbx + o(c_.eflags)], kIF);
      jz(k.go, kNear);
      jmp(to_loop_, kNear);
    }
    region("jc");
    L(jc_);
    emit_jump_cache();
    // Shared tails of the exits.
    region("tail");
    L(to_loop_);  // as end_block(): counted, current_block null, chain_from this block
    mov(qword[rbx + o(c_.current_block)], 0);
    mov(rax, reinterpret_cast<uint64_t>(&b_));
    mov(qword[rbx + o(c_.chain_from)], rax);
    mov(eax, dword[rbx + o(c_.block_lin)]);
    mov(dword[rbx + o(c_.chain_from_lin)], eax);
    jmp(stop_, kNear);
    L(miss_);
    mov(rdi, reinterpret_cast<uint64_t>(jit_));
    mov(rsi, reinterpret_cast<uint64_t>(&b_));
    call_abs(reinterpret_cast<const void*>(&Jit::lookup_exit));
    test(rax, rax);
    jz(stop_, kNear);
    jmp(rax);
    L(stop_);
    jmp_abs(leave_);
    // Exit records (data, 8-aligned).
    region(nullptr);
    align(8);
    // The called instructions' copies, each followed by a returning sentinel.
    for (size_t k = 0; k < copies_.size(); ++k) {
      if (!copies_[k].used) continue;
      L(copies_[k].label);
      Insn pair[2] = {in[k], Insn{}};
      pair[1].fn = handler_jit_return;
      const auto* p = reinterpret_cast<const uint8_t*>(pair);
      for (size_t n = 0; n < sizeof(pair); ++n) db(p[n]);
    }
    for (ExitData& e : exits_) {
      L(e.label);
      e.exit.rel32 = rw_ + e.rel32_pos;
      const auto* p = reinterpret_cast<const uint8_t*>(&e.exit);
      for (size_t n = 0; n < sizeof(JitExit); ++n) db(p[n]);
    }
    ready();
    // nolink and helper addresses are known now (labels resolved).
    for (ExitData& e : exits_) {
      const size_t rec = label_offset(e.label);
      JitExit* x = reinterpret_cast<JitExit*>(rw_ + rec);
      x->nolink = rx_ + label_offset(e.nolink);
      x->helper = rx_ + label_offset(e.helper);
    }
  }

 private:
  template <typename T>
  int32_t o(const T& member) const {
    return off_of(c_, member);
  }
  int32_t gpr_off(unsigned byte_off) const { return o(c_.gpr) + static_cast<int32_t>(byte_off); }
  int32_t seg_off(unsigned sr) const { return o(c_.seg[sr]); }
  size_t label_offset(const Label& l) const { return static_cast<size_t>(l.getAddress() - getCode()); }
  void region(const char* name) {
    region_ = name;
    if (!regions.empty() && regions.back().first == getSize()) regions.back().second = name;
    else regions.emplace_back(getSize(), name);
  }

  /// For a 5-byte rel32 call/jump emitted here to absolute host address
  /// `target` (as the RX view runs it): the address xbyak must be given (it
  /// computes rel32 in the RW view), or null if rel32 cannot reach.
  const void* rel32_target(const void* target) const {
    const uint8_t* here_rx = rx_ + getSize() + 5;
    const int64_t rel = reinterpret_cast<const uint8_t*>(target) - here_rx;
    if (rel != static_cast<int32_t>(rel)) return nullptr;
    return reinterpret_cast<const uint8_t*>(target) - (rx_ - rw_);
  }
  /// Relative call/jump to an absolute host address from the RX view (via
  /// rax when out of rel32 range).
  void call_abs(const void* target) {
    if (const void* t = rel32_target(target)) {
      call(t);
    } else {
      mov(rax, reinterpret_cast<uint64_t>(target));
      call(rax);
    }
  }
  void jmp_abs(const void* target) {
    if (const void* t = rel32_target(target)) {
      jmp(t);
    } else {
      mov(rax, reinterpret_cast<uint64_t>(target));
      jmp(rax);
    }
  }

  void set_eip(uint32_t off) {
    lea(eax, ptr[r12 + static_cast<int32_t>(off)]);
    mov(dword[rbx + o(c_.eip)], eax);
  }
  /// Call i's handler on the block's copy of i in the code buffer, which is
  /// followed by a sentinel that returns (handler_jit_return): the
  /// handler's next() returns to this code without a test of its own.
  void call_fn(const Insn& i) {
    const auto k = static_cast<size_t>(&i - b_.insns());
    InsnCopy& copy = copies_[k];
    copy.used = true;
    mov(rdi, rbx);
    lea(rsi, ptr[rip + copy.label]);
    call_abs(reinterpret_cast<const void*>(i.fn));
  }
  void call_handler(const Insn& i, uint32_t off, bool store_eip) {
    if (store_eip) set_eip(off);
    call_fn(i);
    cmp(byte[rbx + o(c_.stop_block)], 0);
    jne(stop_, kNear);
  }
  Slow& new_slow(const Insn& i, uint32_t off, bool branch = false) {
    slows_.push_back(Slow{{}, {}, &i, off, branch});
    return slows_.back();
  }

  static Xbyak::Reg sized(const Xbyak::Reg32& r, unsigned size) {
    if (size == 1) return r.cvt8();
    if (size == 2) return r.cvt16();
    return r;
  }
  const Xbyak::AddressFrame& frame(unsigned size) const { return size == 1 ? byte : size == 2 ? word : dword; }
  void load_reg(const Xbyak::Reg32& d, unsigned byte_off, unsigned size) {
    if (size == 4) mov(d, dword[rbx + gpr_off(byte_off)]);
    else movzx(d, frame(size)[rbx + gpr_off(byte_off)]);
  }
  void store_reg(unsigned byte_off, const Xbyak::Reg32& v, unsigned size) {
    mov(frame(size)[rbx + gpr_off(byte_off)], sized(v, size));
  }
  // After emit_access: the host address is r11 + rax.
  void load_mem(const Xbyak::Reg32& d, unsigned size) {
    if (size == 4) mov(d, dword[r11 + rax]);
    else movzx(d, frame(size)[r11 + rax]);
  }
  void store_mem(const Xbyak::Reg32& v, unsigned size) { mov(frame(size)[r11 + rax], sized(v, size)); }

  /// eax = the effective address of i's memory operand.
  void emit_ea(const Insn& i) {
    mov(eax, dword[rbx + gpr_off(4 * i.base)]);
    if (i.index != kZeroReg) {
      mov(ecx, dword[rbx + gpr_off(4 * i.index)]);
      lea(eax, ptr[rax + rcx * (1 << i.scale) + static_cast<int32_t>(i.disp)]);
    } else if (i.disp != 0) {
      add(eax, i.disp);
    }
    if (i.flags & kInsnAddr16) movzx(eax, ax);
  }
  /// Offset in eax (segment `sr`): the checks of Cpu::read/write and the
  /// TLB hit test of read_lin/write_lin; any miss jumps to `slow`. Leaves
  /// the linear address in eax and the host addend in r11.
  /// For DS, ES and SS (kFlat) the segment check and base are left out
  /// (compiled code runs only while they are flat, jit.h): offsets are linear
  /// addresses, and an access that wraps at 4 GiB (a limit violation)
  /// misses the TLB test, whose tag is never page 0 at the index of page
  /// 0xFFFFF, so it goes to the handler too.
  void emit_access(unsigned sr, unsigned size, bool write, Label& slow) {
    const SegmentCache& s = c_.seg[sr];
    if (((kFlat >> sr) & 1) == 0) {
      cmp(eax, dword[rbx + o(write ? s.wr_lo : s.rd_lo)]);
      jb(slow, kNear);
      lea(rdx, ptr[rax + (size - 1)]);
      mov(ecx, dword[rbx + o(write ? s.wr_hi : s.rd_hi)]);
      cmp(rdx, rcx);
      ja(slow, kNear);
      add(eax, dword[rbx + o(s.base)]);
    }
    mov(ecx, eax);
    shr(ecx, 12);
    and_(ecx, kTlbEntries - 1);
    static_assert(sizeof(TlbEntry) == 24);
    lea(ecx, ptr[rcx + rcx * 2]);
    shl(ecx, 3);
    add(rcx, qword[rbx + Jit::tlb_cur_offset(c_)]);
    lea(edx, ptr[rax + (size - 1)]);
    and_(edx, 0xFFFFF000u);
    cmp(edx, dword[rcx + static_cast<int32_t>(write ? offsetof(TlbEntry, write_tag) : offsetof(TlbEntry, read_tag))]);
    jne(slow, kNear);
    mov(r11, qword[rcx + static_cast<int32_t>(offsetof(TlbEntry, addend))]);
  }
  void emit_mem(const Insn& i, unsigned size, bool write, Label& slow) {
    emit_ea(i);
    emit_access(i.seg, size, write, slow);
  }
  void set_lazy(Cpu::LazyOp op, unsigned size) {
    static_assert(sizeof(c_.lazy_op) == 1 && sizeof(c_.lazy_size) == 1);
    // lazy_op and lazy_size are adjacent: one 16-bit store.
    mov(word[rbx + o(c_.lazy_op)], static_cast<uint16_t>(op | (size << 8)));
  }

  /// Host flags as the lazy state (op, size) defines them, for a Jcc:
  /// re-execute the producer on its recorded operands.
  void host_flags(Cpu::LazyOp op, unsigned size) {
    if (op == Cpu::kLazyInc || op == Cpu::kLazyDec) {
      mov(cl, byte[rbx + o(c_.lazy_cf)]);
      add(cl, 0xFF);  // CF = lazy_cf (INC/DEC keep it)
    }
    mov(r8d, dword[rbx + o(c_.lazy_a)]);
    const Xbyak::Reg a = sized(r8d, size);
    switch (op) {
      case Cpu::kLazySub: cmp(a, frame(size)[rbx + o(c_.lazy_b)]); break;
      case Cpu::kLazyAdd: add(a, frame(size)[rbx + o(c_.lazy_b)]); break;
      case Cpu::kLazyLogic: test(a, a); break;
      case Cpu::kLazyInc: inc(a); break;
      default: dec(a); break;
    }
  }
  void setcc_host(unsigned cc, const Xbyak::Reg8& r) {
    switch (cc & 15) {
      case 0: seto(r); break;
      case 1: setno(r); break;
      case 2: setb(r); break;
      case 3: setae(r); break;
      case 4: sete(r); break;
      case 5: setne(r); break;
      case 6: setbe(r); break;
      case 7: seta(r); break;
      case 8: sets(r); break;
      case 9: setns(r); break;
      case 10: setp(r); break;
      case 11: setnp(r); break;
      case 12: setl(r); break;
      case 13: setge(r); break;
      case 14: setle(r); break;
      default: setg(r); break;
    }
  }
  void jcc_host(unsigned cc, const Label& l) {
    switch (cc & 15) {
      case 0: jo(l, kNear); break;
      case 1: jno(l, kNear); break;
      case 2: jb(l, kNear); break;
      case 3: jae(l, kNear); break;
      case 4: je(l, kNear); break;
      case 5: jne(l, kNear); break;
      case 6: jbe(l, kNear); break;
      case 7: ja(l, kNear); break;
      case 8: js(l, kNear); break;
      case 9: jns(l, kNear); break;
      case 10: jp(l, kNear); break;
      case 11: jnp(l, kNear); break;
      case 12: jl(l, kNear); break;
      case 13: jge(l, kNear); break;
      case 14: jle(l, kNear); break;
      default: jg(l, kNear); break;
    }
  }

  /// The block's end after c.eip is set: count it, leave for the loop if
  /// anything needs it, else go on to the next block (a patched jump when
  /// `static_target`, `off` = target EIP - entry EIP; else the jump cache).
  /// Only the checks and the linked jump are inline; the rest (link
  /// helper, jump cache, interrupt check) is out of line at the block's
  /// end, so that the hot paths of consecutive blocks stay dense.
  void emit_exit(bool static_target, uint32_t off, bool ret = false) {
    cold_.emplace_back();
    ColdExit& k = cold_.back();
    const char* const outer = region_;
    region("exit");
    mov(rax, qword[rbx + o(c_.icount)]);
    add(rax, b_.count);
    mov(qword[rbx + o(c_.icount)], rax);
    cmp(rax, qword[rbx + o(c_.slice_end)]);
    jae(to_loop_, kNear);
    // Cpu::irq_hint and Cpu::exit_request in one load (k.irq tells them
    // apart). No TF and no CS limit check: see jit.h "Flat segments".
    cmp(word[rbx + o(c_.irq_hint)], 0);
    jne(k.irq, kNear);
    L(k.go);
    inc(qword[rbx + o(c_.blocks_chained)]);
    if (static_target) {
      emit_link(off);
    } else {
      if (ret) emit_ras_pop(jc_);
      jmp(jc_, kNear);
    }
    region(outer);
  }

  /// The static part of an exit to entry + `off` (block_lin is this block's
  /// entry): a jump (rel32) to the exit's call of link_exit() at the
  /// block's end, which patches it to the target's code or its guard
  /// (or to nolink: block_lin back, on to the jump cache).
  void emit_link(uint32_t off) {
    exits_.emplace_back();
    ExitData& e = exits_.back();
    e.exit = JitExit{&b_, nullptr, nullptr, nullptr, off, 0};
    add(dword[rbx + o(c_.block_lin)], off);
    jmp(e.helper, kNear);  // E9 rel32
    e.rel32_pos = getSize() - 4;
  }

  /// A RET's exit, after the checks: if the top of the return-address
  /// stack (Jit::Ras) is the return's target, still valid (code epoch) and
  /// still mapped to the same physical page (TLB), go to the continuation
  /// of the CALL that pushed it (a static exit of the calling block, see
  /// compile()); else on to `jc`. Pops the entry either way.
  void emit_ras_pop(Label& jc) {
    mov(eax, dword[rbx + o(c_.eip)]);
    add(eax, dword[rbx + o(c_.seg[kCs].base)]);
    mov(r8, reinterpret_cast<uint64_t>(jit_->ras()));
    mov(ecx, dword[r8 + static_cast<int32_t>(offsetof(Jit::Ras, top))]);
    lea(edx, ptr[rcx - 1]);
    and_(edx, Jit::Ras::kEntries - 1);
    mov(dword[r8 + static_cast<int32_t>(offsetof(Jit::Ras, top))], edx);
    static_assert(sizeof(Jit::RasEntry) == 32);
    shl(ecx, 5);
    add(rcx, r8);
    cmp(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, ret_lin))], eax);
    jne(jc, kNear);
    mov(edx, dword[rbx + o(c_.code_epoch)]);
    cmp(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, epoch))], edx);
    jne(jc, kNear);
    mov(r9d, eax);
    shr(r9d, 12);
    and_(r9d, kTlbEntries - 1);
    lea(r9d, ptr[r9 + r9 * 2]);
    shl(r9d, 3);
    add(r9, qword[rbx + Jit::tlb_cur_offset(c_)]);
    and_(eax, 0xFFFFF000u);
    cmp(dword[r9 + static_cast<int32_t>(offsetof(TlbEntry, read_tag))], eax);
    jne(jc, kNear);
    mov(edx, dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, phys_page))]);
    cmp(dword[r9 + static_cast<int32_t>(offsetof(TlbEntry, phys_page))], edx);
    jne(jc, kNear);
    mov(edx, dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, caller_lin))]);
    mov(dword[rbx + o(c_.block_lin)], edx);
    jmp(qword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, code))]);
  }

  /// After a CALL at `next_off - len` has pushed its return address: push
  /// (return linear address, code epoch, physical page, this block's
  /// linear address, continuation) on the return-address stack. Only for
  /// a return address in this block's page (`cont` links within it).
  void emit_ras_push(uint32_t next_off, Label& cont) {
    mov(r8, reinterpret_cast<uint64_t>(jit_->ras()));
    mov(ecx, dword[r8 + static_cast<int32_t>(offsetof(Jit::Ras, top))]);
    inc(ecx);
    and_(ecx, Jit::Ras::kEntries - 1);
    mov(dword[r8 + static_cast<int32_t>(offsetof(Jit::Ras, top))], ecx);
    shl(ecx, 5);
    add(rcx, r8);
    mov(eax, dword[rbx + o(c_.block_lin)]);
    mov(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, caller_lin))], eax);
    add(eax, next_off);
    mov(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, ret_lin))], eax);
    mov(eax, dword[rbx + o(c_.code_epoch)]);
    mov(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, epoch))], eax);
    mov(dword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, phys_page))], b_.phys & ~0xFFFu);
    lea(rax, ptr[rip + cont]);
    mov(qword[rcx + static_cast<int32_t>(offsetof(Jit::RasEntry, code))], rax);
  }

  /// The jump cache (chain.h) inline, for c.eip; block_lin is the entry of
  /// the block that ended (for the miss path).
  void emit_jump_cache() {
    // The jump cache (chain.h) inline: lin, entry, tag, block, its code, TLB.
    mov(eax, dword[rbx + o(c_.eip)]);
    add(eax, dword[rbx + o(c_.seg[kCs].base)]);
    mov(ecx, eax);
    shr(ecx, kJumpBits);
    xor_(ecx, eax);
    and_(ecx, kJumpEntries - 1);
    static_assert(sizeof(JumpEntry) == 16);
    shl(ecx, 4);
    add(rcx, qword[rbx + o(c_.jump_cache)]);
    cmp(dword[rcx + static_cast<int32_t>(offsetof(JumpEntry, lin))], eax);
    jne(miss_, kNear);
    mov(edx, dword[rbx + o(c_.code_epoch)]);
    shl(edx, 3);
    or_(edx, b_.mode);
    cmp(byte[rbx + o(c_.cpl)], 3);
    sete(r8b);
    movzx(r8d, r8b);
    lea(edx, ptr[rdx + r8 * 4]);
    cmp(dword[rcx + static_cast<int32_t>(offsetof(JumpEntry, tag))], edx);
    jne(miss_, kNear);
    mov(rcx, qword[rcx + static_cast<int32_t>(offsetof(JumpEntry, block))]);
    mov(rdx, qword[rcx + static_cast<int32_t>(offsetof(Block, jit_code))]);
    test(rdx, rdx);
    jz(miss_, kNear);
    mov(r8d, eax);
    shr(r8d, 12);
    and_(r8d, kTlbEntries - 1);
    lea(r8d, ptr[r8 + r8 * 2]);
    shl(r8d, 3);
    add(r8, qword[rbx + Jit::tlb_cur_offset(c_)]);
    mov(r9d, eax);
    and_(r9d, 0xFFFFF000u);
    cmp(dword[r8 + static_cast<int32_t>(offsetof(TlbEntry, read_tag))], r9d);
    jne(miss_, kNear);
    mov(r9d, dword[rcx + static_cast<int32_t>(offsetof(Block, phys))]);
    and_(r9d, 0xFFFFF000u);
    cmp(dword[r8 + static_cast<int32_t>(offsetof(TlbEntry, phys_page))], r9d);
    jne(miss_, kNear);
    mov(dword[rbx + o(c_.block_lin)], eax);
    jmp(rdx);
  }

  /// eax = EFLAGS with the arithmetic flags computed, as Cpu::flags() (the
  /// lazy state in Cpu is left as it is).
  void emit_flags() {
    if (!known_.valid) {
      mov(rdi, rbx);
      call_abs(reinterpret_cast<const void*>(&Jit::flags));
      return;
    }
    if (known_.op == Cpu::kLazyNone) {
      mov(eax, dword[rbx + o(c_.eflags)]);
      return;
    }
    // Re-execute the producer on the host and take its flags (AF is
    // undefined after a logic instruction on the host; alu.h makes it 0).
    host_flags(known_.op, known_.size);
    pushfq();
    pop(rax);
    and_(eax, known_.op == Cpu::kLazyLogic ? kArithFlags & ~kAF : kArithFlags);
    mov(ecx, dword[rbx + o(c_.eflags)]);
    and_(ecx, ~kArithFlags);
    or_(eax, ecx);
  }

  /// ROL/ROR/SHL/SHR/SAR r32, imm8 as alu.h shift() computes them: a count
  /// of 0 (mod 32) changes nothing; rotates change only CF and OF (so the
  /// flags are computed first), shifts set all six (AF = 0) and OF for
  /// every count. The result: EFLAGS materialized (kLazyNone).
  bool emit_shift(const Insn& i) {
    const auto op = static_cast<ShiftOp>(i.aux2);
    const uint8_t n = static_cast<uint8_t>(i.imm & 0x1F);
    if (n == 0) return true;
    const bool rotate = op == ShiftOp::kRol || op == ShiftOp::kRor;
    if (rotate) emit_flags();  // eax
    mov(edx, dword[rbx + gpr_off(i.r1)]);
    switch (op) {
      case ShiftOp::kRol: rol(edx, n); break;
      case ShiftOp::kRor: ror(edx, n); break;
      case ShiftOp::kShl:
      case ShiftOp::kSal: shl(edx, n); break;
      case ShiftOp::kShr: shr(edx, n); break;
      case ShiftOp::kSar: sar(edx, n); break;
      default: return false;
    }
    if (!rotate) {
      // CF, SF, ZF, PF as the host computed them (CF is defined for counts
      // below 32); the rest of EFLAGS from Cpu.
      pushfq();
      pop(rax);
      and_(eax, kCF | kPF | kZF | kSF);
      mov(ecx, dword[rbx + o(c_.eflags)]);
      and_(ecx, ~kArithFlags);
      or_(eax, ecx);
    } else {
      and_(eax, ~(kCF | kOF));
    }
    mov(dword[rbx + gpr_off(i.r1)], edx);
    // CF (rotates) and OF from the result r.
    mov(ecx, edx);
    switch (op) {
      case ShiftOp::kRol:  // CF = r0, OF = r0 ^ r31
        and_(ecx, 1);
        or_(eax, ecx);
        mov(r8d, edx);
        shr(r8d, 31);
        xor_(ecx, r8d);
        break;
      case ShiftOp::kRor:  // CF = r31, OF = r31 ^ r30
        shr(ecx, 31);
        or_(eax, ecx);
        mov(r8d, edx);
        shr(r8d, 30);
        xor_(ecx, r8d);
        and_(ecx, 1);
        break;
      case ShiftOp::kShl:
      case ShiftOp::kSal:  // OF = CF ^ r31
        shr(ecx, 31);
        mov(r8d, eax);
        and_(r8d, kCF);
        xor_(ecx, r8d);
        break;
      case ShiftOp::kShr:  // OF = r31 ^ r30
        mov(r8d, edx);
        shr(ecx, 31);
        shr(r8d, 30);
        xor_(ecx, r8d);
        and_(ecx, 1);
        break;
      default:  // SAR: OF = 0
        xor_(ecx, ecx);
        break;
    }
    shl(ecx, 11);
    or_(eax, ecx);
    mov(dword[rbx + o(c_.eflags)], eax);
    mov(byte[rbx + o(c_.lazy_op)], Cpu::kLazyNone);
    known_ = {true, Cpu::kLazyNone, 4};
    return true;
  }

  /// The inline code of `i` (at `off` from the entry) if its form has one.
  bool emit_inline(const Insn& i, uint32_t off, bool& ended) {
    const auto form = static_cast<unsigned>(i.jit);
    const unsigned S = i.opsize;
    const uint32_t next_off = off + i.len;
    if (i.jit == JitForm::kNone) return false;
    if (form >= static_cast<unsigned>(JitForm::kAluFirst) && form <= static_cast<unsigned>(JitForm::kAluLast)) {
      if (S != 1 && S != 2 && S != 4) return false;
      const auto op = static_cast<AluOp>(form & 7);
      const auto ops = static_cast<JitOperands>((form - static_cast<unsigned>(JitForm::kAluFirst)) >> 3);
      const bool writes = op != AluOp::kCmp;
      Slow* s = nullptr;
      switch (ops) {
        case JitOperands::kRR:
          load_reg(r8d, i.r1, S);
          load_reg(r9d, i.r2, S);
          break;
        case JitOperands::kRI:
          load_reg(r8d, i.r1, S);
          mov(r9d, i.imm);
          break;
        case JitOperands::kRM:
          s = &new_slow(i, off);
          emit_mem(i, S, false, s->entry);
          load_mem(r9d, S);
          load_reg(r8d, i.r1, S);
          break;
        case JitOperands::kMR:
        case JitOperands::kMI:
          s = &new_slow(i, off);
          emit_mem(i, S, writes, s->entry);  // read_for_write: the write tag
          load_mem(r8d, S);
          if (ops == JitOperands::kMR) load_reg(r9d, i.r2, S);
          else mov(r9d, i.imm);
          break;
      }
      switch (op) {
        case AluOp::kAdd: lea(r10d, ptr[r8 + r9]); break;
        case AluOp::kSub:
        case AluOp::kCmp:
          mov(r10d, r8d);
          sub(r10d, r9d);
          break;
        case AluOp::kAnd:
          mov(r10d, r8d);
          and_(r10d, r9d);
          break;
        case AluOp::kOr:
          mov(r10d, r8d);
          or_(r10d, r9d);
          break;
        case AluOp::kXor:
          mov(r10d, r8d);
          xor_(r10d, r9d);
          break;
        default: return false;  // ADC/SBB never carry this form
      }
      if (writes) {
        if (ops == JitOperands::kMR || ops == JitOperands::kMI) store_mem(r10d, S);
        else store_reg(i.r1, r10d, S);
      }
      const bool arith = op == AluOp::kAdd || op == AluOp::kSub || op == AluOp::kCmp;
      Cpu::LazyOp lop;
      if (arith) {
        mov(dword[rbx + o(c_.lazy_a)], r8d);
        mov(dword[rbx + o(c_.lazy_b)], r9d);
        lop = op == AluOp::kAdd ? Cpu::kLazyAdd : Cpu::kLazySub;
      } else {
        if (S != 4) {  // the logic result, masked to the size
          if (S == 1) movzx(r10d, r10b);
          else movzx(r10d, r10w);
        }
        mov(dword[rbx + o(c_.lazy_a)], r10d);
        mov(dword[rbx + o(c_.lazy_b)], 0);
        lop = Cpu::kLazyLogic;
      }
      set_lazy(lop, S);
      known_ = {true, lop, S};
      if (s != nullptr) L(s->back);
      return true;
    }
    if (form >= static_cast<unsigned>(JitForm::kTestFirst) && form <= static_cast<unsigned>(JitForm::kTestLast)) {
      if (S != 1 && S != 2 && S != 4) return false;
      const auto ops = static_cast<JitOperands>(form - static_cast<unsigned>(JitForm::kTestFirst));
      Slow* s = nullptr;
      if (ops == JitOperands::kRR || ops == JitOperands::kRI) {
        load_reg(r8d, i.r1, S);
      } else if (ops == JitOperands::kMR || ops == JitOperands::kMI) {
        s = &new_slow(i, off);
        emit_mem(i, S, false, s->entry);
        load_mem(r8d, S);
      } else {
        return false;
      }
      if (ops == JitOperands::kRR || ops == JitOperands::kMR) load_reg(r9d, i.r2, S);
      else mov(r9d, i.imm);
      and_(r8d, r9d);
      mov(dword[rbx + o(c_.lazy_a)], r8d);
      mov(dword[rbx + o(c_.lazy_b)], 0);
      set_lazy(Cpu::kLazyLogic, S);
      known_ = {true, Cpu::kLazyLogic, S};
      if (s != nullptr) L(s->back);
      return true;
    }
    switch (i.jit) {
      case JitForm::kMovRR:
        load_reg(r8d, i.r2, S);
        store_reg(i.r1, r8d, S);
        return true;
      case JitForm::kMovRI:
        mov(r8d, i.imm);
        store_reg(i.r1, r8d, S);
        return true;
      case JitForm::kMovRM:
      case JitForm::kMovMR:
      case JitForm::kMovMI: {
        Slow& s = new_slow(i, off);
        emit_mem(i, S, i.jit != JitForm::kMovRM, s.entry);
        if (i.jit == JitForm::kMovRM) {
          load_mem(r8d, S);
          store_reg(i.r1, r8d, S);
        } else {
          if (i.jit == JitForm::kMovMR) load_reg(r8d, i.r2, S);
          else mov(r8d, i.imm);
          store_mem(r8d, S);
        }
        L(s.back);
        return true;
      }
      case JitForm::kLea32:
        emit_ea(i);
        mov(dword[rbx + gpr_off(i.r1)], eax);
        return true;
      case JitForm::kMovzxR8:
      case JitForm::kMovzxM8:
      case JitForm::kMovzxR16:
      case JitForm::kMovzxM16:
      case JitForm::kMovsxR8:
      case JitForm::kMovsxM8:
      case JitForm::kMovsxR16:
      case JitForm::kMovsxM16: {
        const auto k = static_cast<unsigned>(i.jit) - static_cast<unsigned>(JitForm::kMovzxR8);
        const bool mem = (k & 1) != 0, sx = (k & 4) != 0;
        const unsigned src_size = (k & 2) ? 2 : 1;
        Slow* s = nullptr;
        if (mem) {
          s = &new_slow(i, off);
          emit_mem(i, src_size, false, s->entry);
          if (sx) movsx(r8d, frame(src_size)[r11 + rax]);
          else movzx(r8d, frame(src_size)[r11 + rax]);
        } else {
          if (sx) movsx(r8d, frame(src_size)[rbx + gpr_off(i.r2)]);
          else movzx(r8d, frame(src_size)[rbx + gpr_off(i.r2)]);
        }
        mov(dword[rbx + gpr_off(i.r1)], r8d);
        if (s != nullptr) L(s->back);
        return true;
      }
      case JitForm::kInc32:
      case JitForm::kDec32: {
        const bool inc32 = i.jit == JitForm::kInc32;
        bool store_cf = true;
        if (!known_.valid) {  // CF of an unknown producer: Cpu::carry()
          mov(rdi, rbx);
          call_abs(reinterpret_cast<const void*>(&Jit::carry));
          mov(edx, eax);
        }
        switch (known_.valid ? known_.op : Cpu::kLazyNone) {
          case Cpu::kLazyNone:
            if (known_.valid) {
              mov(edx, dword[rbx + o(c_.eflags)]);
              and_(edx, kCF);
            }
            break;
          case Cpu::kLazyLogic: xor_(edx, edx); break;
          case Cpu::kLazyAdd:
            mov(edx, dword[rbx + o(c_.lazy_a)]);
            add(sized(edx, known_.size), frame(known_.size)[rbx + o(c_.lazy_b)]);
            setc(dl);
            break;
          case Cpu::kLazySub:
            mov(edx, dword[rbx + o(c_.lazy_a)]);
            cmp(sized(edx, known_.size), frame(known_.size)[rbx + o(c_.lazy_b)]);
            setb(dl);
            break;
          default: store_cf = false; break;  // INC/DEC: CF stays lazy_cf
        }
        mov(eax, dword[rbx + gpr_off(i.r1)]);
        mov(dword[rbx + o(c_.lazy_a)], eax);
        if (inc32) inc(eax);
        else dec(eax);
        mov(dword[rbx + gpr_off(i.r1)], eax);
        mov(dword[rbx + o(c_.lazy_b)], 0);
        if (store_cf) mov(byte[rbx + o(c_.lazy_cf)], dl);
        const Cpu::LazyOp lop = inc32 ? Cpu::kLazyInc : Cpu::kLazyDec;
        set_lazy(lop, 4);
        known_ = {true, lop, 4};
        return true;
      }
      case JitForm::kPush32:
      case JitForm::kPushI32:
      case JitForm::kPushM32:
      case JitForm::kPop32:
      case JitForm::kCallRel32:
      case JitForm::kRet32: {
        const bool branch = i.jit == JitForm::kCallRel32 || i.jit == JitForm::kRet32;
        const bool push = !branch ? i.jit != JitForm::kPop32 : i.jit == JitForm::kCallRel32;
        Slow& s = new_slow(i, off, branch);
        if (i.jit == JitForm::kPushM32) {  // the operand first (its EA sees the old ESP), then the stack
          emit_mem(i, 4, false, s.entry);
          mov(r9d, dword[r11 + rax]);
        }
        mov(eax, dword[rbx + gpr_off(4 * kEsp)]);
        if (push) sub(eax, 4);
        emit_access(kSs, 4, push, s.entry);
        if (i.jit == JitForm::kPush32) {
          mov(edx, dword[rbx + gpr_off(i.r1)]);
          mov(dword[r11 + rax], edx);
          sub(dword[rbx + gpr_off(4 * kEsp)], 4);
        } else if (i.jit == JitForm::kPushI32) {
          mov(dword[r11 + rax], i.imm);
          sub(dword[rbx + gpr_off(4 * kEsp)], 4);
        } else if (i.jit == JitForm::kPushM32) {
          mov(dword[r11 + rax], r9d);
          sub(dword[rbx + gpr_off(4 * kEsp)], 4);
        } else if (i.jit == JitForm::kCallRel32) {
          lea(edx, ptr[r12 + static_cast<int32_t>(next_off)]);
          mov(dword[r11 + rax], edx);
          sub(dword[rbx + gpr_off(4 * kEsp)], 4);
          if ((b_.phys & 0xFFFu) + next_off < 0x1000u) {
            conts_.push_back(Cont{{}, next_off});
            emit_ras_push(next_off, conts_.back().label);
          }
          set_eip(next_off + i.imm);
          emit_exit(true, next_off + i.imm);
          ended = true;
        } else {
          mov(edx, dword[r11 + rax]);
          add(dword[rbx + gpr_off(4 * kEsp)], 4);
          if (i.jit == JitForm::kPop32) {
            mov(dword[rbx + gpr_off(i.r1)], edx);  // POP ESP: the popped value wins
          } else {
            mov(dword[rbx + o(c_.eip)], edx);
            emit_exit(false, 0, true);
            ended = true;
          }
        }
        L(s.back);  // PUSH/POP continue here; the slow paths of CALL/RET never come back
        return true;
      }
      case JitForm::kJmpRel32:
        set_eip(next_off + i.imm);
        emit_exit(true, next_off + i.imm);
        ended = true;
        return true;
      case JitForm::kShift32RI: return emit_shift(i);
      case JitForm::kNot32:  // no flags
        not_(dword[rbx + gpr_off(i.r1)]);
        return true;
      case JitForm::kNeg32:  // flags as SUB 0, a (alu.h neg)
        mov(eax, dword[rbx + gpr_off(i.r1)]);
        mov(dword[rbx + o(c_.lazy_a)], 0);
        mov(dword[rbx + o(c_.lazy_b)], eax);
        neg(eax);
        mov(dword[rbx + gpr_off(i.r1)], eax);
        set_lazy(Cpu::kLazySub, 4);
        known_ = {true, Cpu::kLazySub, 4};
        return true;
      case JitForm::kSetccR8:
      case JitForm::kCmovRR32: {
        // dl = the condition, from the known producer re-executed on the
        // host, else from Jit::cond().
        if (known_.valid && known_.op != Cpu::kLazyNone) {
          host_flags(known_.op, known_.size);
          setcc_host(i.aux, dl);
        } else {
          mov(rdi, rbx);
          mov(esi, i.aux);
          call_abs(reinterpret_cast<const void*>(&Jit::cond));
          mov(edx, eax);
        }
        if (i.jit == JitForm::kSetccR8) {
          mov(byte[rbx + gpr_off(i.r1)], dl);
        } else {  // no write when false (a 32-bit CMOV writes nothing then)
          Label skip;
          test(dl, dl);
          jz(skip);
          mov(eax, dword[rbx + gpr_off(i.r2)]);
          mov(dword[rbx + gpr_off(i.r1)], eax);
          L(skip);
        }
        return true;
      }
      case JitForm::kJccRel32: {
        Label taken;
        if (known_.valid && known_.op != Cpu::kLazyNone) {
          host_flags(known_.op, known_.size);
          jcc_host(i.aux, taken);
        } else {
          mov(rdi, rbx);
          mov(esi, i.aux);
          call_abs(reinterpret_cast<const void*>(&Jit::cond));
          test(al, al);
          jnz(taken, kNear);
        }
        set_eip(next_off);
        emit_exit(true, next_off);
        L(taken);
        set_eip(next_off + i.imm);
        emit_exit(true, next_off + i.imm);
        ended = true;
        return true;
      }
      default: return false;
    }
  }

  Cpu& c_;
  Block& b_;
  uint8_t* rw_;
  uint8_t* rx_;
  const uint8_t* leave_;
  Jit* jit_;
  Known known_;
  const char* region_ = nullptr;
  /// The segments whose accesses have no check: flat whenever compiled
  /// code runs (Cpu::jit_flat; SS also 32-bit, so pushes and pops use ESP).
  static constexpr unsigned kFlat = (1u << kDs) | (1u << kEs) | (1u << kSs);
  Label stop_, to_loop_, miss_, jc_;
  std::vector<Slow> slows_;   // grows: Labels must not move once used, so reserve
  std::deque<ExitData> exits_;  // deques: Labels must not move once used
  std::deque<ColdExit> cold_;
  std::vector<InsnCopy> copies_;  // by instruction index
  struct Cont {
    Label label;
    uint32_t off;  // of the return address from the entry
  };
  std::vector<Cont> conts_;

 public:
  void reserve(size_t n) {
    slows_.reserve(n);
    conts_.reserve(n);
    copies_.resize(n);  // one per instruction (n = the block's count)
  }
};

}  // namespace

Jit::Jit(Cpu& cpu, const BlockCache& cache, uint32_t threshold)
    : cpu_(cpu),
      cache_(cache),
      threshold_(static_cast<uint16_t>(std::clamp<uint32_t>(threshold, 1, kMaxThreshold))),
      always_(threshold == 0) {
  cpu_.jit_threshold = threshold_;
}

void* Jit::count_hot(Block* b) {
  const uint16_t started = b->jit_window;
  b->jit_hits = 0;
  if (!always_ && static_cast<uint16_t>(window_ - started) > 1) {
    b->jit_window = window_;  // too slow: count again from now
    return nullptr;
  }
  return compile(b);
}

void jit_count_hot(Cpu& c, Block* n) {
  if (c.bind.jit != nullptr && n->jit_code == nullptr) {
    (void)c.bind.jit->count_hot(n);
  } else {
    n->jit_hits = 0;
  }
}

Result<std::unique_ptr<Jit>> Jit::create(Cpu& cpu, const BlockCache& cache, uint32_t threshold, size_t cache_bytes) {
  // The exits read irq_hint and exit_request as one 16-bit word.
  if (off_of(cpu, cpu.exit_request) != off_of(cpu, cpu.irq_hint) + 1) {
    return fail("emulator JIT: Cpu::exit_request does not follow Cpu::irq_hint");
  }
  std::unique_ptr<Jit> j(new Jit(cpu, cache, threshold));
  if (auto r = j->map(std::max(cache_bytes, kMinCacheBytes)); !r) return std::unexpected(r.error());
  return j;
}

Result<void> Jit::map(size_t bytes) {
  bytes = (bytes + 0xFFFF) & ~size_t{0xFFFF};
  // RX near the handlers, so that calls are rel32 (call_abs falls back to
  // an absolute call otherwise).
  const auto near = reinterpret_cast<uintptr_t>(&Jit::cond) & ~uintptr_t{0xFFFFFF};
  void* hint = reinterpret_cast<void*>(near > (size_t{256} << 20) ? near - (size_t{256} << 20) : 0);
  memfd_ = memfd_create("twoostwo-jit", MFD_CLOEXEC);
  if (memfd_ >= 0 && ftruncate(memfd_, static_cast<off_t>(bytes)) == 0) {
    void* rw = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd_, 0);
    void* rx = mmap(hint, bytes, PROT_READ | PROT_EXEC, MAP_SHARED | MAP_NORESERVE, memfd_, 0);
    if (rw != MAP_FAILED && rx != MAP_FAILED) {
      rw_ = static_cast<uint8_t*>(rw);
      rx_ = static_cast<uint8_t*>(rx);
    } else {
      if (rw != MAP_FAILED) munmap(rw, bytes);
      if (rx != MAP_FAILED) munmap(rx, bytes);
    }
  }
  if (rw_ == nullptr) {
    if (memfd_ >= 0) close(memfd_);
    memfd_ = -1;
    void* p = mmap(hint, bytes, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return fail(fmt::format("emulator JIT: cannot map {} KiB of code memory: {}", bytes >> 10, std::strerror(errno)));
    rw_ = rx_ = static_cast<uint8_t*>(p);
  }
  size_ = bytes;
  // The entry and leave stubs.
  {
    Xbyak::CodeGenerator g(kStubBytes, rw_);
    g.push(rbx);
    g.push(r12);
    g.sub(rsp, 8);
    g.mov(rbx, rdi);
    g.jmp(rsi);
    g.align(16);
    const size_t leave = g.getSize();
    g.add(rsp, 8);
    g.pop(r12);
    g.pop(rbx);
    g.ret();
    g.ready();
    enter_ = reinterpret_cast<void (*)(Cpu*, void*)>(rx_);
    leave_ = rx_ + leave;
  }
  code_start_ = used_ = kStubBytes;
  const std::vector<uint8_t> eh = eh_frame_for(rx_, size_);
  eh_frame_ = new uint8_t[eh.size()];
  std::memcpy(eh_frame_, eh.data(), eh.size());
  __register_frame(eh_frame_);
  return {};
}

bool Jit::enable_perf_map() {
  if (perf_map_ == nullptr) perf_map_ = std::fopen(fmt::format("/tmp/perf-{}.map", getpid()).c_str(), "a");
  return perf_map_ != nullptr;
}

Jit::~Jit() {
  cpu_.jit_threshold = 0xFFFF;
  if (perf_map_ != nullptr) std::fclose(perf_map_);
  if (eh_frame_ != nullptr) {
    __deregister_frame(eh_frame_);
    delete[] eh_frame_;
  }
  if (rx_ != nullptr && rx_ != rw_) munmap(rx_, size_);
  if (rw_ != nullptr) munmap(rw_, size_);
  if (memfd_ >= 0) close(memfd_);
}

void Jit::run(void* code) {
  cpu_.in_jit = true;
  enter_(&cpu_, code);
  cpu_.in_jit = false;
  cpu_.jit_chain = false;
}

void Jit::reset() {
  // Give the code's pages back (after the first, which holds the stubs):
  // a flushed buffer costs no memory until code is compiled again.
  const size_t keep = 4096;
  if (used_ > keep) {
    if (memfd_ >= 0) {
      fallocate(memfd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(keep),
                static_cast<off_t>(size_ - keep));
    } else {
      madvise(rw_ + keep, size_ - keep, MADV_DONTNEED);
    }
  }
  used_ = code_start_;
  ras_ = Ras{};  // its continuations are gone (and code_epoch may have started over)
  wants_flush_ = false;
  ++stats_.flushes;
}

JitStats Jit::stats() const {
  JitStats s = stats_;
  s.code_bytes = used_ - code_start_;
  return s;
}

void* Jit::compile(Block* b) {
  // Only cached one-page blocks of 32-bit code; and nothing while blocks
  // wait to be collected (they may be a whole flush, after which reset()
  // must find no block holding code).
  if (!b->cached || b->phys2 != Block::kNoPhys2 || b->mode != 2 || wants_flush_ || cache_.has_dead()) {
    return nullptr;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Compiler comp(cpu_, *b, rw_ + used_, rx_ + used_, size_ - used_, leave_, this);
  comp.reserve(b->count);
  try {
    comp.compile();
  } catch (const Xbyak::Error&) {
    // Out of room (or an emitter limit): interpret it; flush unless the
    // buffer is empty (then the block is too big for it and stays interpreted).
    wants_flush_ = used_ != code_start_;
    return nullptr;
  }
  void* code = rx_ + used_;
  const intptr_t first = reinterpret_cast<intptr_t>(b->insns()[0].fn) - reinterpret_cast<intptr_t>(&Jit::enter_compiled);
  if (first == static_cast<int32_t>(first) && first != 0) {
    b->jit_first = static_cast<int32_t>(first);
    b->insns()[0].fn = &Jit::enter_compiled;
  }
  if (perf_map_ != nullptr) {
    const uint32_t lin = cpu_.seg[kCs].base + cpu_.eip;
    const auto& rs = comp.regions;
    for (size_t k = 0; k < rs.size(); ++k) {
      const size_t end = k + 1 < rs.size() ? rs[k + 1].first : comp.getSize();
      if (rs[k].second == nullptr || end == rs[k].first) continue;
      fmt::print(perf_map_, "{:x} {:x} jit.{}@{:08x}\n", reinterpret_cast<uintptr_t>(rx_ + used_ + rs[k].first),
                 end - rs[k].first, rs[k].second, lin);
    }
    std::fflush(perf_map_);
  }
  used_ += (comp.getSize() + 15) & ~size_t{15};
  b->jit_code = code;
  ++stats_.blocks_compiled;
  stats_.insns_inline += comp.inline_count;
  stats_.insns_called += comp.called_count;
  stats_.compile_ns += static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count());
  return code;
}

// As end_block() after its checks (the generated exit made them, counted
// the block and set c.eip): find the next block and its code, or return
// null for the loop with the end_block() state (current_block null,
// chain_from = from). `next`: the block found, if any.
void* Jit::next_code(Block* from, uint32_t prev_lin, Block*& next) {
  Cpu& c = cpu_;
  c.current_block = nullptr;
  c.chain_from = from;
  c.chain_from_lin = prev_lin;
  c.block_lin = prev_lin;
  const uint32_t lin = c.seg[kCs].base + c.eip;
  const uint32_t tag = jump_tag(c);
  bool from_chain;
  next = find_block_fast(c, from, prev_lin, lin, tag, from_chain);  // may raise #PF, as in end_block()
  if (next == nullptr) return nullptr;
  if (!from_chain) link_blocks(from, next, lin, tag);
  // Not counted here: an interpreted block goes back to the loop, which
  // counts its run (hot_code()).
  void* code = next->jit_code;
  if (code == nullptr) return nullptr;
  // Found through a chain slot: enter it in the jump cache too, so the
  // inline lookup of a dynamic exit (RET) finds it next time.
  if (next->phys2 == Block::kNoPhys2) c.jump_cache[jump_index(lin)] = JumpEntry{lin, tag, next};
  c.block_lin = lin;
  return code;
}

void* Jit::lookup_exit(Jit* jit, Block* from) {
  Cpu& c = jit->cpu_;
  Block* next;
  void* code = jit->next_code(from, c.block_lin, next);
  if (code == nullptr) --c.blocks_chained;  // the exit counted it before it knew
  return code;
}

void* Jit::link_exit(Jit* jit, JitExit* e) {
  Cpu& c = jit->cpu_;
  Block* const from = e->from;
  const uint32_t prev_lin = c.block_lin - e->off;  // the exit added off to block_lin
  Block* next;
  void* code = jit->next_code(from, prev_lin, next);
  if (code == nullptr) {
    --c.blocks_chained;
    return nullptr;  // not patched: the next time asks again
  }
  // Link when the target shares the linear and the physical page: it dies
  // with this block (invalidate_page drops both; a flush drops all), so the
  // jump needs no check. Otherwise link through a guard stub that checks
  // what may have changed since: the code epoch (any block invalidated,
  // the target perhaps) and the TLB (the target's linear page still maps
  // to its physical page); when either fails the stub calls link_exit()
  // again. Without room for a stub, the exit takes the jump cache path.
  const uint8_t* dest = e->nolink;
  const uint8_t* const after = jit->rx_ + (e->rel32 - jit->rw_) + 4;  // the end of the patched jump
  if ((((c.block_lin ^ prev_lin) | (next->phys ^ from->phys)) & ~0xFFFu) == 0) {
    dest = static_cast<const uint8_t*>(code);
  } else if (e->guard != 0 || jit->size_ - jit->used_ >= kGuardBytes) {
    const bool fresh = e->guard == 0;
    if (fresh) {
      // The record is read through the RX view; write it through the RW one.
      auto* const rw_e = reinterpret_cast<JitExit*>(jit->rw_ + (reinterpret_cast<uint8_t*>(e) - jit->rx_));
      rw_e->guard = static_cast<uint32_t>(jit->used_);
      jit->used_ += kGuardBytes;
      if (jit->perf_map_ != nullptr) {
        fmt::print(jit->perf_map_, "{:x} {:x} jit.guard@{:08x}\n", reinterpret_cast<uintptr_t>(jit->rx_ + e->guard),
                   kGuardBytes, c.block_lin);
        std::fflush(jit->perf_map_);
      }
    }
    uint8_t* const rw = jit->rw_ + e->guard;
    const uint8_t* const rx = jit->rx_ + e->guard;
    const uint32_t phys_page = next->phys & ~0xFFFu;
    if (fresh) {
      const GuardLayout l = emit_guard(c, rw, rx, c.code_epoch, phys_page, static_cast<const uint8_t*>(code), e->helper);
      jit->guard_layout_ = {l.epoch_end, l.phys_end, l.target_end};  // the same for every stub
    } else {  // a relink: patch the stub
      const auto& l = jit->guard_layout_;
      const auto rel = static_cast<int32_t>(static_cast<const uint8_t*>(code) - (rx + l.target_end));
      std::memcpy(rw + l.epoch_end - 4, &c.code_epoch, 4);
      std::memcpy(rw + l.phys_end - 4, &phys_page, 4);
      std::memcpy(rw + l.target_end - 4, &rel, 4);
    }
    dest = rx;
  }
  const auto rel = static_cast<int32_t>(dest - after);
  std::memcpy(e->rel32, &rel, 4);
  return code;
}

void Jit::enter_compiled(Cpu& c, const Insn& i) {
  const Block* b = c.current_block;
  if (EMU_UNLIKELY(c.stop_block | c.jit_paused | !c.jit_flat())) {
    const auto first = reinterpret_cast<Handler>(reinterpret_cast<intptr_t>(&Jit::enter_compiled) + b->jit_first);
    first(c, i);
    return;
  }
  c.bind.jit->run(b->jit_code);
}

bool Jit::cond(Cpu* cpu, unsigned cc) { return cpu->cond(cc); }
uint32_t Jit::flags(Cpu* cpu) { return cpu->flags_value(); }
uint32_t Jit::carry(Cpu* cpu) { return cpu->carry(); }

int32_t Jit::tlb_cur_offset(const Cpu& c) { return off_of(c, c.tlb_cur_); }

}  // namespace twoostwo::vmcore::emu
