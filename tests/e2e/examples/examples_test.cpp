// The labs of examples/ end to end: each file, copied into a temporary
// directory (its captures go next to it, never into the source tree), is
// brought up by `twoostwo up` on real guests and checked the same way:
//
// - every node comes up ready, every link has a capture file;
// - each node pings every address of the lab that is not its own (one
//   `twoostwo exec` per node), and exactly the addresses it should reach
//   answer, with the TTL of the hops between (routed: 63 through the router);
// - the per-link captures, read by tshark, hold each exchange's requests and
//   replies on every link it crossed (on the vlans trunk tagged with its
//   VLAN) and on no other, and every NIC's frames stay in its segment;
// - a monitor killed with SIGKILL is reported, the rest still reach each
//   other and no longer the dead node;
// - `down` leaves no process and complete captures.
//
// What each lab should do is written here, independently of the loader:
// its segments (broadcast domains) with their NICs and the trunks between
// switches, and which node routes between them. One typed test suite per
// example, Example/NAME with NAME's '-' written '_'; CTest runs each as its
// own test (e2e_examples.NAME), so each lab boots once for all its checks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/cli.h"
#include "tests/support/guest.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;
using namespace twoostwo::testing;  // CliLab, CliRun, alive, node_status, tshark, ...

// ---- What the labs are ----------------------------------------------------

struct Nic {
  std::string node, ip, name = "eth0";
  std::string end() const { return node + ":" + name; }  // its fabric port, one end of its link
};
// A link between two switches, named by one of its ends, and the VLAN tag
// the segment's frames carry on it.
struct Trunk {
  std::string end;
  int vlan;
};
// A broadcast domain: the NICs in it and the trunks it spans.
struct Segment {
  std::vector<Nic> nics{};
  std::vector<Trunk> trunks{};
};
struct LabModel {
  std::string name{};  // examples/NAME.yaml, whose lab is called NAME
  std::vector<Segment> segments{};
  std::string router{};  // the node that forwards between segments ("": none)
  std::string victim{};  // the node whose monitor is killed
};

// h1 10.0.0.1 ... hN 10.0.0.N.
std::vector<Nic> hosts(int n) {
  std::vector<Nic> out;
  for (int i = 1; i <= n; ++i) out.push_back({"h" + std::to_string(i), "10.0.0." + std::to_string(i)});
  return out;
}

const std::vector<LabModel>& examples() {
  static const std::vector<LabModel> all = {
      {.name = "two-hosts", .segments = {{.nics = {{"alice", "10.0.0.1"}, {"bob", "10.0.0.2"}}}}, .victim = "bob"},
      {.name = "star", .segments = {{.nics = hosts(8)}}, .victim = "h5"},
      {.name = "routed",
       .segments = {{.nics = {{"h1", "10.0.1.1"}, {"router", "10.0.1.254", "eth0"}}},
                    {.nics = {{"h2", "10.0.2.1"}, {"router", "10.0.2.254", "eth1"}}},
                    {.nics = {{"h3", "10.0.3.1"}, {"router", "10.0.3.254", "eth2"}}}},
       .router = "router",
       .victim = "h3"},
      // Both VLANs span both switches through the trunk sw1:up - sw2:up.
      {.name = "vlans",
       .segments = {{.nics = {{"red1", "10.0.0.1"}, {"red2", "10.0.0.2"}}, .trunks = {{"sw1:up", 10}}},
                    {.nics = {{"blue1", "10.0.0.3"}, {"blue2", "10.0.0.4"}}, .trunks = {{"sw1:up", 20}}}},
       .victim = "blue2"},
      {.name = "isa-and-pci", .segments = {{.nics = {{"isa", "10.0.0.1"}, {"pci", "10.0.0.2"}}}}, .victim = "pci"},
  };
  return all;
}

