#include "captures/pcap_bridge.h"

#include <fcntl.h>
#include <net/if.h>
#include <pcap.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include <boost/asio/post.hpp>
#include <fmt/format.h>

namespace twoostwo::captures {

namespace {

bool valid_interface_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  return std::none_of(name.begin(), name.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '/' || c == ':' || std::isspace(u) != 0 || std::iscntrl(u) != 0;
  });
}

struct PcapCloser {
  void operator()(pcap_t* p) const { pcap_close(p); }
};

}  // namespace

fabric::Result<std::unique_ptr<PcapBridge>> PcapBridge::open(boost::asio::io_context& io, std::string port_name,
                                                            const std::string& interface_name, Options options) {
  const std::string what = fmt::format("adapter '{}'", interface_name);
  if (!valid_interface_name(interface_name)) return fabric::fail(what + ": invalid interface name");
  // Checked first, so a missing interface is reported as such even without
  // the privileges to open a packet socket.
  if (if_nametoindex(interface_name.c_str()) == 0) return fabric::fail(what + ": no such interface");
  if (options.budget <= 0) return fabric::fail(what + ": budget must be positive");

  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, PcapCloser> p(pcap_create(interface_name.c_str(), errbuf));
  if (!p) return fabric::fail(fmt::format("{}: {}", what, errbuf));
  pcap_set_snaplen(p.get(), static_cast<int>(fabric::kMaxFrame) + 1);  // one more: to see oversized frames
  pcap_set_promisc(p.get(), 1);
  pcap_set_immediate_mode(p.get(), 1);
  pcap_set_buffer_size(p.get(), options.buffer_bytes);

  const int status = pcap_activate(p.get());
  if (status < 0) {
    switch (status) {
      case PCAP_ERROR_NO_SUCH_DEVICE:
        return fabric::fail(what + ": no such interface");
      case PCAP_ERROR_PERM_DENIED:
      case PCAP_ERROR_PROMISC_PERM_DENIED:
        return fabric::fail(what + ": permission denied (needs CAP_NET_RAW)");
      case PCAP_ERROR_IFACE_NOT_UP:
        return fabric::fail(what + ": interface is down");
      default:
        return fabric::fail(fmt::format("{}: {} ({})", what, pcap_statustostr(status), pcap_geterr(p.get())));
    }
  }
  if (status == PCAP_WARNING_PROMISC_NOTSUP) return fabric::fail(what + ": no promiscuous mode");

  if (const int dlt = pcap_datalink(p.get()); dlt != DLT_EN10MB) {
    const char* dlt_name = pcap_datalink_val_to_name(dlt);
    return fabric::fail(fmt::format("{}: not an Ethernet interface (link type {})", what,
                                    dlt_name != nullptr ? dlt_name : std::to_string(dlt)));
  }
  if (pcap_setdirection(p.get(), PCAP_D_IN) != 0) {
    return fabric::fail(fmt::format("{}: cannot capture incoming frames only ({})", what, pcap_geterr(p.get())));
  }
  if (pcap_setnonblock(p.get(), 1, errbuf) != 0) {
    return fabric::fail(fmt::format("{}: cannot make non-blocking ({})", what, errbuf));
  }
  const int fd = pcap_get_selectable_fd(p.get());
  if (fd < 0) return fabric::fail(what + ": no selectable descriptor");
  // Non-blocking also for pcap_inject (a full send buffer drops, never
  // stalls the fabric), and not inherited by the monitors the supervisor
  // spawns.
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    return fabric::fail(fmt::format("{}: fcntl: {}", what, std::strerror(errno)));
  }

  std::unique_ptr<PcapBridge> bridge(
      new PcapBridge(io, std::move(port_name), interface_name, std::move(options), p.release()));
  boost::system::error_code ec;
  bridge->waiter_.assign(fd, ec);
  if (ec) return fabric::fail(fmt::format("{}: cannot watch descriptor: {}", what, ec.message()));
  bridge->arm_read();
  return bridge;
}

