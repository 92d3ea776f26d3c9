// Golden captures: a scripted frame sequence on a link (both directions, set
// timestamps, sizes from the shortest header-only frame to a tagged-size
// 1518-byte one) is written by FileCapture and read back frame by frame by
// tshark: count, order, every byte, nanosecond timestamps, monotonic time.
#include <gtest/gtest.h>

#include <cstring>

#include "captures/file_capture.h"
#include "captures/pcap_file.h"
#include "capture_test_support.h"
#include "switch/link.h"

namespace twoostwo::captures {
namespace {

using namespace testing;
using fabric::Timestamp;

// 2023-11-14 22:13:20.123456789 UTC.
constexpr Timestamp kBase{1'700'000'000'123'456'789};

struct Scripted {
  bool a_to_b;
  size_t size;
  Timestamp time;
};

// Directions interleaved, sizes at the edges, two equal timestamps, steps
// that are not whole microseconds.
const std::vector<Scripted> kScript = {
    {true, 14, kBase},
    {false, 60, kBase + Timestamp(1)},
    {true, 61, kBase + Timestamp(1001)},
    {true, 42, kBase + Timestamp(1001)},
    {false, 1514, kBase + Timestamp(2'000'003)},
    {true, 1518, kBase + Timestamp(999'999'999)},
    {false, 100, kBase + Timestamp(1'000'000'000)},
    {true, 64, kBase + Timestamp(5'000'000'007)},
};

class GoldenCapture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(readers_installed());
    auto l = fabric::Link::connect("l1", a_, b_);
    ASSERT_TRUE(l) << l.error().message;
    link_ = std::move(*l);
  }
  // Play kScript; returns the frames in order.
  std::vector<std::vector<std::byte>> play() {
    std::vector<std::vector<std::byte>> sent;
    for (size_t i = 0; i < kScript.size(); ++i) {
      const auto& s = kScript[i];
      auto frame = s.a_to_b ? make_frame(mac(0xb), mac(0xa), s.size, static_cast<uint32_t>(i))
                            : make_frame(mac(0xa), mac(0xb), s.size, static_cast<uint32_t>(i));
      (s.a_to_b ? a_ : b_).send(frame, s.time);
      sent.push_back(std::move(frame));
    }
    return sent;
  }

  TempDir dir_;
  ScriptPort a_{"a"}, b_{"b"};
  std::unique_ptr<fabric::Link> link_;
};

TEST_F(GoldenCapture, TsharkReadsEveryFrameBackInOrderWithNanosecondTimes) {
  const auto path = dir_.path() / "l1.pcap";
  auto capture = FileCapture::open(*link_, path);
  ASSERT_TRUE(capture) << capture.error().message;
  const auto sent = play();
  ASSERT_EQ(b_.received.size() + a_.received.size(), sent.size()) << "the link carried every frame";
  ASSERT_TRUE((*capture)->close());
  EXPECT_EQ((*capture)->writer().counters().frames, sent.size());
  EXPECT_EQ((*capture)->writer().counters().raised_timestamps, 0u);

  // The nanosecond magic, in host order as libpcap writes it.
  const std::string raw = slurp(path);
  ASSERT_GE(raw.size(), 24u);
  uint32_t magic = 0;
  std::memcpy(&magic, raw.data(), 4);
  EXPECT_EQ(magic, kMagicNanoseconds);

  const TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("cut short"), std::string::npos) << r.err;
  ASSERT_EQ(r.frames.size(), sent.size());
  std::string previous;
  for (size_t i = 0; i < sent.size(); ++i) {
    SCOPED_TRACE(fmt::format("frame {}", i + 1));
    const TsharkFrame& f = r.frames[i];
    const auto& bytes = sent[i];
    EXPECT_EQ(f.number, static_cast<int>(i + 1));
    EXPECT_EQ(f.time_epoch, epoch_text(kScript[i].time));
    EXPECT_EQ(f.length, bytes.size());
    EXPECT_EQ(f.captured, bytes.size());
    EXPECT_EQ(f.dst, fabric::format_mac(kScript[i].a_to_b ? mac(0xb) : mac(0xa)));
    EXPECT_EQ(f.src, fabric::format_mac(kScript[i].a_to_b ? mac(0xa) : mac(0xb)));
    EXPECT_EQ(f.type, "0x88b5");
    // Every byte: the header fields above and the payload here.
    EXPECT_EQ(f.data, hex(std::span(bytes).subspan(14)));
    // Non-decreasing time (same width, so text order is time order).
    EXPECT_GE(f.time_epoch, previous);
    previous = f.time_epoch;
  }
}

TEST_F(GoldenCapture, MicrosecondPrecisionForOlderReaders) {
  const auto path = dir_.path() / "micro.pcap";
  auto capture = FileCapture::open(*link_, path, PcapFileOptions{TimestampPrecision::kMicrosecond});
  ASSERT_TRUE(capture) << capture.error().message;
  play();
  ASSERT_TRUE((*capture)->close());
  uint32_t magic = 0;
  std::memcpy(&magic, slurp(path).data(), 4);
  EXPECT_EQ(magic, kMagicMicroseconds);
  const TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.frames.size(), kScript.size());
  for (size_t i = 0; i < kScript.size(); ++i) {
    const Timestamp truncated((kScript[i].time.count() / 1000) * 1000);
    EXPECT_EQ(r.frames[i].time_epoch, epoch_text(truncated)) << "frame " << i + 1;
  }
}

TEST_F(GoldenCapture, TimeGoingBackIsRaisedSoTheFileStaysInOrder) {
  const auto path = dir_.path() / "back.pcap";
  auto capture = FileCapture::open(*link_, path);
  ASSERT_TRUE(capture) << capture.error().message;
  a_.send(make_frame(mac(0xb), mac(0xa), 60, 0), kBase);
  b_.send(make_frame(mac(0xa), mac(0xb), 60, 1), kBase - Timestamp(500));  // a clock step back
  a_.send(make_frame(mac(0xb), mac(0xa), 60, 2), kBase + Timestamp(7));
  ASSERT_TRUE((*capture)->close());
  EXPECT_EQ((*capture)->writer().counters().raised_timestamps, 1u);
  const TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.frames.size(), 3u);
  EXPECT_EQ(r.frames[0].time_epoch, epoch_text(kBase));
  EXPECT_EQ(r.frames[1].time_epoch, epoch_text(kBase));
  EXPECT_EQ(r.frames[2].time_epoch, epoch_text(kBase + Timestamp(7)));
}

TEST_F(GoldenCapture, PortTapSeesBothDirectionsOfThatPortOnly) {
  ScriptPort c("c"), d("d");
  auto other = fabric::Link::connect("l2", c, d);
  ASSERT_TRUE(other);
  const auto path = dir_.path() / "port-a.pcap";
  auto capture = FileCapture::open(a_, path);
  ASSERT_TRUE(capture) << capture.error().message;
  a_.send(make_frame(mac(0xb), mac(0xa), 60, 0), kBase);                  // a transmits
  b_.send(make_frame(mac(0xa), mac(0xb), 70, 1), kBase + Timestamp(1));   // a is delivered
  c.send(make_frame(mac(0xd), mac(0xc), 80, 2), kBase + Timestamp(2));    // elsewhere
  a_.set_up(false);
  b_.send(make_frame(mac(0xa), mac(0xb), 90, 3), kBase + Timestamp(3));   // dropped by a down port
  ASSERT_TRUE((*capture)->close());
  a_.send(make_frame(mac(0xb), mac(0xa), 60, 4), kBase + Timestamp(4));   // after close: not tapped
  const TsharkResult r = read_with_tshark(path);
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_EQ(r.frames.size(), 2u);
  EXPECT_EQ(r.frames[0].length, 60u);
  EXPECT_EQ(r.frames[0].src, fabric::format_mac(mac(0xa)));
  EXPECT_EQ(r.frames[1].length, 70u);
  EXPECT_EQ(r.frames[1].src, fabric::format_mac(mac(0xb)));
}

TEST(PcapFileWriter, EmptyCaptureIsAValidPcapAtOnce) {
  ASSERT_TRUE(readers_installed());
  TempDir dir;
  const auto path = dir.path() / "empty.pcap";
  auto writer = PcapFileWriter::open(path);
  ASSERT_TRUE(writer) << writer.error().message;
  // Readable before close: the header was flushed at open.
  EXPECT_EQ(std::filesystem::file_size(path), kFileHeaderSize);
  const TsharkResult r = read_with_tshark(path);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.frames.empty());
}