std::vector<std::string> nodes_of(const LabModel& ex) {
  std::vector<std::string> out;
  for (const Segment& s : ex.segments) {
    for (const Nic& n : s.nics) {
      if (std::find(out.begin(), out.end(), n.node) == out.end()) out.push_back(n.node);
    }
  }
  return out;
}

// Where the link of a NIC or trunk end is crossed, with its VLAN tag (0: untagged).
struct Crossing {
  std::string end;
  int vlan = 0;
};

// One ping: from a node to an address, and what should happen.
struct Probe {
  std::string from{}, from_ip{}, to_ip{};
  bool reaches = false;
  int ttl = 0;                   // of the reply
  std::vector<Crossing> path{};  // the links its requests and replies cross
};

const Nic* member(const Segment& s, const std::string& node) {
  for (const Nic& n : s.nics) {
    if (n.node == node) return &n;
  }
  return nullptr;
}

// From `a` to `b` within segment `s`: a's link, the trunks, b's link.
std::vector<Crossing> across(const Segment& s, const Nic& a, const Nic& b) {
  std::vector<Crossing> path{{a.end()}};
  for (const Trunk& t : s.trunks) path.push_back({t.end, t.vlan});
  path.push_back({b.end()});
  return path;
}

Probe probe(const LabModel& ex, const std::string& from, const Segment& to_segment, const Nic& to) {
  Probe p{.from = from, .to_ip = to.ip};
  if (const Nic* own = member(to_segment, from)) {  // same segment: direct
    p.from_ip = own->ip;
    p.reaches = true;
    p.ttl = 64;
    p.path = across(to_segment, *own, to);
    return p;
  }
  for (const Segment& s : ex.segments) {
    const Nic* own = member(s, from);
    if (own == nullptr) continue;
    p.from_ip = own->ip;
    const Nic* in = ex.router.empty() ? nullptr : member(s, ex.router);
    const Nic* out = ex.router.empty() ? nullptr : member(to_segment, ex.router);
    if (in == nullptr || out == nullptr) return p;  // another broadcast domain, no router: unreachable
    p.reaches = true;
    p.path = across(s, *own, *in);
    if (to.node == ex.router) {  // the router answers for all its addresses
      p.ttl = 64;
    } else {
      p.ttl = 63;
      const auto beyond = across(to_segment, *out, to);
      p.path.insert(p.path.end(), beyond.begin(), beyond.end());
    }
    return p;
  }
  return p;
}

// Every node to every address that is not its own.
std::vector<Probe> probes(const LabModel& ex) {
  std::vector<Probe> out;
  for (const std::string& from : nodes_of(ex)) {
    for (const Segment& s : ex.segments) {
      for (const Nic& to : s.nics) {
        if (to.node != from) out.push_back(probe(ex, from, s, to));
      }
    }
  }
  return out;
}

std::string describe(const Probe& p) { return p.from + " (" + p.from_ip + ") -> " + p.to_ip; }

// ---- Pings in the guests --------------------------------------------------

struct Ping {
  int status = -1;  // ping's exit status (-1: no result)
  int ttl = 0;      // of the reply (0: none)
};

// Pings `targets` from `node`, all at once in one `twoostwo exec`: one echo
// request each, a second one if the first got no reply (the first may wait
// for ARP). Keyed by target.
std::map<std::string, Ping> ping_from(const CliLab& lab, const std::string& node,
                                      const std::vector<std::string>& targets, std::string* transcript) {
  std::string list;
  for (const std::string& t : targets) list += " " + t;
  const std::string script = "for t in" + list +
                             "; do { (ping -c 1 -W 2 $t || ping -c 1 -W 2 $t) > /tmp/ping.$t 2>&1;"
                             " echo \"@@ping $t $?\" >> /tmp/ping.$t; } & done; wait; cat /tmp/ping.*; rm -f /tmp/ping.*";
  const CliRun r = lab.run("exec --timeout 60 " + node + " -- " + sh_quote(script));
  *transcript += "--- " + node + " (exit status " + std::to_string(r.status) + ")\n" + r.out;
  std::map<std::string, Ping> out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string first, target;
    words >> first;
    if (first == "@@ping") {
      words >> target >> out[target].status;
    } else if (line.rfind("64 bytes from ", 0) == 0 && line.find(" ttl=") != std::string::npos) {
      target = line.substr(14, line.find(':') - 14);
      out[target].ttl = std::stoi(line.substr(line.find(" ttl=") + 5));
    }
  }
  return out;
}