PcapBridge::PcapBridge(boost::asio::io_context& io, std::string port_name, std::string interface_name,
                       Options options, pcap* handle)
    : Port(std::move(port_name)),
      io_(io),
      interface_(std::move(interface_name)),
      options_(std::move(options)),
      pcap_(handle),
      waiter_(io),
      lab_macs_(fabric::MacTable::Options{options_.lab_mac_capacity, options_.lab_mac_capacity,
                                          options_.lab_mac_aging}) {}

PcapBridge::~PcapBridge() {
  alive_.reset();
  if (waiter_.is_open()) {
    boost::system::error_code ec;
    waiter_.cancel(ec);
    waiter_.release();  // libpcap owns the descriptor
  }
  pcap_close(pcap_);
}

std::string PcapBridge::describe() const { return "adapter " + interface_; }

void PcapBridge::arm_read() {
  waiter_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                     [this, alive = std::weak_ptr<bool>(alive_)](const boost::system::error_code& ec) {
                       if (alive.expired() || ec) return;
                       read_ready();
                     });
}

void PcapBridge::read_ready() {
  const int n = pcap_dispatch(pcap_, options_.budget, &PcapBridge::on_packet, reinterpret_cast<u_char*>(this));
  if (n < 0) {
    // PCAP_ERROR: the adapter went away or failed; PCAP_ERROR_BREAK is never
    // asked for.
    error_ = fabric::Error{fmt::format("adapter '{}': {}", interface_, pcap_geterr(pcap_))};
    set_up(false);
    return;
  }
  if (n >= options_.budget) {
    // More may be waiting: continue after the rest of the fabric had a turn
    // (the descriptor is edge-watched, so waiting now could miss them).
    boost::asio::post(io_, [this, alive = std::weak_ptr<bool>(alive_)] {
      if (!alive.expired()) read_ready();
    });
    return;
  }
  arm_read();
}

void PcapBridge::on_packet(unsigned char* user, const pcap_pkthdr* header, const unsigned char* bytes) {
  reinterpret_cast<PcapBridge*>(user)->received(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes), header->caplen), header->len);
}

void PcapBridge::received(std::span<const std::byte> bytes, uint32_t wire_length) {
  ++adapter_counters_.received;
  if (wire_length > fabric::kMaxFrame || bytes.size() != wire_length) {
    ++adapter_counters_.oversized;
    count_tx_drop();
    return;
  }
  if (bytes.size() >= fabric::kEthernetHeader) {
    fabric::MacAddress source;
    std::memcpy(source.data(), bytes.data() + 6, source.size());
    if (lab_macs_.lookup(0, source, options_.clock()) != nullptr) {
      ++adapter_counters_.echo_dropped;
      count_tx_drop();
      return;
    }
  }
  if (bytes.size() < fabric::kMinFrame) {
    std::fill(padded_.begin(), padded_.end(), std::byte{0});
    std::copy(bytes.begin(), bytes.end(), padded_.begin());
    bytes = std::span<const std::byte>(padded_.data(), padded_.size());
    ++adapter_counters_.padded;
  }
  // Port::transmit drops (and counts) frames shorter than a header.
  transmit(fabric::Frame{bytes, fabric::realtime_now(), nullptr});
}

bool PcapBridge::on_deliver(const fabric::Frame& frame) {
  const fabric::MacAddress source = frame.source();
  if (!fabric::is_group(source)) lab_macs_.learn(0, source, this, options_.clock());
  if (pcap_inject(pcap_, frame.bytes.data(), frame.bytes.size()) < 0) {
    ++adapter_counters_.inject_errors;
    return false;
  }
  ++adapter_counters_.injected;
  return true;
}

const PcapBridge::AdapterCounters& PcapBridge::adapter_counters() {
  pcap_stat stats{};
  if (pcap_stats(pcap_, &stats) == 0) adapter_counters_.kernel_dropped = stats.ps_drop;
  return adapter_counters_;
}

}  // namespace twoostwo::captures
