// LiveCapture: pcap streamed to pipes and sockets while the fabric runs,
// read by tshark and tcpdump as `… | tshark -r -` would.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <algorithm>

#include "captures/file_capture.h"
#include "captures/live_capture.h"
#include "capture_test_support.h"
#include "switch/link.h"

namespace twoostwo::captures {
namespace {

using namespace testing;
using fabric::Timestamp;

constexpr Timestamp kBase{1'700'000'000'987'654'321};

LiveCaptureOptions options(size_t buffer_bytes,
                           TimestampPrecision precision = TimestampPrecision::kNanosecond) {
  LiveCaptureOptions o;
  o.buffer_bytes = buffer_bytes;
  o.precision = precision;
  return o;
}

class LiveCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = fabric::Link::connect("wire 1", a_, b_);
    ASSERT_TRUE(l) << l.error().message;
    link_ = std::move(*l);
  }
  // Frame `seq` a→b (even) or b→a (odd), 60 + seq % 50 bytes, at kBase + seq µs + seq ns.
  std::vector<std::byte> send(uint32_t seq) {
    auto f = seq % 2 == 0 ? make_frame(mac(2), mac(1), 60 + seq % 50, seq)
                          : make_frame(mac(1), mac(2), 60 + seq % 50, seq);
    (seq % 2 == 0 ? a_ : b_).send(f, time_of(seq));
    return f;
  }
  static Timestamp time_of(uint32_t seq) { return kBase + Timestamp(int64_t{seq} * 1001); }

  boost::asio::io_context io_;
  ScriptPort a_{"a"}, b_{"b"};
  std::unique_ptr<fabric::Link> link_;
};

// Three readers of one link at once: tshark reading the stream as a file
// (`… | tshark -r -`), tshark capturing from the pipe as Wireshark does
// (`… | wireshark -k -i -`, through dumpcap), and tcpdump (`… | tcpdump -r -`).
TEST_F(LiveCaptureTest, SeveralReadersAtOnceSeeOnlyFramesAfterTheStart) {
  ASSERT_TRUE(readers_installed());
  send(1000);  // before any capture: must not appear
  Pipe to_tshark, to_dumpcap, to_tcpdump;
  Child tshark(tshark_argv("-"), to_tshark.read);
  std::vector<std::string> live_argv = tshark_argv("-");
  live_argv[2] = "-i";  // "-r -" → "-i -"
  Child tshark_live(live_argv, to_dumpcap.read);
  Child tcpdump({"tcpdump", "-r", "-", "-nn", "-tt", "--time-stamp-precision=nano", "-e"}, to_tcpdump.read);
  ASSERT_TRUE(tshark.started() && tshark_live.started() && tcpdump.started());
  std::vector<std::unique_ptr<LiveCapture>> captures;
  for (Pipe* pipe : {&to_tshark, &to_dumpcap, &to_tcpdump}) {
    pipe->close_read();
    auto live = LiveCapture::start(io_, *link_, pipe->release_write());
    ASSERT_TRUE(live) << live.error().message;
    captures.push_back(std::move(*live));
  }
  std::vector<std::vector<std::byte>> sent;
  for (uint32_t seq = 0; seq < 40; ++seq) {
    sent.push_back(send(seq));
    if (seq % 10 == 9) pump_for(io_, 10ms);  // frames flow while the readers read
  }
  ASSERT_TRUE(pump_until(io_, [&] {
    return std::all_of(captures.begin(), captures.end(), [](const auto& c) { return c->buffered() == 0; });
  }));
  for (const auto& live : captures) {
    EXPECT_EQ(live->counters().frames_written, 40u);
    EXPECT_EQ(live->counters().dropped, 0u);
    live->stop();
    EXPECT_EQ(live->state(), LiveCapture::State::kStopped);
  }

  for (Child* reader : {&tshark, &tshark_live}) {
    ASSERT_EQ(reader->wait(), 0) << reader->err();
    const TsharkResult r = parse_tshark(0, reader->out(), reader->err());
    ASSERT_EQ(r.frames.size(), sent.size()) << reader->out();
    for (uint32_t seq = 0; seq < sent.size(); ++seq) {
      EXPECT_EQ(r.frames[seq].time_epoch, epoch_text(time_of(seq)));
      EXPECT_EQ(r.frames[seq].length, sent[seq].size());
      EXPECT_EQ(r.frames[seq].data, hex(std::span(sent[seq]).subspan(14)));
    }
  }

  ASSERT_EQ(tcpdump.wait(), 0) << tcpdump.err();
  const auto lines = split(tcpdump.out(), '\n');
  std::vector<std::string> records;
  for (const auto& line : lines) {
    if (!line.empty() && std::isdigit(static_cast<unsigned char>(line[0])) != 0) records.push_back(line);
  }
  ASSERT_EQ(records.size(), sent.size()) << tcpdump.out();
  for (uint32_t seq = 0; seq < sent.size(); ++seq) {
    const std::string src = fabric::format_mac(seq % 2 == 0 ? mac(1) : mac(2));
    EXPECT_TRUE(records[seq].starts_with(epoch_text(time_of(seq)) + " " + src)) << records[seq];
    EXPECT_NE(records[seq].find(fmt::format("length {}", sent[seq].size())), std::string::npos) << records[seq];
  }
}