// Runs `wanted` (grouped by source node, one exec each) and checks each
// result; if one is wrong, the guests' output is added to the failures.
void run_and_check(const CliLab& lab, const std::vector<Probe>& wanted) {
  const ::testing::TestResult* result = ::testing::UnitTest::GetInstance()->current_test_info()->result();
  const int failures_before = result->total_part_count();
  std::map<std::string, std::vector<const Probe*>> by_node;
  for (const Probe& p : wanted) by_node[p.from].push_back(&p);
  std::string transcript;
  for (const auto& [node, list] : by_node) {
    std::vector<std::string> targets;
    for (const Probe* p : list) targets.push_back(p->to_ip);
    auto results = ping_from(lab, node, targets, &transcript);
    for (const Probe* p : list) {
      const Ping r = results[p->to_ip];
      if (p->reaches) {
        EXPECT_EQ(r.status, 0) << describe(*p) << " should answer";
        EXPECT_EQ(r.ttl, p->ttl) << describe(*p) << ": TTL of the reply";
      } else {
        EXPECT_EQ(r.status, 1) << describe(*p) << " should not answer (ping's status without a reply)";
        EXPECT_EQ(r.ttl, 0) << describe(*p) << " should not answer";
      }
    }
  }
  if (result->total_part_count() > failures_before) ADD_FAILURE() << "the guests said:\n" << transcript;
}

// ---- Captures -------------------------------------------------------------

struct Frame {
  std::string src_mac, vlan, ip_src, ip_dst, icmp_type;  // "" where the frame has none
};
using Captures = std::map<std::string, std::vector<Frame>>;  // by link name

Captures read_captures(const json& status) {
  Captures out;
  for (const auto& l : status["links"]) {
    const CliRun r = tshark(
        l["capture"].get<std::string>(),
        "-T fields -E occurrence=f -e eth.src -e vlan.id -e ip.src -e ip.dst -e icmp.type");
    auto& frames = out[l["name"].get<std::string>()];
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
      Frame f;
      std::istringstream fields(line);
      std::getline(fields, f.src_mac, '\t');
      std::getline(fields, f.vlan, '\t');
      std::getline(fields, f.ip_src, '\t');
      std::getline(fields, f.ip_dst, '\t');
      std::getline(fields, f.icmp_type, '\t');
      frames.push_back(f);
    }
  }
  return out;
}

// The name of the link that has `end` ("h1:eth0", "sw1:up") at one end.
std::string link_at(const json& status, const std::string& end) {
  for (const auto& l : status["links"]) {
    if (l["a"] == end || l["b"] == end) return l["name"];
  }
  return "";
}

std::string vlan_text(int vlan) { return vlan == 0 ? "" : std::to_string(vlan); }

// ICMP messages of `type` from `src` to `dst` with tag `vlan` ("": untagged; nullopt: any).
int count_icmp(const std::vector<Frame>& frames, const std::string& src, const std::string& dst,
               const std::string& type, const std::optional<std::string>& vlan) {
  return static_cast<int>(std::count_if(frames.begin(), frames.end(), [&](const Frame& f) {
    return f.ip_src == src && f.ip_dst == dst && f.icmp_type == type && (!vlan || f.vlan == *vlan);
  }));
}

