// Differential tests of the emulator's BCD adjusts (vmcore/emulator/alu.h)
// against the host CPU: DAA DAS AAA AAS AAM AAD. 64-bit mode has none of
// them, so the host side runs in the 32-bit helper process twoostwo_native32
// (tests/vmcore/native32/native32.c), fed one batch of instructions through
// a file and read back through popen(). Coverage is exhaustive over AL and
// the AAM/AAD bases; the SDM-defined flags must match:
//   DAA/DAS: CF AF SF ZF PF (OF undefined)    AAA/AAS: CF AF (OF SF ZF PF undefined)
//   AAM/AAD: SF ZF PF (OF AF CF undefined)    AAM 0: #DE
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "native32/native_x86.h"
#include "vmcore/emulator/alu.h"

namespace twoostwo::vmcore::emu {
namespace {

namespace native = twoostwo::emu_native;
using native::Checker;
using native::Operands;

enum class Bcd { kDaa, kDas, kAaa, kAas, kAam, kAad };
constexpr const char* kBcdNames[] = {"daa", "das", "aaa", "aas", "aam", "aad"};

struct BcdCase {
  Bcd op;
  uint32_t ax;
  uint32_t flags;
  uint8_t base;
};

struct HostResult {
  bool fault;  // #DE
  uint32_t ax;
  uint32_t flags;
};

// Path of the 32-bit helper, or empty when the build could not make it.
std::string helper_path() {
#ifdef TWOOSTWO_NATIVE32_HELPER
  return TWOOSTWO_NATIVE32_HELPER;
#else
  return {};
#endif
}

// Runs `cases` in the helper; nullopt (with a test failure) when it misbehaves.
std::optional<std::vector<HostResult>> run_on_host(const std::vector<BcdCase>& cases) {
  const std::filesystem::path input =
      std::filesystem::path(::testing::TempDir()) / ("emu_alu_bcd_" + std::to_string(::getpid()) + ".txt");
  {
    std::ofstream out(input);
    char line[64];
    for (const BcdCase& c : cases) {
      std::snprintf(line, sizeof line, "%s %x %x %x\n", kBcdNames[static_cast<int>(c.op)], c.ax, c.flags, c.base);
      out << line;
    }
  }
  const std::string command = "'" + helper_path() + "' < '" + input.string() + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), &pclose);
  if (!pipe) {
    ADD_FAILURE() << "cannot run " << command;
    return std::nullopt;
  }
  std::vector<HostResult> results;
  results.reserve(cases.size());
  char line[64];
  while (std::fgets(line, sizeof line, pipe.get()) != nullptr) {
    HostResult r{};
    if (std::string_view(line).starts_with("DE")) {
      r.fault = true;
    } else if (std::sscanf(line, "%x %x", &r.ax, &r.flags) != 2) {
      ADD_FAILURE() << "helper said: " << line;
      return std::nullopt;
    }
    results.push_back(r);
  }
  pipe.reset();
  std::filesystem::remove(input);
  if (results.size() != cases.size()) {
    ADD_FAILURE() << "helper answered " << results.size() << " of " << cases.size() << " cases";
    return std::nullopt;
  }
  return results;
}

std::vector<BcdCase> bcd_cases() {
  std::vector<BcdCase> cases;
  Operands rng(0xC000);
  // DAA/DAS/AAA/AAS: every AL, a few AH, the flag combinations that matter (CF, AF).
  for (const Bcd op : {Bcd::kDaa, Bcd::kDas, Bcd::kAaa, Bcd::kAas}) {
    for (uint32_t al = 0; al < 256; ++al) {
      for (const uint32_t ah : {0x00u, 0x12u, 0x7Fu, 0x80u, 0xFFu}) {
        for (const uint32_t f : {native::kFlagsClear, native::kFlagsSet, native::kFlagsClear | kCF,
                                 native::kFlagsClear | kAF, native::kFlagsClear | kCF | kAF,
                                 rng.flags(), rng.flags()}) {
          cases.push_back({op, (ah << 8) | al, f, 0});
        }
      }
    }
  }
  // AAM: every base (0 = #DE) and every AL.
  for (uint32_t base = 0; base < 256; ++base) {
    for (uint32_t al = 0; al < 256; ++al) {
      const uint32_t f = (al & 1) != 0 ? native::kFlagsSet : native::kFlagsClear;
      cases.push_back({Bcd::kAam, ((rng.next() & 0xFFu) << 8) | al, f, static_cast<uint8_t>(base)});
    }
  }
  // AAD: every base, edge and random AX.
  for (uint32_t base = 0; base < 256; ++base) {
    for (const uint32_t ax : {0x0000u, 0x00FFu, 0xFF00u, 0xFFFFu, 0x0909u, 0x0100u}) {
      cases.push_back({Bcd::kAad, ax, native::kFlagsSet, static_cast<uint8_t>(base)});
    }
    for (int i = 0; i < 64; ++i) {
      cases.push_back({Bcd::kAad, rng.value(2), rng.flags(), static_cast<uint8_t>(base)});
    }
  }
  return cases;
}

