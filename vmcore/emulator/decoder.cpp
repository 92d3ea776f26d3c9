#include "vmcore/emulator/decoder.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include "vmcore/emulator/ops.h"

namespace twoostwo::vmcore::emu {

// ---------------------------------------------------------------------------
// Translation helpers (ops.h)

void handler_ud(Cpu&, const Insn&) { raise_ud(); }

void handler_block_end(Cpu& c, const Insn&) { end_block(c); }

namespace {
void handler_gp0(Cpu&, const Insn&) { raise_gp(0); }
}  // namespace

uint8_t reg_offset(ZydisRegister r) {
  const ZydisRegisterClass cls = ZydisRegisterGetClass(r);
  const auto id = static_cast<unsigned>(ZydisRegisterGetId(r));
  switch (cls) {
    case ZYDIS_REGCLASS_GPR8:
      if (id < 4) return static_cast<uint8_t>(id * 4);
      if (id < 8) return static_cast<uint8_t>((id - 4) * 4 + 1);  // AH, CH, DH, BH
      return 0xFF;
    case ZYDIS_REGCLASS_GPR16:
    case ZYDIS_REGCLASS_GPR32:
      return id < 8 ? static_cast<uint8_t>(id * 4) : 0xFF;
    default:
      return 0xFF;
  }
}

uint8_t gpr_number(ZydisRegister r) {
  const ZydisRegisterClass cls = ZydisRegisterGetClass(r);
  const auto id = static_cast<unsigned>(ZydisRegisterGetId(r));
  if ((cls == ZYDIS_REGCLASS_GPR16 || cls == ZYDIS_REGCLASS_GPR32) && id < 8) return static_cast<uint8_t>(id);
  return 0xFF;
}

uint8_t seg_number(ZydisRegister r) {
  switch (r) {
    case ZYDIS_REGISTER_ES: return kEs;
    case ZYDIS_REGISTER_CS: return kCs;
    case ZYDIS_REGISTER_SS: return kSs;
    case ZYDIS_REGISTER_DS: return kDs;
    case ZYDIS_REGISTER_FS: return kFs;
    case ZYDIS_REGISTER_GS: return kGs;
    default: return 0xFF;
  }
}

bool set_memory(const Decoded& d, unsigned n, Insn& in) {
  const ZydisDecodedOperand& op = d.ops[n];
  if (op.type != ZYDIS_OPERAND_TYPE_MEMORY) return false;
  const auto& m = op.mem;
  if (m.type != ZYDIS_MEMOP_TYPE_MEM && m.type != ZYDIS_MEMOP_TYPE_AGEN) return false;
  in.base = kZeroReg;
  in.index = kZeroReg;
  if (m.base != ZYDIS_REGISTER_NONE) {
    in.base = gpr_number(m.base);
    if (in.base == 0xFF) return false;
  }
  if (m.index != ZYDIS_REGISTER_NONE) {
    in.index = gpr_number(m.index);
    if (in.index == 0xFF) return false;
  }
  switch (m.scale) {
    case 0:
    case 1: in.scale = 0; break;
    case 2: in.scale = 1; break;
    case 4: in.scale = 2; break;
    case 8: in.scale = 3; break;
    default: return false;
  }
  in.disp = m.disp.has_displacement ? static_cast<uint32_t>(m.disp.value) : 0;
  const uint8_t sr = seg_number(m.segment);
  in.seg = sr == 0xFF ? static_cast<uint8_t>(kDs) : sr;
  if (d.zi.address_width == 16) in.flags |= kInsnAddr16;
  return true;
}

int condition_code(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_SETO: case ZYDIS_MNEMONIC_CMOVO: return 0;
    case ZYDIS_MNEMONIC_JNO: case ZYDIS_MNEMONIC_SETNO: case ZYDIS_MNEMONIC_CMOVNO: return 1;
    case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_SETB: case ZYDIS_MNEMONIC_CMOVB: return 2;
    case ZYDIS_MNEMONIC_JNB: case ZYDIS_MNEMONIC_SETNB: case ZYDIS_MNEMONIC_CMOVNB: return 3;
    case ZYDIS_MNEMONIC_JZ: case ZYDIS_MNEMONIC_SETZ: case ZYDIS_MNEMONIC_CMOVZ: return 4;
    case ZYDIS_MNEMONIC_JNZ: case ZYDIS_MNEMONIC_SETNZ: case ZYDIS_MNEMONIC_CMOVNZ: return 5;
    case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_SETBE: case ZYDIS_MNEMONIC_CMOVBE: return 6;
    case ZYDIS_MNEMONIC_JNBE: case ZYDIS_MNEMONIC_SETNBE: case ZYDIS_MNEMONIC_CMOVNBE: return 7;
    case ZYDIS_MNEMONIC_JS: case ZYDIS_MNEMONIC_SETS: case ZYDIS_MNEMONIC_CMOVS: return 8;
    case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_SETNS: case ZYDIS_MNEMONIC_CMOVNS: return 9;
    case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_SETP: case ZYDIS_MNEMONIC_CMOVP: return 10;
    case ZYDIS_MNEMONIC_JNP: case ZYDIS_MNEMONIC_SETNP: case ZYDIS_MNEMONIC_CMOVNP: return 11;
    case ZYDIS_MNEMONIC_JL: case ZYDIS_MNEMONIC_SETL: case ZYDIS_MNEMONIC_CMOVL: return 12;
    case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_SETNL: case ZYDIS_MNEMONIC_CMOVNL: return 13;
    case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_SETLE: case ZYDIS_MNEMONIC_CMOVLE: return 14;
    case ZYDIS_MNEMONIC_JNLE: case ZYDIS_MNEMONIC_SETNLE: case ZYDIS_MNEMONIC_CMOVNLE: return 15;
    default: return -1;
  }
}