TEST_F(LiveCaptureTest, RestartNeverShowsStaleFrames) {
  ASSERT_TRUE(readers_installed());
  // First capture: a reader that does not read, so frames pile up in the
  // pipe and in the capture's buffer.
  Pipe stuck;
  ASSERT_GE(::fcntl(stuck.write, F_SETPIPE_SZ, 4096), 0);
  auto first = LiveCapture::start(io_, *link_, stuck.release_write(), options(LiveCapture::kMinBuffer));
  ASSERT_TRUE(first) << first.error().message;
  for (uint32_t seq = 0; seq < 100; ++seq) {
    send(seq);
    poll(io_);
  }
  pump_for(io_, 20ms);
  EXPECT_GT((*first)->buffered(), 0u) << "frames are waiting for the reader";
  (*first)->stop();
  EXPECT_GT((*first)->counters().discarded, 0u);

  for (uint32_t seq = 100; seq < 110; ++seq) send(seq);  // no capture running

  Pipe fresh;
  Child tshark(tshark_argv("-"), fresh.read);
  fresh.close_read();
  auto second = LiveCapture::start(io_, *link_, fresh.release_write());
  ASSERT_TRUE(second) << second.error().message;
  for (uint32_t seq = 200; seq < 205; ++seq) send(seq);
  ASSERT_TRUE(pump_until(io_, [&] { return (*second)->buffered() == 0; }));
  (*second)->stop();
  ASSERT_EQ(tshark.wait(), 0) << tshark.err();
  const TsharkResult r = parse_tshark(0, tshark.out(), tshark.err());
  ASSERT_EQ(r.frames.size(), 5u) << tshark.out();
  for (uint32_t k = 0; k < 5; ++k) {
    EXPECT_EQ(r.frames[k].number, static_cast<int>(k + 1));
    EXPECT_EQ(r.frames[k].data.substr(0, 8), fmt::format("{:08x}", 200 + k));
  }
}

TEST_F(LiveCaptureTest, SlowReaderLosesCountedFramesNeverBlocksAndNeverGetsABrokenRecord) {
  ASSERT_TRUE(readers_installed());
  struct Config {
    int pipe_bytes;  // 0: the default (64 KiB)
    size_t buffer_bytes;
    uint32_t frames;
    uint32_t poll_every;  // frames sent between two turns of the event loop
  };
  // A one-page pipe with the smallest buffer, and a default pipe with a
  // large buffer and bursts of 1000 frames between turns of the event loop,
  // so that a write would span many pages if it were not cut to PIPE_BUF
  // (and the kernel, filling the pipe, would leave half a record in it).
  for (const Config config :
       {Config{4096, LiveCapture::kMinBuffer, 2000, 16}, Config{0, 256 * 1024, 20000, 1000}}) {
    SCOPED_TRACE(fmt::format("pipe {} bytes, buffer {} bytes", config.pipe_bytes, config.buffer_bytes));
    Pipe slow;
    if (config.pipe_bytes > 0) {
      ASSERT_GE(::fcntl(slow.write, F_SETPIPE_SZ, config.pipe_bytes), 0);
    }
    auto live = LiveCapture::start(io_, *link_, slow.release_write(), options(config.buffer_bytes));
    ASSERT_TRUE(live) << live.error().message;
    a_.received.clear();
    b_.received.clear();
    const auto started = std::chrono::steady_clock::now();
    for (uint32_t seq = 0; seq < config.frames; ++seq) {
      send(seq);
      if (seq % config.poll_every == 0) poll(io_);
    }
    poll(io_);
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s) << "the fabric never waited for the reader";
    EXPECT_EQ(b_.received.size() + a_.received.size(), config.frames) << "every frame crossed the link";
    const auto c = (*live)->counters();
    EXPECT_GT(c.dropped, 0u);
    EXPECT_EQ(c.frames + c.dropped, config.frames);
    (*live)->stop();
    const auto after = (*live)->counters();
    EXPECT_EQ(after.frames_written + after.discarded, after.frames);

    // What reached the pipe is a valid pcap ending on a whole record.
    const std::string stream = read_to_eof(slow.read);
    TempDir dir;
    write_file(dir.path() / "slow.pcap", stream);
    const TsharkResult r = read_with_tshark(dir.path() / "slow.pcap");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.err.find("cut short"), std::string::npos) << r.err;
    ASSERT_EQ(r.frames.size(), after.frames_written);
    ASSERT_GT(r.frames.size(), 0u);
    uint32_t previous = 0;
    for (size_t k = 0; k < r.frames.size(); ++k) {
      const uint32_t seq = static_cast<uint32_t>(std::stoul(r.frames[k].data.substr(0, 8), nullptr, 16));
      if (k > 0) {
        ASSERT_GT(seq, previous) << "kept frames stay in order";
      }
      previous = seq;
    }
  }
}

