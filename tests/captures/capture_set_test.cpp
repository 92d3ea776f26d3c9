// CaptureSet: one file per link of a fabric, flushed periodically, complete
// on stop; and a client process killed mid-stream leaves the fabric running
// and its capture readable to the last frame.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include "captures/capture_set.h"
#include "capture_test_support.h"
#include "switch/fabric.h"

namespace twoostwo::captures {
namespace {

using namespace testing;
using fabric::Timestamp;

constexpr Timestamp kBase{1'700'000'000'000'000'000};

struct Pair {
  ScriptPort* a;
  ScriptPort* b;
  fabric::Link* link;
};

Pair add_pair(fabric::Fabric& fab, const std::string& link_name, const std::string& prefix) {
  auto a = fab.add_port(std::make_unique<ScriptPort>(prefix + "-a"));
  auto b = fab.add_port(std::make_unique<ScriptPort>(prefix + "-b"));
  EXPECT_TRUE(a && b);
  auto link = fab.connect(link_name, **a, **b);
  EXPECT_TRUE(link) << link.error().message;
  return {static_cast<ScriptPort*>(*a), static_cast<ScriptPort*>(*b), *link};
}

TEST(CaptureSet, EveryLinkInItsOwnFileCompleteOnStop) {
  ASSERT_TRUE(readers_installed());
  boost::asio::io_context io;
  fabric::Fabric fab(io);
  const std::vector<std::string> names = {"l1", "a/b", "..", "with space", "ünï", std::string(300, 'q')};
  std::vector<Pair> pairs;
  for (size_t i = 0; i < names.size(); ++i) pairs.push_back(add_pair(fab, names[i], fmt::format("p{}", i)));
  TempDir dir;
  const auto captures_dir = dir.path() / "lab" / "captures";  // made by start()
  auto set = CaptureSet::start(fab, captures_dir);
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ((*set)->size(), names.size());

  // Link i carries i + 1 frames each way.
  for (size_t i = 0; i < pairs.size(); ++i) {
    for (uint32_t n = 0; n <= i; ++n) {
      pairs[i].a->send(make_frame(mac(2), mac(1), 60, n), kBase + Timestamp(2 * n));
      pairs[i].b->send(make_frame(mac(1), mac(2), 61, n), kBase + Timestamp(2 * n + 1));
    }
  }
  ASSERT_TRUE((*set)->stop());
  EXPECT_FALSE((*set)->running());

  for (size_t i = 0; i < names.size(); ++i) {
    SCOPED_TRACE("link '" + names[i] + "'");
    const auto path = (*set)->path_of(names[i]);
    ASSERT_TRUE(path);
    EXPECT_EQ(*path, captures_dir / capture_file_name(names[i]));
    const TsharkResult r = read_with_tshark(*path);
    ASSERT_EQ(r.status, 0) << r.err;
    ASSERT_EQ(r.frames.size(), 2 * (i + 1));
    for (size_t k = 0; k < r.frames.size(); ++k) {
      EXPECT_EQ(r.frames[k].length, k % 2 == 0 ? 60u : 61u);  // a→b, b→a, in the order they crossed
      EXPECT_EQ(r.frames[k].time_epoch, epoch_text(kBase + Timestamp(static_cast<int64_t>(k))));
    }
  }
  // Only the captures are in the directory.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(captures_dir)) ++files;
  EXPECT_EQ(files, names.size());
}

TEST(CaptureSet, PeriodicFlushMakesFramesReadableWhileTheLabRuns) {
  ASSERT_TRUE(readers_installed());
  boost::asio::io_context io;
  fabric::Fabric fab(io);
  Pair p = add_pair(fab, "l1", "p");
  TempDir dir;
  auto set = CaptureSet::start(fab, dir.path(), CaptureSetOptions{std::chrono::milliseconds(50)});
  ASSERT_TRUE(set) << set.error().message;
  const auto path = *(*set)->path_of("l1");

  for (uint32_t n = 0; n < 5; ++n) p.a->send(make_frame(mac(2), mac(1), 100, n));
  // Still in the writer's buffer: the file holds only its header.
  EXPECT_EQ(std::filesystem::file_size(path), kFileHeaderSize);
  const uint64_t ticks = (*set)->flushes();
  ASSERT_TRUE(pump_until(io, [&] { return (*set)->flushes() > ticks; }, 5s));
  TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.frames.size(), 5u);

