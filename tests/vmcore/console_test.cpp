// The console: log file, backlog for late socket clients, input from clients.
#include "vmcore/console.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

namespace twoostwo::vmcore {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

int connect_to(const fs::path& p) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", p.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string read_until(int fd, const std::string& want) {
  std::string got;
  char buf[256];
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.find(want) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) got.append(buf, static_cast<size_t>(n));
    else std::this_thread::sleep_for(5ms);
  }
  return got;
}

TEST(ConsoleTest, LogsOutputServesBacklogAndLiveOutputAndForwardsInput) {
  const fs::path dir = fs::temp_directory_path() / ("twoostwo-console-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  boost::asio::io_context io;
  std::mutex mu;
  std::string input;
  Console console(io, [&](std::string_view in) {
    std::lock_guard lock(mu);
    input += in;
  });
  ASSERT_TRUE(console.open_log((dir / "console.log").string()).has_value());
  ASSERT_TRUE(console.listen((dir / "console.sock").string()).has_value());
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&] { io.run(); });

  console.output(bytes("early boot line\n"));
  const int fd = connect_to(dir / "console.sock");
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_until(fd, "early boot line\n"), "early boot line\n");
  console.output(bytes("login: "));
  EXPECT_EQ(read_until(fd, "login: "), "login: ");
  ASSERT_EQ(::send(fd, "root\n", 5, 0), 5);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mu);
      if (input == "root\n") break;
    }
    std::this_thread::sleep_for(5ms);
  }
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(input, "root\n");
  }
  ::close(fd);
  console.flush();
  std::ifstream log(dir / "console.log");
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_EQ(ss.str(), "early boot line\nlogin: ");

  io.stop();
  io_thread.join();
  fs::remove_all(dir);
}

// A client that connects as soon as the socket file appears (what the tests'
// Agent and a lab's tools do) is never refused: the file appears only once
// the socket listens. A bind() straight to the path failed this within a
// few hundred tries (ECONNREFUSED between bind() and listen()).
TEST(ConsoleTest, TheSocketFileAppearsOnlyOnceItAcceptsConnections) {
  const fs::path dir = fs::temp_directory_path() / ("twoostwo-console-race-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int refused = 0;
  for (int round = 0; round < 300; ++round) {
    const fs::path sock = dir / ("c" + std::to_string(round) + ".sock");
    std::atomic<bool> stop{false};
    std::atomic<int> connected{0};
    std::thread client([&] {
      while (!stop.load(std::memory_order_relaxed)) {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
        const int r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        const int err = errno;
        ::close(fd);
        if (r == 0) {
          connected = 1;
          return;
        }
        if (err != ENOENT) {  // the file is there, but nobody listens
          connected = -1;
          return;
        }
      }
    });
    boost::asio::io_context io;
    {
      Console console(io, [](std::string_view) {});
      ASSERT_TRUE(console.listen(sock.string()).has_value());
      EXPECT_FALSE(fs::exists(sock.string() + "~"));
      while (connected.load() == 0) std::this_thread::yield();
      stop = true;
      client.join();
      if (connected.load() < 0) ++refused;
    }
    EXPECT_FALSE(fs::exists(sock)) << "the console removes its socket";
  }
  EXPECT_EQ(refused, 0) << "connections refused though the socket file existed";
  fs::remove_all(dir);
}

TEST(ConsoleTest, ErrorsNameThePath) {
  boost::asio::io_context io;
  Console console(io, [](std::string_view) {});
  auto r = console.open_log("/nonexistent-dir/console.log");
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("/nonexistent-dir/console.log: cannot create console log"), std::string::npos);
  auto s = console.listen("/nonexistent-dir/console.sock");
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message.find("/nonexistent-dir/console.sock"), std::string::npos);
}

}  // namespace
}  // namespace twoostwo::vmcore
