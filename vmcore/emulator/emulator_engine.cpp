#include "vmcore/emulator/emulator_engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#include "vmcore/emulator/block_cache.h"
#include "vmcore/emulator/chain.h"
#include "vmcore/emulator/cpu.h"
#include "vmcore/emulator/decoder.h"
#include "vmcore/emulator/jit.h"

namespace twoostwo::vmcore {

using emu::Block;
using emu::Cpu;
using emu::Insn;

namespace {
constexpr uint64_t kDefaultSlice = 200'000;

const char* vector_name(uint8_t v) {
  static constexpr const char* kNames[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#09",
                                           "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM"};
  return v < std::size(kNames) ? kNames[v] : "int";
}
}  // namespace

struct EmulatorEngine::Impl {
  Impl(MachineBindings b, const EmulatorOptions& o) : bindings(std::move(b)), options(o), cache(bindings.memory.size()) {}

  MachineBindings bindings;
  EmulatorOptions options;
  Cpu cpu;
  emu::BlockCache cache;
  emu::Decoder decoder;
  emu::BlockPtr oneoff;
  std::unique_ptr<emu::Jit> jit;  // null: interpret only
  uint64_t jit_flushes_seen = 0;  // BlockCache::flushes() when the JIT's code was last dropped
  bool virtual_clock = false;
  uint64_t slice = kDefaultSlice;
  uint64_t blocks_decoded = 0;
  uint64_t blocks_executed = 0;
  uint64_t runs = 0;
  uint64_t run_results[5] = {};  // by StopReason

  std::atomic<bool> kick{false};
  std::atomic<bool> invalidate_pending{false};
  std::mutex invalidate_mu;
  std::vector<std::pair<uint64_t, uint64_t>> invalidations;
  std::atomic<uint64_t> retired{0};
  std::string last_exception;

  void process_invalidations() {
    std::vector<std::pair<uint64_t, uint64_t>> todo;
    {
      std::lock_guard lock(invalidate_mu);
      todo.swap(invalidations);
      invalidate_pending.store(false, std::memory_order_relaxed);
    }
    for (const auto& [gpa, len] : todo) cache.invalidate_range(gpa, len);
  }

  /// At the loop's safe point: when the JIT's buffer is full, drop every
  /// block; once a flush's blocks are collected, the JIT's code goes too.
  void maintain_jit() {
    if (jit->wants_flush()) cache.flush();
    if (cache.has_dead()) cache.collect();
    if (cache.flushes() != jit_flushes_seen) {
      jit_flushes_seen = cache.flushes();
      jit->reset();
    }
  }

  void refresh_irq_hint() {
    if (bindings.pic == nullptr) return;
    emu::DeviceLock lock(&bindings);
    cpu.irq_hint = bindings.pic->interrupt_pending();
  }

  void take_interrupt() {
    int vector = -1;
    {
      emu::DeviceLock lock(&bindings);
      if (bindings.pic->interrupt_pending()) vector = bindings.pic->acknowledge();
      cpu.irq_hint = bindings.pic->interrupt_pending();
    }
    if (vector < 0) return;
    if (options.trace_interrupts) {
      fmt::print(stderr, "emu: irq vector {:#x} at {:04x}:{:08x}\n", vector, cpu.seg[emu::kCs].selector, cpu.eip);
    }
    cpu.halted = false;
    cpu.deliver({static_cast<uint8_t>(vector), Cpu::EventKind::kExternal, false, 0, cpu.eip});
  }

  // The jump cache (chain.h): Cpu::jump_cache points into it.
  std::vector<emu::JumpEntry> jump_cache = std::vector<emu::JumpEntry>(emu::kJumpEntries);

  /// The block at CS:EIP, through `prev`'s chain slots or the jump cache
  /// when they know it, else the block cache or the decoder; links it as a
  /// successor of `prev` (prev: the cached block that just ran to its end,
  /// entered at linear `prev_lin`, or null).
  Block* next_block(Block* prev, uint32_t prev_lin) {
    Cpu& c = cpu;
    const uint32_t lin = c.seg[emu::kCs].base + c.eip;
    const uint32_t tag = emu::jump_tag(c);
    bool from_chain;
    Block* b = emu::find_block_fast(c, prev, prev_lin, lin, tag, from_chain);
    if (b == nullptr) b = lookup_slow(lin, c.decode_mode());
    if (prev != nullptr && !from_chain) emu::link_blocks(prev, b, lin, emu::jump_tag(c));
    return b;
  }