  for (uint32_t n = 5; n < 8; ++n) p.b->send(make_frame(mac(1), mac(2), 100, n));
  const uint64_t later = (*set)->flushes();
  ASSERT_TRUE(pump_until(io, [&] { return (*set)->flushes() > later; }, 5s));
  r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.frames.size(), 8u);
  for (size_t k = 0; k < 8; ++k) EXPECT_EQ(r.frames[k].data.substr(0, 8), fmt::format("{:08x}", k));
  EXPECT_TRUE((*set)->running());
  EXPECT_FALSE((*set)->error());
}

TEST(CaptureSet, LinksAddedLaterAndErrors) {
  boost::asio::io_context io;
  fabric::Fabric fab(io);
  add_pair(fab, "l1", "p");
  TempDir dir;

  auto zero = CaptureSet::start(fab, dir.path(), CaptureSetOptions{std::chrono::milliseconds(0)});
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().message.find("flush interval"), std::string::npos) << zero.error().message;

  write_file(dir.path() / "plain-file", "x");
  auto not_dir = CaptureSet::start(fab, dir.path() / "plain-file");
  ASSERT_FALSE(not_dir);
  EXPECT_NE(not_dir.error().message.find("plain-file"), std::string::npos) << not_dir.error().message;

  auto set = CaptureSet::start(fab, dir.path() / "caps");
  ASSERT_TRUE(set) << set.error().message;
  Pair late = add_pair(fab, "late", "q");
  auto added = (*set)->add(*late.link);
  ASSERT_TRUE(added) << added.error().message;
  EXPECT_EQ(*added, dir.path() / "caps" / "late.pcap");
  auto again = (*set)->add(*late.link);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("link 'late'"), std::string::npos) << again.error().message;

  late.a->send(make_frame(mac(2), mac(1), 60, 0));
  ASSERT_TRUE((*set)->stop());
  EXPECT_EQ((*set)->find("late")->writer().counters().frames, 1u);
  auto after_stop = (*set)->add(*late.link);
  ASSERT_FALSE(after_stop);
  EXPECT_NE(after_stop.error().message.find("stopped"), std::string::npos) << after_stop.error().message;
}

