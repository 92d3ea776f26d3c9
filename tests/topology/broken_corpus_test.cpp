// The corpus of broken topology files (tests/topology/broken/): each
// NAME.yaml is loaded and every diagnostic compared, in order, with the lines
// of NAME.expected. In the expected text, {dir} stands for the corpus
// directory and {guest} for the test's guest image directory, which holds
// the i386 image only (so x86_64 is a missing image).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "topology/loader.h"
#include "topology_test_support.h"

namespace twoostwo::topology {
namespace {

namespace fs = std::filesystem;
using testing::read_file;
using testing::TempDir;

const fs::path kBrokenDir = testing::kSourceDir / "tests/topology/broken";

std::vector<std::string> corpus(const std::string& ext) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(kBrokenDir)) {
    if (entry.path().extension() == ext) names.push_back(entry.path().stem().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
  return s;
}

class BrokenFile : public ::testing::TestWithParam<std::string> {};

TEST_P(BrokenFile, ReportsExactlyTheExpectedDiagnostics) {
  TempDir tmp;
  testing::make_guest_dir(tmp, {"i386"});
  const std::string name = GetParam();
  LoadOptions options;
  options.images = guest_image_dir(tmp.path() / "guest");
  options.display_name = name + ".yaml";
  const auto lab = load_lab(kBrokenDir / (name + ".yaml"), options);
  ASSERT_FALSE(lab.has_value()) << name << ".yaml loaded without errors";
  std::string expected = read_file(kBrokenDir / (name + ".expected"));
  expected = replace_all(expected, "{dir}", kBrokenDir.lexically_normal().string());
  expected = replace_all(expected, "{guest}", (tmp.path() / "guest").string());
  EXPECT_EQ(to_string(lab.error()), expected);
}

TEST_P(BrokenFile, DiagnosticsAreInPositionOrder) {
  LoadOptions options;
  const auto lab = load_lab(kBrokenDir / (GetParam() + ".yaml"), options);
  ASSERT_FALSE(lab.has_value());
  const auto& d = lab.error();
  EXPECT_TRUE(
      std::is_sorted(d.begin(), d.end(), [](const Diagnostic& a, const Diagnostic& b) { return a.pos < b.pos; }));
}

INSTANTIATE_TEST_SUITE_P(Corpus, BrokenFile, ::testing::ValuesIn(corpus(".yaml")),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           std::string n = param_info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(BrokenCorpus, EveryFileHasItsExpectedMessages) {
  EXPECT_EQ(corpus(".yaml"), corpus(".expected"));
  EXPECT_GE(corpus(".yaml").size(), 20u);
}

// The issue's own example, word for word.
TEST(BrokenCorpus, UnknownNicModelReadsAsTheIssueSpellsIt) {
  const auto lab = parse_lab(
      "name: x\n"
      "nodes:\n"
      "  bob:\n"
      "    nics:\n"
      "      eth0: {model: e1000}\n",
      "/", testing::options_named("lab.yaml", false));
  ASSERT_FALSE(lab.has_value());
  EXPECT_EQ(to_string(lab.error()),
            "lab.yaml:5:21: node 'bob': unknown NIC model 'e1000' (expected rtl8029 or ne2000)\n");
}

// Several kinds of error at once, reported in file order although links are
// checked after nodes, and a YAML syntax error, which ends reading.
TEST(BrokenCorpus, ReportsAllErrorsAtOnceInPositionOrder) {
  const auto lab = load_lab(kBrokenDir / "many-errors.yaml", testing::options_named("m.yaml"));
  ASSERT_FALSE(lab.has_value());
  ASSERT_EQ(lab.error().size(), 4u);
  EXPECT_EQ(lab.error()[0].pos, (Position{7, 6}));
  EXPECT_EQ(lab.error()[0].message, "link 3: no node or switch 'carol'");
  EXPECT_EQ(lab.error()[3].message,
            "node 'bob': NIC 'eth0': address 10.0.0.1 is already used by alice:eth0 (line 11) on the same segment");
}

TEST(BrokenCorpus, UnreadableFileIsOneDiagnosticWithoutPosition) {
  TempDir tmp;
  auto lab = load_lab(tmp.path() / "nope.yaml", testing::options_named("nope.yaml"));
  ASSERT_FALSE(lab.has_value());
  EXPECT_EQ(to_string(lab.error()), "nope.yaml: cannot read: No such file or directory\n");
  lab = load_lab(tmp.path(), testing::options_named("dir"));
  ASSERT_FALSE(lab.has_value());
  EXPECT_EQ(to_string(lab.error()), "dir: cannot read: Is a directory\n");
}

TEST(BrokenCorpus, FileNameDefaultsToThePathAsGiven) {
  TempDir tmp;
  const auto path = tmp.write("lab.yaml", "name: x\nnodes: {a: {memory: 1}}\n");
  const auto lab = load_lab(path);
  ASSERT_FALSE(lab.has_value());
  EXPECT_EQ(lab.error().at(0).to_string(),
            path.string() + ":2:21: node 'a': memory: expected a whole number of MiB from 16 to 3072, got '1'");
}

}  // namespace
}  // namespace twoostwo::topology
