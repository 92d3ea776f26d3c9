// Builds decoded blocks: Zydis decodes each instruction once (in the mode of
// the current CS: real, 16-bit or 32-bit protected) and the translate_*
// functions of the ops_*.cpp files turn it into an Insn.
#pragma once

#include <Zydis/Zydis.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "vmcore/emulator/insn.h"

namespace twoostwo::vmcore::emu {

class Decoder {
 public:
  /// Longest block in instructions.
  static constexpr unsigned kMaxBlockInsns = 64;

  Decoder();

  /// Decode the block that starts at linear `lin` = CS.base + EIP, which
  /// translates to guest-physical `phys` (RAM), in decoding mode `mode`
  /// (Cpu::decode_mode()). At most `max_bytes` bytes are decoded (the CS
  /// limit; the page end is applied here). `cacheable` is cleared when the
  /// block must not be cached: it holds an instruction that crosses into the
  /// next page, or was cut short by `max_bytes`. Raises #PF if an
  /// instruction crossing the page end needs bytes from an unmapped page.
  BlockPtr decode(Cpu& cpu, uint32_t lin, uint32_t phys, unsigned mode, uint32_t max_bytes, bool& cacheable);

  /// Mnemonics decoded but not implemented (they raise #UD), for reports.
  const std::set<std::string>& unimplemented() const { return unimplemented_; }

 private:
  /// Translate one decoded instruction; on failure the Insn raises #UD.
  void translate(const ZydisDecodedInstruction& zi, const ZydisDecodedOperand* ops, unsigned mode, Insn& in);

  ZydisDecoder decoders_[3];
  std::vector<Insn> scratch_;
  X87List x87_;
  std::set<std::string> unimplemented_;
};

}  // namespace twoostwo::vmcore::emu