TEST_F(LiveCaptureTest, ReaderGoingAwayEndsTheCaptureWithoutSigpipe) {
  Pipe gone;
  gone.close_read();
  std::optional<fabric::Error> ended;
  int calls = 0;
  LiveCaptureOptions with_callback;
  with_callback.on_ended = [&](const fabric::Error& e) {
    ended = e;
    ++calls;
  };
  auto live = LiveCapture::start(io_, *link_, gone.release_write(), with_callback);
  ASSERT_TRUE(live) << live.error().message;
  send(0);
  ASSERT_TRUE(pump_until(io_, [&] { return !(*live)->running(); }, 5s));
  // Still here: no SIGPIPE killed the process, and none is left pending.
  sigset_t pending;
  sigpending(&pending);
  EXPECT_EQ(sigismember(&pending, SIGPIPE), 0);
  EXPECT_EQ((*live)->state(), LiveCapture::State::kReaderGone);
  ASSERT_TRUE((*live)->error());
  EXPECT_NE((*live)->error()->message.find("link 'wire 1'"), std::string::npos) << (*live)->error()->message;
  EXPECT_NE((*live)->error()->message.find("reader went away"), std::string::npos) << (*live)->error()->message;
  EXPECT_EQ(calls, 1);
  ASSERT_TRUE(ended);
  // The tap is gone; the link goes on.
  send(1);
  send(2);
  poll(io_);
  EXPECT_EQ((*live)->counters().frames, 1u);
  EXPECT_EQ(b_.received.size(), 2u);
  EXPECT_EQ(a_.received.size(), 1u);
  (*live)->stop();  // nothing left to do; no second report
  EXPECT_EQ(calls, 1);
}

TEST_F(LiveCaptureTest, StreamIsByteForByteWhatLibpcapWritesToAFile) {
  for (const auto precision : {TimestampPrecision::kNanosecond, TimestampPrecision::kMicrosecond}) {
    SCOPED_TRACE(precision == TimestampPrecision::kNanosecond ? "nanoseconds" : "microseconds");
    TempDir dir;
    const auto path = dir.path() / "file.pcap";
    auto file = FileCapture::open(*link_, path, PcapFileOptions{precision});
    ASSERT_TRUE(file) << file.error().message;
    Pipe pipe;
    int sockets[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets), 0);
    auto to_pipe = LiveCapture::start(io_, *link_, pipe.release_write(), options(1 << 20, precision));
    auto to_socket = LiveCapture::start(io_, *link_, sockets[0], options(1 << 20, precision));
    ASSERT_TRUE(to_pipe) << to_pipe.error().message;
    ASSERT_TRUE(to_socket) << to_socket.error().message;
    for (uint32_t seq = 0; seq < 20; ++seq) send(seq);
    a_.send(make_frame(mac(2), mac(1), fabric::kMaxFrame, 77), time_of(21));
    a_.send(make_frame(mac(2), mac(1), fabric::kEthernetHeader, 78), time_of(22));
    ASSERT_TRUE(pump_until(io_, [&] { return (*to_pipe)->buffered() == 0 && (*to_socket)->buffered() == 0; }));
    (*to_pipe)->stop();
    (*to_socket)->stop();
    ASSERT_TRUE((*file)->close());
    const std::string expected = slurp(path);
    EXPECT_EQ(expected.size(), kFileHeaderSize + 22 * kRecordHeaderSize + (*file)->writer().counters().bytes);
    EXPECT_TRUE(read_to_eof(pipe.read) == expected) << "pipe stream differs from libpcap's file";
    EXPECT_TRUE(read_to_eof(sockets[1]) == expected) << "socket stream differs from libpcap's file";
    ::close(sockets[1]);
  }
}

TEST_F(LiveCaptureTest, StartErrorsNameTheTapPoint) {
  auto bad = LiveCapture::start(io_, *link_, -1);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("link 'wire 1'"), std::string::npos) << bad.error().message;

  Pipe p;
  auto small = LiveCapture::start(io_, a_, p.release_write(), options(100));
  ASSERT_FALSE(small);
  EXPECT_NE(small.error().message.find("port 'a'"), std::string::npos) << small.error().message;
  EXPECT_NE(small.error().message.find("minimum"), std::string::npos) << small.error().message;

  const int closed = ::dup(p.read);
  ::close(closed);
  auto stale = LiveCapture::start(io_, *link_, closed);
  ASSERT_FALSE(stale);
  EXPECT_NE(stale.error().message.find("Bad file descriptor"), std::string::npos) << stale.error().message;

  const int read_only = ::dup(p.read);
  auto wrong_end = LiveCapture::start(io_, *link_, read_only);
  ASSERT_FALSE(wrong_end);
  EXPECT_NE(wrong_end.error().message.find("not open for writing"), std::string::npos) << wrong_end.error().message;
}

}  // namespace
}  // namespace twoostwo::captures