  Block* lookup_slow(uint32_t lin, unsigned mode) {
    Cpu& c = cpu;
    if (c.code_epoch > (1u << 28)) {
      // Keep the epoch within the tag's bits: start over with an empty jump
      // cache and no chains (every block is dropped: a chain slot from an
      // old epoch could otherwise match again).
      cache.flush();
      std::fill(jump_cache.begin(), jump_cache.end(), emu::JumpEntry{});
      c.code_epoch = 1;
    }
    const emu::SegmentCache& cs = c.seg[emu::kCs];
    const uint32_t eip = c.eip;
    if (eip > cs.limit) emu::raise_gp(0);
    const uint32_t phys = c.translate_fetch(lin);
    Block* b = cache.find(phys, mode);
    if (EMU_LIKELY(b != nullptr) && uint64_t{eip} + b->byte_len - 1 <= cs.limit &&
        (b->phys2 == Block::kNoPhys2 || (c.translate_fetch((lin & ~0xFFFu) + 0x1000) & ~0xFFFu) == b->phys2)) {
      // Blocks that cross into a second page are not entered in the jump
      // cache (its check covers the first page only).
      if (b->phys2 == Block::kNoPhys2) jump_cache[emu::jump_index(lin)] = emu::JumpEntry{lin, emu::jump_tag(c), b};
      return b;
    }
    if (!c.is_ram(phys, 1)) {
      throw emu::EngineFault{fmt::format("executing outside RAM: CS:EIP {:04x}:{:08x} is physical {:#x}",
                                         cs.selector, eip, phys)};
    }
    bool cacheable;
    const uint64_t max_bytes = std::min<uint64_t>(uint64_t{cs.limit} - eip + 1, 0x10000);
    auto nb = decoder.decode(c, lin, phys, mode, static_cast<uint32_t>(max_bytes), cacheable);
    ++blocks_decoded;
    if (cacheable && b == nullptr) {
      Block* inserted = cache.insert(std::move(nb));
      // Its run count for the JIT starts in the current window (Jit::count_hot).
      if (c.bind.jit != nullptr) inserted->jit_window = c.bind.jit->window();
      if (inserted->cached && inserted->phys2 == Block::kNoPhys2) {
        jump_cache[emu::jump_index(lin)] = emu::JumpEntry{lin, emu::jump_tag(c), inserted};
      }
      return inserted;
    }
    oneoff = std::move(nb);
    return oneoff.get();
  }