// A client process (standing for a monitor) streams frames into the fabric
// over its seqpacket socket and is SIGKILLed mid-stream.
TEST(CaptureSet, KilledClientLeavesFabricRunningAndCaptureReadableToItsLastFrame) {
  ASSERT_TRUE(readers_installed());
  boost::asio::io_context io;
  fabric::Fabric fab(io);
  auto sw = fab.add_switch("sw");
  ASSERT_TRUE(sw) << sw.error().message;
  std::map<std::string, fabric::SocketPort*> clients;
  for (const char* name : {"victim", "peer", "other"}) {
    auto port = fab.add_seqpacket_port(name);
    ASSERT_TRUE(port) << port.error().message;
    auto sw_port = (*sw)->add_port(name);
    ASSERT_TRUE(sw_port) << sw_port.error().message;
    ASSERT_TRUE(fab.connect(std::string(name) + "-sw", **port, **sw_port));
    clients[name] = *port;
  }
  TempDir dir;
  // A long interval: only the set's own flush when the peer closes can make
  // the file complete in time.
  auto set = CaptureSet::start(fab, dir.path(), CaptureSetOptions{std::chrono::milliseconds(60'000)});
  ASSERT_TRUE(set) << set.error().message;

  // Added after the set's own callback, so it runs after that flush.
  bool closed = false;
  clients["victim"]->on_peer_closed([&] { closed = true; });

  const int victim_fd = clients["victim"]->take_peer_fd();
  const int peer_fd = clients["peer"]->take_peer_fd();
  const int other_fd = clients["other"]->take_peer_fd();
  ASSERT_GE(victim_fd, 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The client: broadcast frames numbered 0, 1, 2… until killed.
    ::close(peer_fd);
    ::close(other_fd);
    std::vector<std::byte> frame = make_frame(kBroadcast, mac(0x51), 60, 0);
    for (uint32_t seq = 0;;) {
      for (size_t i = 0; i < 4; ++i) frame[14 + i] = std::byte((seq >> (24 - 8 * i)) & 0xff);
      if (::send(victim_fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size())) ++seq;
      ::usleep(200);
    }
  }
  ::close(victim_fd);
  fabric::SocketPort* victim = clients["victim"];
  ASSERT_TRUE(pump_until(io, [&] { return victim->counters().tx_frames >= 300; }, 20s))
      << "the client sent " << victim->counters().tx_frames << " frames";
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status));
  ASSERT_TRUE(pump_until(io, [&] { return closed; }, 10s)) << "the fabric saw the client's socket close";
  EXPECT_FALSE((*set)->error().has_value());
  EXPECT_TRUE(victim->peer_closed());
  EXPECT_FALSE(victim->up());

  // Readable to its last frame, right now (no stop, no timer tick).
  const uint64_t sent = victim->counters().tx_frames;
  const fabric::Link* link = fab.find_link("victim-sw");
  ASSERT_NE(link, nullptr);
  EXPECT_EQ(link->counters().a_to_b_frames, sent);
  const auto path = *(*set)->path_of("victim-sw");
  TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("cut short"), std::string::npos) << r.err;
  ASSERT_EQ(r.frames.size(), sent);
  for (size_t k = 0; k < r.frames.size(); ++k) {
    ASSERT_EQ(r.frames[k].data.substr(0, 8), fmt::format("{:08x}", k)) << "frame " << k + 1;
    ASSERT_EQ(r.frames[k].src, fabric::format_mac(mac(0x51)));
  }

  // The fabric and the other clients go on: peer → other through the switch.
  auto drain = [](int fd) {
    std::vector<std::vector<std::byte>> got;
    std::vector<std::byte> buf(2048);
    for (;;) {
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      got.emplace_back(buf.begin(), buf.begin() + n);
    }
    return got;
  };
  pump_for(io, 50ms);
  drain(other_fd);
  drain(peer_fd);
  const auto hello = make_frame(mac(0x0e), mac(0x0d), 60, 0xabcdef);
  ASSERT_EQ(::send(peer_fd, hello.data(), hello.size(), MSG_NOSIGNAL), static_cast<ssize_t>(hello.size()));
  bool arrived = false;
  ASSERT_TRUE(pump_until(io, [&] {
    for (const auto& f : drain(other_fd)) arrived = arrived || f == hello;
    return arrived;
  }, 5s)) << "a frame from peer reached other after the victim died";
  const auto reply = make_frame(mac(0x0d), mac(0x0e), 60, 0x123456);
  ASSERT_EQ(::send(other_fd, reply.data(), reply.size(), MSG_NOSIGNAL), static_cast<ssize_t>(reply.size()));
  arrived = false;
  ASSERT_TRUE(pump_until(io, [&] {
    for (const auto& f : drain(peer_fd)) arrived = arrived || f == reply;
    return arrived;
  }, 5s)) << "and back";

  // Stopping the lab leaves every capture complete. The victim's link holds
  // exactly the client's frames: what the switch flooded towards the dead
  // client never crossed it (a port without link partner does not
  // transmit); the down port dropped it.
  ASSERT_TRUE((*set)->stop());
  r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(link->counters().b_to_a_frames, 0u);
  ASSERT_EQ(r.frames.size(), sent);
  for (size_t k = 0; k < r.frames.size(); ++k) {
    EXPECT_EQ(r.frames[k].src, fabric::format_mac(mac(0x51))) << "frame " << k + 1;
  }
  EXPECT_GT(victim->counters().rx_dropped, 0u) << "peer's hello was flooded to the down port, which dropped it";
  const TsharkResult peer_capture = read_with_tshark(*(*set)->path_of("peer-sw"));
  ASSERT_EQ(peer_capture.status, 0) << peer_capture.err;
  EXPECT_GE(peer_capture.frames.size(), 2u);
  ::close(peer_fd);
  ::close(other_fd);
}

}  // namespace
}  // namespace twoostwo::captures
