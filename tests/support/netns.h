// Network namespaces with a veth pair, made and removed by a test (the
// project's safety rule: bridge only to interfaces a test created itself).
//
// VethNamespace "t2t-<pid>-<tag>" holds one end of a veth pair
// ("t2t<pid><tag>p", with the address given); the other end ("t2t<pid><tag>")
// stays in the root namespace, up and without addresses, for a
// captures::PcapBridge. IPv6 is off in the namespace and on the root end (no
// router solicitations or MLD reports: the only frames on the wire are the
// test's), and offloads are off on both ends, so frames on the wire are real
// Ethernet frames (no 64 KiB TSO/GSO segments, checksums filled in).
// Destruction deletes the namespace, which takes the pair with it.
#pragma once

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

namespace twoostwo::testing {

/// Whether this thread's effective (or permitted) set holds `cap`.
inline bool has_capability(int cap, bool effective = true) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  const uint32_t set = effective ? data[cap / 32].effective : data[cap / 32].permitted;
  return (set & (1u << (cap % 32))) != 0;
}

/// Raise or lower one capability in this thread's effective set.
inline bool set_effective_capability(int cap, bool on) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  if (on) {
    data[cap / 32].effective |= 1u << (cap % 32);
  } else {
    data[cap / 32].effective &= ~(1u << (cap % 32));
  }
  return ::syscall(SYS_capset, &header, data) == 0;
}

/// Root with CAP_NET_ADMIN (namespaces, veth) and CAP_NET_RAW (capture).
inline bool can_make_namespaces() {
  return ::geteuid() == 0 && has_capability(CAP_NET_ADMIN) && has_capability(CAP_NET_RAW);
}
inline constexpr const char* kNeedsRoot =
    "needs root (CAP_NET_ADMIN to make network namespaces and veth pairs, CAP_NET_RAW to capture); run the suite "
    "as root";

/// The legacy ethtool ioctl (what `ethtool -K` does), so tests need no
/// ethtool binary.
inline bool set_offload(const std::string& ifname, uint32_t command, uint32_t value) {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ethtool_value ev{command, value};
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&ev);
  const bool ok = ::ioctl(s, SIOCETHTOOL, &ifr) == 0;
  ::close(s);
  return ok;
}

/// Run a shell command; its exit status (stderr goes to the test's log).
inline int shell(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

class VethNamespace {
 public:
  /// Make namespace `tag` whose veth end has `cidr` (e.g. "10.99.0.1/24").
  /// Failures are reported as test failures; check ok().
  VethNamespace(const std::string& tag, const std::string& cidr)
      : ns_("t2t-" + std::to_string(::getpid()) + "-" + tag),
        root_end_("t2t" + std::to_string(::getpid()) + tag),
        ns_end_(root_end_ + "p"),
        address_(cidr.substr(0, cidr.find('/'))) {
    EXPECT_LT(ns_end_.size(), size_t{IFNAMSIZ});
    EXPECT_EQ(if_nametoindex(root_end_.c_str()), 0u) << root_end_ << " exists already";
    ok_ = step("ip netns add " + ns_) &&
          step("ip netns exec " + ns_ +
               " sh -c 'for f in all default; do echo 1 > /proc/sys/net/ipv6/conf/$f/disable_ipv6; done'") &&
          step("ip link add " + root_end_ + " type veth peer name " + ns_end_);
    made_ = true;
    if (!ok_) return;
    std::ofstream("/proc/sys/net/ipv6/conf/" + root_end_ + "/disable_ipv6") << "1";
    for (const auto& end : {root_end_, ns_end_}) {
      for (const uint32_t command : {ETHTOOL_STXCSUM, ETHTOOL_STSO, ETHTOOL_SGSO, ETHTOOL_SGRO}) {
        EXPECT_TRUE(set_offload(end, command, 0)) << end << " offload " << command;
      }
    }
    ok_ = step("ip link set " + ns_end_ + " netns " + ns_) && step("ip -n " + ns_ + " link set lo up") &&
          step("ip -n " + ns_ + " addr add " + cidr + " dev " + ns_end_) &&
          step("ip -n " + ns_ + " link set " + ns_end_ + " up") && step("ip link set " + root_end_ + " up");
  }
  ~VethNamespace() {
    if (!made_) return;
    shell("ip netns del " + ns_ + " 2>/dev/null");  // takes the veth pair with it
    if (if_nametoindex(root_end_.c_str()) != 0) shell("ip link del " + root_end_ + " 2>/dev/null");
    EXPECT_EQ(if_nametoindex(root_end_.c_str()), 0u) << root_end_ << " left behind";
  }
  VethNamespace(const VethNamespace&) = delete;
  VethNamespace& operator=(const VethNamespace&) = delete;

  bool ok() const { return ok_; }
  /// "t2t-<pid>-<tag>", for `ip netns exec`.
  const std::string& ns() const { return ns_; }
  /// The root-namespace end, for the bridge.
  const std::string& root_end() const { return root_end_; }
  const std::string& ns_end() const { return ns_end_; }
  /// The namespace end's address, without the prefix.
  const std::string& address() const { return address_; }
  /// `command` run inside the namespace through sh -c (quote it yourself).
  std::string exec(const std::string& command) const { return "ip netns exec " + ns_ + " " + command; }

 private:
  bool step(const std::string& command) {
    const int status = shell(command);
    EXPECT_EQ(status, 0) << command;
    return status == 0;
  }

  std::string ns_, root_end_, ns_end_, address_;
  bool made_ = false, ok_ = false;
};

}  // namespace twoostwo::testing