// What is wrong with `captures` for probe `p`: its requests (type 8) and
// replies (type 0) must be on each link of its path, with that link's tag,
// and no ICMP between its two addresses anywhere else.
std::vector<std::string> capture_errors(const json& status, const Captures& captures, const Probe& p) {
  std::map<std::string, std::string> tag_on;  // link -> the tag it should carry
  for (const Crossing& c : p.path) tag_on[link_at(status, c.end)] = vlan_text(c.vlan);
  std::vector<std::string> errors;
  for (const auto& [link, frames] : captures) {
    const auto tag = tag_on.find(link);
    int between = 0;
    for (const Frame& f : frames) {
      between += !f.icmp_type.empty() && ((f.ip_src == p.from_ip && f.ip_dst == p.to_ip) ||
                                          (f.ip_src == p.to_ip && f.ip_dst == p.from_ip));
    }
    if (tag == tag_on.end()) {
      if (between != 0) errors.push_back(describe(p) + ": " + std::to_string(between) + " ICMP frames on " + link);
      continue;
    }
    const int requests = count_icmp(frames, p.from_ip, p.to_ip, "8", tag->second);
    const int replies = count_icmp(frames, p.to_ip, p.from_ip, "0", tag->second);
    const std::string as = tag->second.empty() ? " untagged" : " tagged " + tag->second;
    if (requests == 0) errors.push_back(describe(p) + ": no echo request" + as + " on " + link);
    if (replies == 0) errors.push_back(describe(p) + ": no echo reply" + as + " on " + link);
    const int any_tag = count_icmp(frames, p.from_ip, p.to_ip, "8", std::nullopt) +
                        count_icmp(frames, p.to_ip, p.from_ip, "0", std::nullopt);
    if (requests + replies != any_tag) errors.push_back(describe(p) + ": ICMP not" + as + " on " + link);
  }
  return errors;
}

// One request on a connected control socket; the first line that comes back
// (waiting 10 s at most).
std::string exchange(int fd, const std::string& request) {
  const timeval patience{.tv_sec = 10, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  const std::string bytes = request + "\n";
  if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) return "";
  std::string line;
  for (char c; ::read(fd, &c, 1) == 1 && c != '\n';) line += c;
  return line;
}

// ---- The suite ------------------------------------------------------------

// One type per entry of examples() (and per CASES name in tests/CMakeLists.txt).
template <int N>
struct ExampleAt {
  static const LabModel& get() { return examples()[N]; }
};
using AllExamples = ::testing::Types<ExampleAt<0>, ExampleAt<1>, ExampleAt<2>, ExampleAt<3>, ExampleAt<4>>;
struct ExampleName {
  template <class T>
  static std::string GetName(int) {
    std::string name = T::get().name;
    std::replace(name.begin(), name.end(), '-', '_');  // '-' starts gtest_filter's negative patterns
    return name;
  }
};

template <class T>
class Example : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!guest_image_present()) return;
    lab_ = new CliLab(ex().name);
    const std::string file = ex().name + ".yaml";
    std::error_code ec;  // a missing file makes `up` fail, and every test with it
    fs::copy_file(fs::path(TWOOSTWO_SOURCE_DIR) / "examples" / file, lab_->dir() / file, ec);
    up_ = new CliRun(lab_->up(file));
  }
  static void TearDownTestSuite() {
    delete up_;
    delete lab_;  // brings the lab down if a test did not
    delete captured_;
    up_ = nullptr;
    lab_ = nullptr;
    pinged_ = false;
    captured_ = nullptr;
  }
  void SetUp() override {
    require_guest_image();
    ASSERT_EQ(up_->status, 0) << up_->out;
  }
  static const LabModel& ex() { return T::get(); }

  // Every probe, run once for the tests that need it (the first of them
  // checks the results).
  static void ping_all() {
    if (pinged_) return;
    pinged_ = true;
    run_and_check(*lab_, probes(ex()));
  }
  // The captures after ping_all(), read once: the files are flushed every
  // 200 ms, so they are read until every exchange is in them, or for 10 s.
  struct Captured {
    json status{};
    Captures captures{};
    std::vector<std::string> errors{};  // capture_errors() of every probe
  };
  static const Captured& captured() {
    if (captured_ != nullptr) return *captured_;
    ping_all();
    captured_ = new Captured{.status = lab_->status()};
    for (int attempt = 0; attempt < 20; ++attempt) {
      std::this_thread::sleep_for(500ms);
      captured_->captures = read_captures(captured_->status);
      captured_->errors.clear();
      for (const Probe& p : probes(ex())) {
        const auto e = capture_errors(captured_->status, captured_->captures, p);
        captured_->errors.insert(captured_->errors.end(), e.begin(), e.end());
      }
      if (captured_->errors.empty()) break;
    }
    return *captured_;
  }

  inline static CliLab* lab_ = nullptr;
  inline static CliRun* up_ = nullptr;
  inline static bool pinged_ = false;
  inline static Captured* captured_ = nullptr;
};