  void trace_exception(const emu::CpuException& e) {
    last_exception = fmt::format("{} (vector {}) error {:#x} at {:04x}:{:08x}, cr2 {:#x}", vector_name(e.vector),
                                 e.vector, e.error, cpu.seg[emu::kCs].selector, cpu.eip, cpu.cr2);
    if (options.trace_exceptions) fmt::print(stderr, "emu: exception {}\n", last_exception);
  }
};

EmulatorEngine::EmulatorEngine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EmulatorEngine::~EmulatorEngine() {
  if (std::getenv("TWOOSTWO_EMU_STATS") != nullptr) {
    const EmulatorCounters c = counters();
    fmt::print(stderr,
               "emu: {} instructions, {} blocks executed, {} blocks decoded, {} cached, {} invalidated, {} exceptions, "
               "{} interrupts, {} unimplemented mnemonics\n",
               c.instructions, c.blocks_executed, c.blocks_decoded, c.blocks_cached, c.blocks_invalidated, c.exceptions, c.interrupts,
               c.unimplemented);
    fmt::print(stderr, "emu: {} runs ({} returned kHalt, {} kKicked); {} blocks entered from the loop, {} chained\n",
               c.runs, impl_->run_results[0], impl_->run_results[1], impl_->blocks_executed, impl_->cpu.blocks_chained);
    if (impl_->jit) {
      const emu::JitStats j = impl_->jit->stats();
      fmt::print(stderr,
                 "emu: jit: {} blocks compiled ({} instructions inline, {} handler calls), {} KiB of code in use, "
                 "{} flushes, {:.1f} us per block\n",
                 j.blocks_compiled, j.insns_inline, j.insns_called, j.code_bytes >> 10, j.flushes,
                 j.blocks_compiled != 0 ? static_cast<double>(j.compile_ns) / 1000.0 / static_cast<double>(j.blocks_compiled) : 0.0);
    }
  }
}

Result<std::unique_ptr<EmulatorEngine>> EmulatorEngine::create(MachineBindings bindings,
                                                               const EmulatorOptions& options) {
  const bus::GuestMemory& mem = bindings.memory;
  if (mem.host_base() == nullptr || mem.size() == 0) return fail("emulator: guest RAM is empty");
  if (mem.size() > 0xFFFFF000ull) {
    return fail(fmt::format("emulator: {} MiB of guest RAM does not fit the 32-bit physical address space",
                            mem.size() >> 20));
  }
  EmulatorOptions o = options;
  if (const char* env = std::getenv("TWOOSTWO_EMU_TRACE"); env != nullptr) {
    const std::string_view t(env);
    o.trace_exceptions |= t.find("exception") != std::string_view::npos;
    o.trace_interrupts |= t.find("interrupt") != std::string_view::npos || t.find("irq") != std::string_view::npos;
    o.trace_blocks |= t.find("block") != std::string_view::npos;
    if (const size_t d = t.find("digest"); d != std::string_view::npos) {
      o.trace_digest_every = 16;
      if (d + 6 < t.size() && t[d + 6] == ':') {
        o.trace_digest_every = static_cast<uint32_t>(std::strtoul(std::string(t.substr(d + 7)).c_str(), nullptr, 10));
        if (o.trace_digest_every == 0) o.trace_digest_every = 1;
      }
    }
  }
  if (const char* env = std::getenv("TWOOSTWO_EMU_JIT"); env != nullptr) {
    auto j = parse_emulator_jit(env);
    if (!j) return fail("TWOOSTWO_EMU_JIT: " + j.error().message);
    o.jit = *j;
  }
  if (o.trace_blocks) o.jit = EmulatorJit::kOff;
  auto impl = std::make_unique<Impl>(std::move(bindings), o);
  Impl& m = *impl;
  m.slice = o.slice_instructions != 0 ? o.slice_instructions : kDefaultSlice;
  m.cpu.attach_ram(m.bindings.memory.host_base(), static_cast<uint32_t>(m.bindings.memory.size()));
  m.cpu.code_pages = m.cache.code_pages();
  m.cpu.bind.machine = &m.bindings;
  m.cpu.bind.cache = &m.cache;
  m.cpu.jump_cache = m.jump_cache.data();
  m.cpu.bind.vclock = dynamic_cast<VirtualClock*>(m.bindings.clock);
  m.virtual_clock = m.cpu.bind.vclock != nullptr;
  m.cache.attach(&m.cpu);
  if (o.jit != EmulatorJit::kOff) {
    const uint32_t threshold = o.jit == EmulatorJit::kAlways ? 0
                               : o.jit_threshold != 0        ? o.jit_threshold
                                                             : emu::Jit::kDefaultThreshold;
    auto jit = emu::Jit::create(m.cpu, m.cache, threshold,
                                o.jit_cache_bytes != 0 ? o.jit_cache_bytes : emu::Jit::kDefaultCacheBytes);
    if (!jit) return std::unexpected(jit.error());
    m.jit = std::move(*jit);
    m.cpu.bind.jit = m.jit.get();
    if (const char* env = std::getenv("TWOOSTWO_EMU_JIT_PERFMAP"); env != nullptr && *env != '\0' && *env != '0') {
      if (!m.jit->enable_perf_map()) fmt::print(stderr, "emu: jit: cannot write /tmp/perf-<pid>.map\n");
    }
  }
  return std::unique_ptr<EmulatorEngine>(new EmulatorEngine(std::move(impl)));
}

Result<void> EmulatorEngine::set_state(const CpuState& state) {
  Impl& m = *impl_;
  if (auto r = emu::from_cpu_state(m.cpu, state); !r) return r;
  m.cache.flush();
  m.cache.collect();
  m.oneoff.reset();
  if (m.jit) {
    m.jit->reset();
    m.jit_flushes_seen = m.cache.flushes();
  }
  return {};
}

Result<CpuState> EmulatorEngine::state() { return emu::to_cpu_state(impl_->cpu); }

void EmulatorEngine::kick() {
  impl_->kick.store(true, std::memory_order_release);
  if (!impl_->virtual_clock) impl_->cpu.exit_request.store(true, std::memory_order_release);
}

uint64_t EmulatorEngine::instructions_retired() const { return impl_->retired.load(std::memory_order_acquire); }

void EmulatorEngine::invalidate_code(uint64_t gpa, uint64_t length) {
  Impl& m = *impl_;
  std::lock_guard lock(m.invalidate_mu);
  m.invalidations.emplace_back(gpa, length);
  m.invalidate_pending.store(true, std::memory_order_release);
  m.cpu.exit_request.store(true, std::memory_order_release);
}

EmulatorCounters EmulatorEngine::counters() const {
  const Impl& m = *impl_;
  EmulatorCounters c;
  c.instructions = m.cpu.icount;
  c.blocks_decoded = m.blocks_decoded;
  c.blocks_executed = m.blocks_executed + m.cpu.blocks_chained;
  c.blocks_chained = m.cpu.blocks_chained;
  c.runs = m.runs;
  c.blocks_cached = m.cache.block_count();
  c.blocks_invalidated = m.cache.invalidated_blocks();
  c.exceptions = m.cpu.exceptions_delivered;
  c.interrupts = m.cpu.interrupts_delivered;
  c.unimplemented = m.decoder.unimplemented().size();
  if (m.jit) {
    const emu::JitStats j = m.jit->stats();
    c.blocks_compiled = j.blocks_compiled;
    c.jit_code_bytes = j.code_bytes;
    c.jit_flushes = j.flushes;
  }
  return c;
}

RunResult EmulatorEngine::run() {
  Impl& m = *impl_;
  Cpu& c = m.cpu;
  ++m.runs;
  auto finish = [&](StopReason reason, std::string detail = {}) {
    ++m.run_results[static_cast<int>(reason)];
    if (EMU_UNLIKELY(m.options.trace_digest_every != 0) && m.runs % m.options.trace_digest_every == 0) {
      uint64_t h = 1469598103934665603ull;  // FNV-1a over the state
      auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
      for (int k = 0; k < 8; ++k) mix(c.gpr[k]);
      mix(c.eip);
      mix(c.flags_value());
      mix(c.cr3);
      mix(c.seg[emu::kCs].selector);
      fmt::print(stderr, "emu: digest {} icount {} eip {:08x} hash {:016x}\n", m.runs, c.icount, c.eip, h);
    }
    c.sync_clock();
    m.retired.store(c.icount, std::memory_order_release);
    c.current_block = nullptr;
    return RunResult{reason, std::move(detail)};
  };
  auto halt_result = [&] {
    return finish(StopReason::kHalt, (c.eflags & emu::kIF) ? "" : "halted with interrupts disabled");
  };
  if (!m.virtual_clock && m.kick.exchange(false, std::memory_order_acq_rel)) return finish(StopReason::kKicked);
  if (m.invalidate_pending.load(std::memory_order_acquire)) m.process_invalidations();
  m.refresh_irq_hint();
  if (c.halted && (!(c.eflags & emu::kIF) || !c.irq_hint)) return halt_result();

  c.slice_end = c.icount + m.slice;
  if (m.jit) {
    // Woken from HLT: interpret the first kColdWakeInstructions (Cpu::jit_paused).
    c.jit_paused = c.halted;
    c.jit_paused_until = c.icount + emu::kColdWakeInstructions;
    m.jit->update_window(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count()));
  }
  // Instructions of block `b` done when EIP is `eip`: the index of the
  // instruction that starts at `eip` (a fault there, or a stop after the one
  // before), or all of them (the last one ran, possibly a branch).
  auto done_in = [](const Block* b, uint32_t entry_eip, uint32_t eip) -> uint32_t {
    const uint32_t off = eip - entry_eip;
    uint32_t at = 0;
    const Insn* in = b->insns();
    for (uint32_t k = 0; k < b->count; ++k) {
      if (at == off) return k;
      at += in[k].len;
    }
    return b->count;
  };
  // While a block runs, Cpu::current_block is the block not yet counted in
  // icount and Cpu::block_eip the EIP it was entered at; blocks that chain
  // (chain.h) count themselves and move both on.
  c.current_block = nullptr;
  Block* prev = nullptr;  // the cached block that last ran to its end (for chaining)
  uint32_t prev_lin = 0;  // the linear address it was entered at
  for (;;) {
    try {
      for (;;) {
        if (EMU_UNLIKELY(c.icount >= c.slice_end)) return finish(StopReason::kKicked);
        if (EMU_UNLIKELY(c.jit_paused) && c.icount >= c.jit_paused_until) c.jit_paused = false;
        c.exit_request.store(false, std::memory_order_relaxed);  // the reasons are looked at below
        if (EMU_UNLIKELY(m.invalidate_pending.load(std::memory_order_acquire))) m.process_invalidations();
        if (!m.virtual_clock && EMU_UNLIKELY(m.kick.load(std::memory_order_acquire))) {
          m.kick.store(false, std::memory_order_relaxed);
          return finish(StopReason::kKicked);
        }
        if (m.jit) {
          if (EMU_UNLIKELY(m.jit->wants_flush() || m.cache.has_dead() || m.cache.flushes() != m.jit_flushes_seen)) {
            m.maintain_jit();
            prev = nullptr;
          }
        } else if (EMU_UNLIKELY(m.cache.has_dead())) {
          m.cache.collect();
          prev = nullptr;
        }
        if (c.irq_hint && (c.eflags & emu::kIF) && !c.irq_shadow && m.bindings.pic != nullptr) m.take_interrupt();
        c.irq_shadow = false;
        if (EMU_UNLIKELY(c.halted)) return halt_result();

        Block* b = m.next_block(prev, prev_lin);
        prev = nullptr;
        if (EMU_UNLIKELY(m.options.trace_blocks)) {
          fmt::print(stderr, "emu: block {:04x}:{:08x} phys {:#x} ({} insns)\n", c.seg[emu::kCs].selector, c.eip,
                     b->phys, b->count);
        }
        const Insn* const first = b->insns();
        c.current_block = b;
        c.block_eip = c.eip;
        c.block_lin = c.seg[emu::kCs].base + c.eip;
        if (EMU_UNLIKELY(c.eflags & emu::kTF)) {
          // Single-step: one instruction (stop_block keeps next() and
          // end_block() from going on), then a #DB trap (DR6.BS).
          c.stop_block = true;
          first->fn(c, *first);
          c.current_block = nullptr;
          c.icount += 1;
          c.dr[6] |= 1u << 14;
          c.deliver({emu::kVecDB, Cpu::EventKind::kException, false, 0, c.eip});
          continue;
        }
        c.stop_block = false;
        c.chain_budget = m.options.trace_blocks ? 0 : emu::kChainBudget;
        c.chain_from = nullptr;
        // Compiled code runs only with flat segments (jit.h), Linux's always.
        if (void* code = m.jit && !c.jit_paused && c.jit_flat() ? m.jit->hot_code(b) : nullptr; code != nullptr) {
          m.jit->run(code);  // the block and those it chains to, compiled (jit.h); same contract
        } else {
          first->fn(c, *first);  // runs the block, and the blocks it chains to (ops.h next(), chain.h)
        }
        ++m.blocks_executed;
        if (const Block* cb = c.current_block; cb != nullptr) {
          // Stopped early, or ended by an instruction that does not chain.
          c.current_block = nullptr;
          c.icount += EMU_LIKELY(!c.stop_block) ? cb->count : done_in(cb, c.block_eip, c.eip);
          if (EMU_LIKELY(!c.stop_block && cb->cached)) {
            prev = const_cast<Block*>(cb);
            prev_lin = c.block_lin;
          }
        } else {
          prev = const_cast<Block*>(c.chain_from);  // counted by end_block()
          prev_lin = c.chain_from_lin;
        }
        if (c.halted) {
          if ((c.eflags & emu::kIF) && c.irq_hint) continue;  // an interrupt is waiting: wake at once
          return halt_result();
        }
      }
    } catch (const emu::CpuException& e) {
      c.in_jit = false;
      c.jit_chain = false;
      if (c.current_block != nullptr) c.icount += done_in(c.current_block, c.block_eip, c.eip);
      c.current_block = nullptr;
      prev = nullptr;
      m.trace_exception(e);
      try {
        c.deliver({e.vector, Cpu::EventKind::kException, e.has_error, e.error, c.eip});
      } catch (const emu::TripleFault& t) {
        return finish(StopReason::kTripleFault, t.detail + "; first: " + m.last_exception);
      } catch (const emu::EngineFault& f) {
        return finish(StopReason::kFault, f.detail);
      }
    } catch (const emu::TripleFault& t) {
      c.in_jit = false;
      c.jit_chain = false;
      return finish(StopReason::kTripleFault, t.detail);
    } catch (const emu::EngineFault& f) {
      c.in_jit = false;
      c.jit_chain = false;
      return finish(StopReason::kFault, f.detail);
    }
  }
}

Result<EmulatorJit> parse_emulator_jit(std::string_view text) {
  if (text == "off") return EmulatorJit::kOff;
  if (text == "on") return EmulatorJit::kOn;
  if (text == "always") return EmulatorJit::kAlways;
  return fail(fmt::format("'{}' is not a JIT setting (off, on or always)", text));
}

}  // namespace twoostwo::vmcore
