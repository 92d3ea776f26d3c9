// A fabric::Fabric whose Boost.Asio event loop runs on its own thread, for
// tests that put real processes (monitors, QEMU) on it. Build the topology
// before start(); afterwards touch the fabric only through call(), which runs
// a function on the loop's thread and returns its result.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <future>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>

#include "switch/fabric.h"

namespace twoostwo::testing {

class FabricThread {
 public:
  FabricThread() = default;
  ~FabricThread() { stop(); }
  FabricThread(const FabricThread&) = delete;
  FabricThread& operator=(const FabricThread&) = delete;

  fabric::Fabric& fabric() { return fabric_; }
  boost::asio::io_context& io() { return io_; }

  void start() {
    thread_ = std::thread([this] { io_.run(); });
  }
  /// Run `f` on the fabric's thread and return what it returns.
  template <class F>
  auto call(F&& f) -> std::invoke_result_t<F> {
    using R = std::invoke_result_t<F>;
    if (!thread_.joinable()) return f();
    std::packaged_task<R()> task(std::forward<F>(f));
    auto result = task.get_future();
    boost::asio::post(io_, [&task] { task(); });
    return result.get();
  }
  void stop() {
    if (!thread_.joinable()) return;
    guard_.reset();
    io_.stop();
    thread_.join();
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_{
      boost::asio::make_work_guard(io_)};
  fabric::Fabric fabric_{io_};
  std::thread thread_;
};

}  // namespace twoostwo::testing
