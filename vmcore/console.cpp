#include "vmcore/console.h"

#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace twoostwo::vmcore {

namespace asio = boost::asio;
using asio::local::stream_protocol;

namespace {
constexpr size_t kBacklog = 64 * 1024;
constexpr size_t kClientLimit = 1024 * 1024;
}  // namespace

struct Console::Client {
  explicit Client(asio::io_context& io) : socket(io) {}
  stream_protocol::socket socket;
  std::string pending;  // not yet written
  std::string writing;  // being written
  std::array<char, 1024> in{};
  bool closed = false;
};

Console::Console(asio::io_context& io, std::function<void(std::string_view)> on_input)
    : io_(io), on_input_(std::move(on_input)) {}

Console::~Console() {
  flush();
  if (log_ != nullptr) std::fclose(log_);
  if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
}

Result<void> Console::open_log(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return fail(fmt::format("{}: cannot create console log: {}", path, std::strerror(errno)));
  std::lock_guard lock(mu_);
  log_ = f;
  return {};
}

Result<void> Console::listen(const std::string& path) {
  ::unlink(path.c_str());
  const std::string temporary = path + "~";
  ::unlink(temporary.c_str());
  boost::system::error_code ec;
  auto acc = std::make_unique<stream_protocol::acceptor>(io_);
  acc->open(stream_protocol(), ec);
  if (!ec) acc->bind(stream_protocol::endpoint(temporary), ec);
  if (!ec) acc->listen(8, ec);
  if (!ec && ::rename(temporary.c_str(), path.c_str()) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (ec) {
    ::unlink(temporary.c_str());
    return fail(fmt::format("{}: cannot listen on console socket: {}", path, ec.message()));
  }
  acceptor_ = std::move(acc);
  socket_path_ = path;
  accept();
  return {};
}

void Console::accept() {
  auto client = std::make_shared<Client>(io_);
  acceptor_->async_accept(client->socket, [this, client](const boost::system::error_code& ec) {
    if (ec) return;  // acceptor closed
    {
      std::lock_guard lock(mu_);
      client->pending = backlog_;
      clients_.push_back(client);
    }
    send_to(client);
    // Read input from this client until it disconnects.
    auto read_more = std::make_shared<std::function<void()>>();
    *read_more = [this, client, read_more] {
      client->socket.async_read_some(asio::buffer(client->in), [this, client, read_more](
                                                                   const boost::system::error_code& rec, size_t n) {
        if (rec) {
          std::lock_guard lock(mu_);
          client->closed = true;
          std::erase(clients_, client);
          *read_more = nullptr;  // break the self-reference
          return;
        }
        on_input_(std::string_view(client->in.data(), n));
        (*read_more)();
      });
    };
    (*read_more)();
    accept();
  });
}

void Console::send_to(const std::shared_ptr<Client>& c) {
  std::lock_guard lock(mu_);
  if (c->closed || !c->writing.empty() || c->pending.empty()) return;
  c->writing.swap(c->pending);
  asio::async_write(c->socket, asio::buffer(c->writing), [this, c](const boost::system::error_code& ec, size_t) {
    {
      std::lock_guard relock(mu_);
      c->writing.clear();
      if (ec) {
        c->closed = true;
        std::erase(clients_, c);
        return;
      }
    }
    send_to(c);
  });
}

void Console::output(std::span<const uint8_t> bytes) {
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  std::vector<std::shared_ptr<Client>> wake;
  {
    std::lock_guard lock(mu_);
    if (log_ != nullptr) std::fwrite(text.data(), 1, text.size(), log_);
    if (echo_) {
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::fflush(stdout);
    }
    backlog_ += text;
    if (backlog_.size() > kBacklog) backlog_.erase(0, backlog_.size() - kBacklog);
    for (auto& c : clients_) {
      c->pending += text;
      if (c->pending.size() > kClientLimit) c->pending.erase(0, c->pending.size() - kClientLimit);
      wake.push_back(c);
    }
  }
  for (auto& c : wake) asio::post(io_, [this, c] { send_to(c); });
}

void Console::flush() {
  std::lock_guard lock(mu_);
  if (log_ != nullptr) std::fflush(log_);
}

}  // namespace twoostwo::vmcore
