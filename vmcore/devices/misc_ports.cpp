#include "vmcore/devices/misc_ports.h"

namespace twoostwo::vmcore {

MiscPorts::MiscPorts(std::function<void()> on_reset)
    : on_reset_(std::move(on_reset)),
      post_io_("post 0x80", 1, bad_, [this](uint32_t) { return post_code_; },
               [this](uint32_t, uint8_t v) { post_code_ = v; }),
      delay_io_("io delay 0xed", 1, bad_, [](uint32_t) { return uint8_t{0xFF}; },
                [](uint32_t, uint8_t) {}),
      port92_io_("port 0x92", 1, bad_, [this](uint32_t) { return port92_; },
                 [this](uint32_t, uint8_t v) {
                   const bool reset = (v & 0x01) && !(port92_ & 0x01);
                   port92_ = uint8_t(0x02 | (v & 0x01));  // A20 stays enabled
                   if (reset && on_reset_) on_reset_();
                 }) {}

}  // namespace twoostwo::vmcore