TEST(EmuAluBcd, MatchesHost32BitHelper) {
  if (helper_path().empty() || !std::filesystem::exists(helper_path())) {
    GTEST_SKIP() << "the 32-bit helper twoostwo_native32 was not built (no `cc -m32`: install gcc-multilib)";
  }
  const std::vector<BcdCase> cases = bcd_cases();
  const auto host = run_on_host(cases);
  ASSERT_TRUE(host.has_value());

  Checker daa_check("daa");
  Checker das_check("das");
  Checker aaa_check("aaa");
  Checker aas_check("aas");
  Checker aam_check("aam");
  Checker aad_check("aad");
  for (size_t i = 0; i < cases.size(); ++i) {
    const BcdCase& c = cases[i];
    const HostResult& h = (*host)[i];
    switch (c.op) {
      case Bcd::kDaa:
      case Bcd::kDas: {
        ASSERT_FALSE(h.fault);
        const AluResult m = c.op == Bcd::kDaa ? daa(c.ax, c.flags) : das(c.ax, c.flags);
        (c.op == Bcd::kDaa ? daa_check : das_check)
            .check({c.ax, c.flags}, m.value, m.flags, h.ax, h.flags, kCF | kAF | kSF | kZF | kPF);
        break;
      }
      case Bcd::kAaa:
      case Bcd::kAas: {
        ASSERT_FALSE(h.fault);
        const AluResult m = c.op == Bcd::kAaa ? aaa(c.ax, c.flags) : aas(c.ax, c.flags);
        (c.op == Bcd::kAaa ? aaa_check : aas_check).check({c.ax, c.flags}, m.value, m.flags, h.ax, h.flags, kCF | kAF);
        break;
      }
      case Bcd::kAam: {
        const auto m = aam(c.ax, c.base, c.flags);
        ASSERT_EQ(m.has_value(), !h.fault) << "aam base " << int{c.base};
        if (m) {
          aam_check.check({c.ax, c.base, c.flags}, m->value, m->flags, h.ax, h.flags, kSF | kZF | kPF);
        }
        break;
      }
      case Bcd::kAad: {
        ASSERT_FALSE(h.fault);
        const AluResult m = aad(c.ax, c.base, c.flags);
        aad_check.check({c.ax, c.base, c.flags}, m.value, m.flags, h.ax, h.flags, kSF | kZF | kPF);
        break;
      }
    }
  }
  RecordProperty("native_cases", std::to_string(cases.size()));
}

TEST(EmuAluBcd, KnownValues) {
  // DAA after 0x19 + 0x28 = 0x41 with AF: 47.
  AluResult r = daa(0x0041, 0x2 | kAF);
  EXPECT_EQ(r.value, 0x0047u);
  EXPECT_EQ(r.flags & (kCF | kAF), kAF);
  // DAA 0x9A: 0x00 with carry (99 + 1).
  r = daa(0x009A, 0x2);
  EXPECT_EQ(r.value, 0x0000u);
  EXPECT_EQ(r.flags & (kCF | kZF), kCF | kZF);
  // DAS 0x00 - 0x01 = 0xFF: 99 with borrow.
  r = das(0x00FF, 0x2 | kCF);
  EXPECT_EQ(r.value, 0x0099u);
  EXPECT_EQ(r.flags & kCF, kCF);
  // AAA on AL 0x0F: AH + 1, AL 5 (P6+: AX + 0x106).
  r = aaa(0x010F, 0x2);
  EXPECT_EQ(r.value, 0x0205u);
  EXPECT_EQ(r.flags & (kCF | kAF), kCF | kAF);
  // AAA on AL 0xFA: the +6 carries into AH on P6 and later.
  EXPECT_EQ(aaa(0x00FA, 0x2).value, 0x0200u);
  r = aas(0x0000, 0x2 | kAF);
  EXPECT_EQ(r.value, 0xFE0Au);
  // AAM 10 on 63: AH 6, AL 3. AAM 0: #DE.
  const auto m = aam(63, 10, 0x2);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->value, 0x0603u);
  EXPECT_FALSE(aam(63, 0, 0x2).has_value());
  // AAD 10 on 0x0605: 65; AH cleared.
  EXPECT_EQ(aad(0x0605, 10, 0x2).value, 65u);
}

}  // namespace
}  // namespace twoostwo::vmcore::emu
