// The host side of the COM2 command protocol (guest/README.md).
#include "guest/host/command_channel.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace twoostwo::guest {
namespace {

void feed(CommandChannel& ch, std::string_view s) {
  ch.feed(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

TEST(Base64Test, RoundTripsBinaryAndMatchesRfc4648Vectors) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(*base64_decode("Zm9vYg=="), "foob");
  EXPECT_EQ(*base64_decode("Zm9v\nYmE="), "fooba");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(*base64_decode(base64_encode(all)), all);
  EXPECT_FALSE(base64_decode("Zm9*").has_value());
  EXPECT_FALSE(base64_decode("Zm9").has_value());
}

TEST(CommandChannelTest, ExecSendsRequestAndCollectsOutputAndStatus) {
  std::string sent;
  CommandChannel* chp = nullptr;
  std::thread guest;
  CommandChannel ch([&](std::string_view bytes) {
    sent = std::string(bytes);
    // The "guest" answers from another thread, in odd-sized chunks.
    guest = std::thread([&] {
      feed(*chp, "noise from a driver\n@@begin 1\n" + base64_encode(std::string("a\0b\xff\n", 5)));
      feed(*chp, "\r\n" + base64_encode("second line\n") + "\n@@end 1 3\n");
    });
  });
  chp = &ch;
  feed(ch, "Booting...\n@@twoostwo ready al");
  EXPECT_FALSE(ch.wait_ready(std::chrono::milliseconds(1)).has_value());
  feed(ch, "ice\n");
  EXPECT_EQ(ch.wait_ready(std::chrono::milliseconds(1)), std::optional<std::string>("alice"));
  std::string output;
  auto status = ch.exec("printf 'a\\0b'; exit 3", [&](std::string_view s) { output += s; },
                        std::chrono::seconds(5));
  guest.join();
  ASSERT_TRUE(status.has_value()) << status.error().message;
  EXPECT_EQ(*status, 3);
  EXPECT_EQ(output, std::string("a\0b\xff\nsecond line\n", 17));
  EXPECT_EQ(sent, "@@exec 1 " + base64_encode("printf 'a\\0b'; exit 3") + "\n");
  EXPECT_EQ(ch.stray_lines(), 2u);  // "Booting..." and "noise from a driver"
}

TEST(CommandChannelTest, ExecFailsWhenNotReadyOrClosed) {
  CommandChannel ch([](std::string_view) {});
  auto r = ch.exec("true", [](std::string_view) {}, std::chrono::milliseconds(10));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "command channel: the guest agent is not ready");
  feed(ch, "@@twoostwo ready bob\n");
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ch.close();
  });
  r = ch.exec("sleep 100", [](std::string_view) {}, std::chrono::seconds(5));
  closer.join();
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message, "command channel: the VM ended while the command ran");
}

TEST(CommandChannelTest, ExecTimesOut) {
  CommandChannel ch([](std::string_view) {});
  feed(ch, "@@twoostwo ready bob\n");
  auto r = ch.exec("sleep 100", [](std::string_view) {}, std::chrono::milliseconds(30));
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message.find("no answer"), std::string::npos);
}

}  // namespace
}  // namespace twoostwo::guest