TEST(PcapFileWriter, OpenErrorsNameThePath) {
  TempDir dir;
  const auto missing = dir.path() / "no-such-dir" / "x.pcap";
  auto w = PcapFileWriter::open(missing);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find(missing.string()), std::string::npos) << w.error().message;
  EXPECT_NE(w.error().message.find("No such file or directory"), std::string::npos) << w.error().message;
}

TEST(PcapFileWriter, RefusesToFollowASymbolicLink) {
  TempDir dir;
  const auto target = dir.path() / "target";
  write_file(target, "precious");
  const auto link = dir.path() / "link.pcap";
  std::filesystem::create_symlink(target, link);
  auto w = PcapFileWriter::open(link);
  ASSERT_FALSE(w);
  EXPECT_NE(w.error().message.find(link.string()), std::string::npos) << w.error().message;
  EXPECT_EQ(slurp(target), "precious");
}

TEST(PcapFileWriter, WriteErrorsAreValuesNamingThePath) {
  // /dev/full takes the open and fails every write with ENOSPC.
  auto w = PcapFileWriter::open("/dev/full");
  ASSERT_FALSE(w) << "the header flush at open must fail";
  EXPECT_NE(w.error().message.find("/dev/full"), std::string::npos) << w.error().message;
  EXPECT_NE(w.error().message.find("No space left on device"), std::string::npos) << w.error().message;
}

}  // namespace
}  // namespace twoostwo::captures