// ---------------------------------------------------------------------------
// Decoder

Decoder::Decoder() {
  ZydisDecoderInit(&decoders_[0], ZYDIS_MACHINE_MODE_REAL_16, ZYDIS_STACK_WIDTH_16);
  ZydisDecoderInit(&decoders_[1], ZYDIS_MACHINE_MODE_LEGACY_16, ZYDIS_STACK_WIDTH_16);
  ZydisDecoderInit(&decoders_[2], ZYDIS_MACHINE_MODE_LEGACY_32, ZYDIS_STACK_WIDTH_32);
}

void Decoder::translate(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops, unsigned mode,
                        Insn& in) {
  Insn base;
  base.len = zi.length;
  base.opsize = static_cast<uint8_t>(zi.operand_width / 8);
  if (zi.attributes & ZYDIS_ATTRIB_HAS_LOCK) base.flags |= kInsnLock;
  const Decoded d{zi, ops, mode};
  using Translate = bool (*)(const Decoded&, Insn&);
  for (Translate t : {translate_control, translate_alu, translate_data, translate_string, translate_system}) {
    in = base;
    if (t(d, in) && in.fn != nullptr) return;
  }
  in = base;
  if (translate_x87(d, in, x87_) && in.fn != nullptr) return;
  in = base;
  in.fn = handler_ud;
  in.flags |= kInsnEndsBlock;
  const char* name = ZydisMnemonicGetString(zi.mnemonic);
  if (name != nullptr && unimplemented_.insert(name).second) {
    fmt::print(stderr, "twoostwo-vmm: emulator: instruction {} is not implemented (raising #UD)\n", name);
  }
}

BlockPtr Decoder::decode(Cpu& cpu, uint32_t lin, uint32_t phys, unsigned mode, uint32_t max_bytes,
                         bool& cacheable) {
  scratch_.clear();
  x87_.clear();
  uint32_t phys2 = Block::kNoPhys2;
  cacheable = true;
  const uint32_t page_left = 0x1000 - (phys & 0xFFF);
  const uint32_t limit = std::min(page_left, max_bytes);
  if (max_bytes < page_left) cacheable = false;  // cut by the CS limit
  const uint8_t* code = cpu.ram() + phys;
  ZydisDecodedInstruction zi;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  uint32_t pos = 0;
  while (pos < limit && scratch_.size() < kMaxBlockInsns) {
    const uint32_t avail = limit - pos;
    ZyanStatus st = ZydisDecoderDecodeFull(&decoders_[mode], code + pos, avail, &zi, ops);
    Insn in;
    if (st == ZYDIS_STATUS_NO_MORE_DATA) {
      if (!scratch_.empty()) break;  // the instruction starts the next block
      if (limit == page_left && max_bytes > page_left) {
        // Crosses into the next page: assemble the bytes through the MMU.
        uint8_t buf[ZYDIS_MAX_INSTRUCTION_LENGTH];
        std::memcpy(buf, code + pos, avail);
        const uint32_t more = std::min<uint32_t>(ZYDIS_MAX_INSTRUCTION_LENGTH - avail, max_bytes - page_left);
        const uint32_t next_phys = cpu.translate_fetch(lin + page_left);
        for (uint32_t k = 0; k < more; ++k) {
          buf[avail + k] = cpu.is_ram(next_phys + k, 1) ? cpu.ram()[next_phys + k] : 0xFF;
        }
        phys2 = next_phys & ~0xFFFu;
        if (!cpu.is_ram(phys2, 0x1000)) cacheable = false;
        st = ZydisDecoderDecodeFull(&decoders_[mode], buf, avail + more, &zi, ops);
        if (ZYAN_SUCCESS(st)) {
          translate(zi, ops, mode, in);
        } else {
          in.fn = st == ZYDIS_STATUS_NO_MORE_DATA || st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG ? handler_gp0 : handler_ud;
          in.len = 1;
        }
        in.flags |= kInsnEndsBlock;
        scratch_.push_back(in);
        pos += in.len;
        break;
      }
      // Cut by the CS limit: #GP(0) when executed.
      in.fn = handler_gp0;
      in.len = 1;
      in.flags |= kInsnEndsBlock;
      scratch_.push_back(in);
      cacheable = false;
      pos += 1;
      break;
    }
    if (!ZYAN_SUCCESS(st)) {
      in.fn = st == ZYDIS_STATUS_INSTRUCTION_TOO_LONG ? handler_gp0 : handler_ud;
      in.len = 1;
      in.flags |= kInsnEndsBlock;
      scratch_.push_back(in);
      pos += 1;
      break;
    }
    translate(zi, ops, mode, in);
    scratch_.push_back(in);
    pos += zi.length;
    if (in.flags & kInsnEndsBlock) break;
  }
  if (scratch_.empty()) {  // cannot happen (limit >= 1); never hand out an empty block
    Insn in;
    in.fn = handler_gp0;
    in.len = 1;
    scratch_.push_back(in);
    cacheable = false;
  }
  BlockPtr block = Block::create(scratch_);
  block->phys = phys;
  block->mode = static_cast<uint8_t>(mode);
  block->phys2 = phys2;
  block->byte_len = pos;
  block->x87 = std::move(x87_);
  x87_ = X87List();
  return block;
}

}  // namespace twoostwo::vmcore::emu
