#include "topology/addresses.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <charconv>

namespace twoostwo::topology {

std::string format_mac(const MacAddress& mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

std::expected<MacAddress, std::string> parse_mac(std::string_view text) {
  const auto bad = [&] {
    return std::unexpected(fmt::format("invalid MAC '{}' (expected six hex bytes like 02:00:00:00:00:01)", text));
  };
  if (text.size() != 17) return bad();
  MacAddress mac{};
  for (size_t i = 0; i < 6; ++i) {
    if (i > 0 && text[3 * i - 1] != ':' && text[3 * i - 1] != '-') return bad();
    unsigned v = 0;
    const char* first = text.data() + 3 * i;
    const auto [end, ec] = std::from_chars(first, first + 2, v, 16);
    if (ec != std::errc{} || end != first + 2) return bad();
    mac[i] = static_cast<uint8_t>(v);
  }
  if (mac[0] & 1) {
    return std::unexpected(
        fmt::format("MAC {} is a multicast address (bit 0 of the first byte is set)", format_mac(mac)));
  }
  if (mac == MacAddress{}) return std::unexpected(std::string("MAC 00:00:00:00:00:00 is not a card's address"));
  return mac;
}

MacAddress derived_mac(std::string_view node_name, unsigned index) {
  // 32-bit FNV-1a, as twoostwo-vmm's default_mac() (vmcore/nics.cpp).
  uint32_t h = 2166136261u;
  for (const char ch : node_name) {
    h ^= static_cast<uint8_t>(ch);
    h *= 16777619u;
  }
  return {0x02,
          0x2f,
          static_cast<uint8_t>(h >> 16),
          static_cast<uint8_t>(h >> 8),
          static_cast<uint8_t>(h),
          static_cast<uint8_t>(index)};
}

std::string format_ip(const IpAddress& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip.v6 ? AF_INET6 : AF_INET, ip.bytes.data(), buf, sizeof buf);
  return buf;
}

std::expected<IpAddress, std::string> parse_ip(std::string_view text) {
  const std::string s(text);
  IpAddress ip;
  if (s.find(':') != std::string::npos) {
    ip.v6 = true;
    if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) return ip;
  } else if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    return ip;
  }
  return std::unexpected(fmt::format("invalid IP address '{}'", text));
}

IpAddress Cidr::network() const {
  IpAddress n = address;
  for (unsigned i = 0; i < n.size(); ++i) {
    const unsigned first_bit = i * 8;
    if (first_bit >= prefix) {
      n.bytes[i] = 0;
    } else if (first_bit + 8 > prefix) {
      n.bytes[i] = static_cast<uint8_t>(n.bytes[i] & (0xFF << (8 - (prefix - first_bit))));
    }
  }
  return n;
}

bool Cidr::contains(const IpAddress& ip) const {
  if (ip.v6 != address.v6) return false;
  return Cidr{ip, prefix}.network() == network();
}

bool Cidr::is_ipv4_broadcast() const {
  if (address.v6 || prefix >= 31) return false;
  for (unsigned bit = prefix; bit < 32; ++bit) {
    if (!(address.bytes[bit / 8] & (0x80 >> (bit % 8)))) return false;
  }
  return true;
}

std::string format_cidr(const Cidr& cidr) { return fmt::format("{}/{}", format_ip(cidr.address), cidr.prefix); }

std::expected<Cidr, std::string> parse_cidr(std::string_view text) {
  const auto example = [&](bool v6) { return v6 ? "fd00::1/64" : "10.0.0.1/24"; };
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    const bool v6 = text.find(':') != std::string_view::npos;
    if (parse_ip(text)) {
      return std::unexpected(fmt::format("'{}' has no prefix length (write it like {})", text, example(v6)));
    }
    return std::unexpected(
        fmt::format("invalid CIDR '{}' (expected an address and a prefix length, like {})", text, example(false)));
  }
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) {
    return std::unexpected(
        fmt::format("invalid CIDR '{}': '{}' is not an IPv4 or IPv6 address", text, text.substr(0, slash)));
  }
  const std::string_view p = text.substr(slash + 1);
  unsigned prefix = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix, 10);
  if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || prefix > ip->bits()) {
    return std::unexpected(fmt::format("invalid CIDR '{}': the prefix length must be 0 to {}", text, ip->bits()));
  }
  return Cidr{*ip, prefix};
}

}  // namespace twoostwo::topology
