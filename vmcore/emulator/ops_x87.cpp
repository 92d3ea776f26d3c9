// x87 instructions: the core checks CR0.EM/TS (#NM), computes the memory
// operand's linear address (segment limit checked here, paging in the
// FpuMemory adapter) and hands the Zydis decoding to emu::Fpu (fpu.h).
#include <optional>

#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {
namespace {

// FpuMemory over the CPU's MMU: a fault is recorded and reported as false;
// the handler rethrows it once the FPU has returned kMemoryFault.
class CpuFpuMemory final : public FpuMemory {
 public:
  explicit CpuFpuMemory(Cpu& c) : c_(c) {}
  bool read(uint32_t linear, std::span<uint8_t> out) override {
    try {
      c_.read_bytes(linear, out);
      return true;
    } catch (const CpuException& e) {
      fault = e;
      return false;
    }
  }
  bool write(uint32_t linear, std::span<const uint8_t> in) override {
    try {
      c_.write_bytes(linear, in);
      return true;
    } catch (const CpuException& e) {
      fault = e;
      return false;
    }
  }
  std::optional<CpuException> fault;

 private:
  Cpu& c_;
};

// aux: bit 0 = has a memory operand (its Zydis index in aux2); bit 1 = FWAIT.
void x87_op(Cpu& c, const Insn& i) {
  const bool wait = i.aux & 2;
  if (wait) {
    if ((c.cr0 & kCr0Ts) && (c.cr0 & kCr0Mp)) raise(kVecNM);
  } else if (c.cr0 & (kCr0Em | kCr0Ts)) {
    raise(kVecNM);
  }
  if (c.current_block == nullptr || i.imm2 >= c.current_block->x87.size()) {
    throw EngineFault{"x87 instruction without its decoding"};
  }
  const X87Insn& x = *c.current_block->x87[i.imm2];
  FpuContext ctx;
  ctx.protected_mode = c.protected_mode() && !c.v86();
  ctx.operand_size_32 = !(i.flags & kInsnOp16);
  ctx.cs = c.seg[kCs].selector;
  ctx.eip = c.eip;
  ctx.ds = c.seg[i.seg].selector;
  if (i.aux & 1) {
    const uint32_t ea = effective_address(c, i);
    const ZydisDecodedOperand& op = x.ops[i.aux2];
    // The size of the memory operand in bytes (FNSAVE/FRSTOR/FNSTENV/FLDENV areas included).
    uint32_t size = op.size / 8;
    const ZydisMnemonic m = x.insn.mnemonic;
    const bool env16 = (i.flags & kInsnOp16) != 0;
    if (m == ZYDIS_MNEMONIC_FNSAVE || m == ZYDIS_MNEMONIC_FRSTOR) size = env16 ? 94 : 108;
    if (m == ZYDIS_MNEMONIC_FNSTENV || m == ZYDIS_MNEMONIC_FLDENV) size = env16 ? 14 : 28;
    if (size == 0) size = 1;
    const bool writes = (op.actions & ZYDIS_OPERAND_ACTION_MASK_WRITE) != 0;
    ctx.mem_linear = c.check_segment(i.seg, ea, size, writes);
    ctx.mem_offset = ea;
  }
  CpuFpuMemory mem(c);
  uint16_t ax = static_cast<uint16_t>(c.gpr[kEax]);
  uint32_t flags = c.flags();
  const FpuOutcome r = c.fpu.execute(x.insn, x.ops, ctx, mem, &ax, &flags);
  switch (r) {
    case FpuOutcome::kOk:
      c.set_reg<2>(0, ax);
      c.eflags = (flags & kEflagsSettable) | kEflagsFixed;
      next(c, i);
      return;
    case FpuOutcome::kMemoryFault:
      if (mem.fault) throw *mem.fault;
      throw EngineFault{"the FPU reported a memory fault that the MMU did not raise"};
    case FpuOutcome::kUnsupported:
      raise_ud();
    case FpuOutcome::kFloatingPointError:
      raise(kVecMF);
  }
}

bool is_x87(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_FXSAVE:
    case ZYDIS_MNEMONIC_FXSAVE64:
    case ZYDIS_MNEMONIC_FXRSTOR:
    case ZYDIS_MNEMONIC_FXRSTOR64:
    case ZYDIS_MNEMONIC_FEMMS:
      return false;
    default: {
      const char* name = ZydisMnemonicGetString(m);
      return name != nullptr && name[0] == 'f';
    }
  }
}

}  // namespace

bool translate_x87(const Decoded& d, Insn& in, X87List& x87) {
  if (!is_x87(d.zi.mnemonic)) return false;
  auto x = std::make_unique<X87Insn>();
  x->insn = d.zi;
  for (unsigned n = 0; n < d.zi.operand_count && n < ZYDIS_MAX_OPERAND_COUNT; ++n) x->ops[n] = d.ops[n];
  in.aux = d.zi.mnemonic == ZYDIS_MNEMONIC_FWAIT ? 2 : 0;
  for (unsigned n = 0; n < d.zi.operand_count; ++n) {
    if (d.ops[n].type == ZYDIS_OPERAND_TYPE_MEMORY && d.ops[n].mem.type == ZYDIS_MEMOP_TYPE_MEM) {
      if (!set_memory(d, n, in)) return false;
      in.aux |= 1;
      in.aux2 = static_cast<uint8_t>(n);
      break;
    }
  }
  // The operand-size attribute (it selects the 16- or 32-bit environment layouts).
  const bool opsize_prefix = d.has(ZYDIS_ATTRIB_HAS_OPERANDSIZE);
  const bool op16 = (d.mode == 2) == opsize_prefix;
  if (op16) in.flags |= kInsnOp16;
  else in.flags &= static_cast<uint8_t>(~kInsnOp16);
  in.imm2 = static_cast<uint32_t>(x87.size());
  x87.push_back(std::move(x));
  in.fn = x87_op;
  return true;
}

}  // namespace twoostwo::vmcore::emu
