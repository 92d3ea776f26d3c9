// Addresses a topology file writes: MAC addresses, IPv4/IPv6 addresses and
// CIDR prefixes (RFC 4632 for IPv4, RFC 4291 §2.3 for IPv6), parsed and
// printed without a socket or a resolver.
//
// Parsers return the value or an error text that names the input, e.g.
// "invalid MAC '02:00:00:00:00' (expected six hex bytes like 02:00:00:00:00:01)";
// the loader prefixes it with the file position and the element.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

namespace twoostwo::topology {

/// A MAC address, first octet first (as on the wire).
using MacAddress = std::array<uint8_t, 6>;

/// "02:2f:0a:1b:2c:00" (lowercase, colons).
std::string format_mac(const MacAddress& mac);

/// Six hex bytes separated by ':' or '-' ("52:54:00:12:34:56"). Errors: any
/// other shape, a multicast address (bit 0 of the first octet; a NIC's own
/// address must be unicast, IEEE 802-2014 §8.2), the all-zero address.
std::expected<MacAddress, std::string> parse_mac(std::string_view text);

/// The MAC a node's card gets when the topology names none: locally
/// administered (bit 1 of the first octet) and unicast, 02:2f, then the low
/// three bytes of the 32-bit FNV-1a hash of `node_name` (most significant
/// first), then `index` (the card's place, 0..3). This is the scheme of
/// twoostwo-vmm's own default (vmcore/nics.cpp default_mac(), with the VM
/// name), duplicated here because topology/ must not link vmcore; the lab
/// passes every MAC to the monitor explicitly anyway, so the two can never
/// disagree about a running card.
MacAddress derived_mac(std::string_view node_name, unsigned index);

/// An IPv4 or IPv6 address. IPv4 uses bytes[0..3]; the rest is zero.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};

  /// 4 or 16.
  unsigned size() const { return v6 ? 16u : 4u; }
  /// Bits in the address: 32 or 128.
  unsigned bits() const { return size() * 8; }
  auto operator<=>(const IpAddress&) const = default;
};

/// Dotted quad or RFC 5952 text ("10.0.0.1", "fd00::1").
std::string format_ip(const IpAddress& ip);

/// An address in the forms inet_pton(3) takes for AF_INET (four decimal
/// parts) or AF_INET6. Errors: anything else.
std::expected<IpAddress, std::string> parse_ip(std::string_view text);

/// An address with a prefix length: an interface address (10.0.0.1/24) or a
/// network (10.0.1.0/24), depending on where it is used.
struct Cidr {
  IpAddress address;
  unsigned prefix = 0;  // 0..32 (IPv4) or 0..128 (IPv6)

  /// The address with its host bits cleared.
  IpAddress network() const;
  /// True if `ip` has the same family and lies in this prefix.
  bool contains(const IpAddress& ip) const;
  /// True if the host bits are all zero.
  bool is_network() const { return network() == address; }
  /// IPv4 only: true if the host bits are all one and the prefix is below 31
  /// (a /31 or /32 has no broadcast address, RFC 3021).
  bool is_ipv4_broadcast() const;
  auto operator<=>(const Cidr&) const = default;
};

/// "10.0.0.1/24".
std::string format_cidr(const Cidr& cidr);

/// ADDRESS/PREFIX. Errors (each names `text`): no '/', a bad address, a
/// prefix that is not a decimal number within the family's width.
std::expected<Cidr, std::string> parse_cidr(std::string_view text);

}  // namespace twoostwo::topology