TYPED_TEST_SUITE(Example, AllExamples, ExampleName);

TYPED_TEST(Example, ComesUpWithEveryNodeReadyAndEveryLinkCaptured) {
  const LabModel& ex = this->ex();
  const std::string& out = this->up_->out;
  for (const std::string& node : nodes_of(ex)) {
    EXPECT_NE(out.find("\n" + node + ": ready ("), std::string::npos) << node << "\n" << out;
  }
  EXPECT_NE(out.find("lab '" + ex.name + "' is up"), std::string::npos) << out;
  const json s = this->lab_->status();
  ASSERT_FALSE(s.is_discarded());
  for (const std::string& node : nodes_of(ex)) {
    EXPECT_EQ(node_status(s, node)["state"], "ready") << node;
  }
  EXPECT_EQ(s["nodes"].size(), nodes_of(ex).size());
  size_t links = 0;
  std::set<std::string> trunks;  // a trunk serves several segments
  for (const Segment& seg : ex.segments) {
    links += seg.nics.size();
    for (const Trunk& t : seg.trunks) trunks.insert(t.end);
  }
  EXPECT_EQ(s["links"].size(), links + trunks.size());
  // Captures go next to the file: into the temporary directory.
  const fs::path captures = this->lab_->dir() / "captures";
  ASSERT_TRUE(fs::is_directory(captures));
  EXPECT_TRUE(fs::equivalent(s["captures"].get<std::string>(), captures)) << s["captures"];
  for (const auto& l : s["links"]) {
    ASSERT_TRUE(l.contains("capture")) << l.dump();
    const fs::path file = l["capture"].get<std::string>();
    EXPECT_TRUE(fs::exists(file)) << l.dump();
    EXPECT_TRUE(fs::equivalent(file.parent_path(), captures)) << l.dump();
  }
}

TYPED_TEST(Example, EachNodeReachesExactlyWhatItShould) {
  this->ping_all();  // checks each result
}

TYPED_TEST(Example, CapturesShowEachExchangeOnTheLinksItCrossedOnly) {
  for (const std::string& e : this->captured().errors) ADD_FAILURE() << e;
}

TYPED_TEST(Example, EveryNicsFramesStayInItsSegment) {
  const json& s = this->captured().status;
  const Captures& captures = this->captured().captures;
  for (const Segment& seg : this->ex().segments) {
    std::map<std::string, std::string> tag_on;  // the segment's links -> the tag its frames carry there
    for (const Nic& n : seg.nics) tag_on[link_at(s, n.end())] = "";
    for (const Trunk& t : seg.trunks) tag_on[link_at(s, t.end)] = vlan_text(t.vlan);
    for (const Nic& n : seg.nics) {
      const json node = node_status(s, n.node);
      const std::string mac = [&] {
        for (const auto& nic : node["nics"]) {
          if (nic["name"] == n.name) return nic["mac"].get<std::string>();
        }
        return std::string();
      }();
      ASSERT_FALSE(mac.empty()) << n.end();
      int seen = 0;
      for (const auto& [link, frames] : captures) {
        const auto tag = tag_on.find(link);
        int outside = 0;
        for (const Frame& f : frames) {
          if (f.src_mac != mac) continue;
          ++seen;
          outside += tag == tag_on.end() || f.vlan != tag->second;
        }
        EXPECT_EQ(outside, 0) << n.end() << " (" << mac << "): frames on " << link
                              << (tag == tag_on.end() ? ", outside its segment" : " with the wrong VLAN tag");
      }
      EXPECT_GT(seen, 0) << n.end() << " (" << mac << ") sent nothing";
    }
  }
}

// Last but one: kills the victim's monitor.
TYPED_TEST(Example, YKilledMonitorIsReportedAndTheRestStillReachEachOther) {
  const LabModel& ex = this->ex();
  this->ping_all();
  const json before = this->lab_->status();
  const int victim = node_status(before, ex.victim)["pid"].get<int>();
  ASSERT_TRUE(alive(victim));
  // A control client connected while a monitor dies gets its answer and
  // nothing else (the supervisor once wrote its report of the exit to any
  // descriptor that had taken the number of its closed progress pipe).
  const int client = connect_unix(this->lab_->control_socket());
  ASSERT_GE(client, 0);
  ::kill(victim, SIGKILL);
  const json s = this->lab_->status_once_exited(ex.victim);
  const std::string line = exchange(client, R"({"cmd":"status"})");
  ::close(client);
  const json answer = json::parse(line, nullptr, false);
  EXPECT_TRUE(!answer.is_discarded() && answer.value("ok", false)) << "a held control connection read: " << line;
  EXPECT_EQ(node_status(s, ex.victim)["state"], "exited");
  EXPECT_EQ(node_status(s, ex.victim)["exit"], "killed by signal 9 (Killed)");
  for (const std::string& node : nodes_of(ex)) {
    if (node == ex.victim) continue;
    EXPECT_EQ(node_status(s, node)["state"], "ready") << node;
  }
  // The rest still reach each other; a node that reached the victim does not now.
  std::vector<Probe> again;
  std::vector<std::string> victim_ips;
  for (const Segment& seg : ex.segments) {
    if (const Nic* n = member(seg, ex.victim)) victim_ips.push_back(n->ip);
  }
  bool lost = false;
  for (Probe p : probes(ex)) {
    if (!p.reaches || p.from == ex.victim) continue;
    const bool to_victim = std::find(victim_ips.begin(), victim_ips.end(), p.to_ip) != victim_ips.end();
    if (to_victim && lost) continue;
    if (to_victim) {
      p.reaches = false;
      lost = true;
    }
    again.push_back(p);
  }
  ASSERT_TRUE(lost);
  run_and_check(*this->lab_, again);
}

// Last: brings the lab down.
TYPED_TEST(Example, ZDownLeavesNoProcessAndCompleteCaptures) {
  const LabModel& ex = this->ex();
  CliLab& lab = *this->lab_;
  const json s = lab.status();
  const CliRun down = lab.run("down");
  EXPECT_EQ(down.status, 0) << down.out;
  EXPECT_NE(down.out.find("lab '" + ex.name + "' is down"), std::string::npos) << down.out;
  EXPECT_FALSE(lab.running());
  for (const auto& n : s["nodes"]) {
    EXPECT_FALSE(alive(n["pid"].get<int>())) << n["name"] << "'s monitor is gone";
  }
  bool supervisor = true;
  for (int i = 0; i < 50 && (supervisor = alive(lab.supervisor_pid())); ++i) std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(supervisor) << "the supervisor (pid " << lab.supervisor_pid() << ") ended";
  for (const auto& l : s["links"]) {
    const std::string file = l["capture"];
    EXPECT_EQ(tshark(file).status, 0) << file << " is a complete capture";
  }
  const CliRun after = lab.run("status");
  EXPECT_EQ(after.status, 1);
  EXPECT_NE(after.out.find("no lab is running"), std::string::npos) << after.out;
}

}  // namespace
