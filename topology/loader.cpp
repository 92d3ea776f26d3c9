#include "topology/loader.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <span>
#include <system_error>

#include "topology/planner.h"

namespace twoostwo::topology {
namespace {

namespace fs = std::filesystem;
using Keys = std::span<const std::string_view>;

// The keys each map may hold (docs/topology.md; docs/topology.schema.json).
constexpr std::string_view kLabKeys[] = {"name", "captures", "defaults", "nodes", "switches", "links"};
constexpr std::string_view kDefaultsKeys[] = {"image", "memory", "cpu_engine", "timer_slack", "nic_model"};
constexpr std::string_view kNodeKeys[] = {"image", "memory", "cpu_engine", "timer_slack",
                                          "nics",  "routes", "forwarding", "run"};
constexpr std::string_view kImageKeys[] = {"kernel", "initrd", "cmdline"};
constexpr std::string_view kNicKeys[] = {"model", "mac", "io", "irq", "addresses"};
constexpr std::string_view kRouteKeys[] = {"to", "via", "dev"};
constexpr std::string_view kSwitchKeys[] = {"ports"};
constexpr std::string_view kPortKeys[] = {"vlan", "trunk", "native"};
constexpr std::string_view kLinkKeys[] = {"endpoints", "capture", "local"};

constexpr unsigned kMinMemoryMib = 16;       // twoostwo-vmm --memory
constexpr unsigned kMaxMemoryMib = 3072;     //
constexpr unsigned kMaxTimerSlackMs = 1000;  // twoostwo-vmm --timer-slack
constexpr unsigned kMaxNics = 4;             // twoostwo-vmm: at most 4 --nic
constexpr unsigned kBadIndex = ~0u;          // a NIC whose name is not eth0..eth3
constexpr uint16_t kMinVlan = 1;             // IEEE 802.1Q: 0 and 4095 are reserved
constexpr uint16_t kMaxVlan = 4094;
// An NE2000's I/O window and the places its jumpers offer (vmcore/nics.cpp).
constexpr unsigned kIsaIoMin = 0x200;
constexpr unsigned kIsaIoMax = 0x3E0;
constexpr unsigned kIsaIoSize = 0x20;
constexpr uint16_t kIsaDefaultIo = 0x300;  // nic::Ne2000Isa::kDefaultIoBase
constexpr uint8_t kIsaDefaultIrq = 9;      // nic::Ne2000Isa::kDefaultIrq
// IRQs free for an ISA card on the monitor's PC (vmcore/nics.cpp kIsaIrqs).
constexpr uint8_t kIsaIrqs[] = {5, 7, 9, 10, 11, 12};
// The monitor's fixed devices in the ISA card's range (vmcore/machine.h).
struct FixedPorts {
  unsigned first, last;
  const char* name;
};
constexpr FixedPorts kFixedPorts[] = {{0x2F8, 0x2FF, "COM2"}, {0x3F8, 0x3FF, "COM1"}};

constexpr const char* kNameRule =
    "use letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters";

Position position_of(const YAML::Node& n) {
  const YAML::Mark m = n.Mark();
  if (m.is_null() || m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  const auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); };
  if (!alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) { return alnum(c) || c == '-' || c == '_'; });
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

// Optimal string alignment distance (Levenshtein with adjacent
// transpositions), ignoring case.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The candidate closest to `word` if it is close enough to be a typo: at
// most 1 edit for words of up to 3 characters, 2 for longer ones, or
// `word` is the start of the candidate ("forward" → "forwarding").
std::optional<std::string> did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  const size_t limit = word.size() <= 3 ? 1 : 2;
  std::optional<std::string> best;
  size_t best_distance = ~size_t{0};
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    const bool prefix = word.size() >= 3 && c.size() > word.size() && std::string_view(c).starts_with(word);
    if ((d <= limit || prefix) && d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

// "a", "a or b", "a, b or c".
std::string join_or(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

std::string join_comma(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) out += ", ";
    out += items[i];
  }
  return out;
}

// A value quoted for a message: control characters escaped, long text cut.
std::string shown(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 60)) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    else
      out += c;
  }
  if (s.size() > 60) out += "...";
  return out;
}

// What a YAML value is, for "expected X, got Y".
std::string describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Scalar:
      if (n.Tag() == "!") return fmt::format("the string \"{}\"", shown(n.Scalar()));
      return fmt::format("'{}'", shown(n.Scalar()));
    default: return "nothing";
  }
}

bool plain_scalar(const YAML::Node& n) { return n.IsScalar() && n.Tag() != "!"; }

// A whole number, decimal or 0x-hex, from a plain (unquoted) scalar.
std::optional<uint64_t> parse_uint(const YAML::Node& n) {
  if (!plain_scalar(n)) return std::nullopt;
  std::string_view s = n.Scalar();
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc{} || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// YAML 1.2 core schema booleans, plain scalars only.
std::optional<bool> parse_bool(const YAML::Node& n) {
  if (!plain_scalar(n)) return std::nullopt;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  return std::nullopt;
}

std::vector<std::string> key_list(Keys keys) { return {keys.begin(), keys.end()}; }

std::string prefixed(std::string_view ctx, std::string_view message) {
  return ctx.empty() ? std::string(message) : fmt::format("{}: {}", ctx, message);
}

// "host:port" or "[v6]:port"; port 1..65535.
std::optional<UdpAddress> parse_host_port(std::string_view s) {
  UdpAddress a;
  std::string_view port;
  if (!s.empty() && s[0] == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return std::nullopt;
    a.host = std::string(s.substr(1, close - 1));
    if (!parse_ip(a.host) || a.host.find(':') == std::string::npos) return std::nullopt;
    port = s.substr(close + 2);
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) return std::nullopt;
    a.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
    const bool ok_host = std::all_of(a.host.begin(), a.host.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    });
    if (!ok_host) return std::nullopt;
  }
  unsigned p = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p, 10);
  if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || p == 0 || p > 65535) return std::nullopt;
  a.port = static_cast<uint16_t>(p);
  return a;
}

// A Linux interface name (dev_valid_name(): 1..15 bytes, not "." or "..",
// no '/', ':' or white space).
std::optional<std::string> interface_name_problem(std::string_view s) {
  if (s.empty()) return "'bridge:' needs a host interface name, like bridge:veth0";
  if (s.size() > 15) return fmt::format("interface name '{}' is too long (at most 15 characters)", shown(s));
  if (s == "." || s == ".." ||
      std::any_of(s.begin(), s.end(), [](char c) { return c == '/' || c == ':' || c <= ' ' || c == 0x7f; })) {
    return fmt::format("'{}' is not an interface name (no '/', ':' or spaces)", shown(s));
  }
  return std::nullopt;
}

struct Field {
  std::string key;
  YAML::Node value;
  Position key_pos;
  Position pos;  // the value's, or the key's when the value is empty
};

struct Fields {
  std::vector<Field> items;
  /// Keys suggested for unknown ones: a missing required key that was
  /// suggested is not reported again.
  std::set<std::string> suggested;

  const Field* get(std::string_view key) const {
    for (const auto& f : items) {
      if (f.key == key) return &f;
    }
    return nullptr;
  }
  /// True if `key` is absent and was not suggested for a misspelled key.
  bool missing(const std::string& key) const { return get(key) == nullptr && !suggested.count(key); }
};

struct Named {
  std::string name;
  YAML::Node value;
  Position pos;        // the name (key)
  Position value_pos;  // the value, or the key's when empty
};

class Loader {
 public:
  Loader(std::string file, fs::path directory, const LoadOptions& options) : file_(std::move(file)), options_(options) {
    lab_.directory = std::move(directory);
  }

  std::expected<Lab, Diagnostics> load(std::string_view text, const fs::path& path) {
    lab_.file = path;
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      const Position pos =
          e.mark.is_null() || e.mark.line < 0 ? Position{} : Position{e.mark.line + 1, e.mark.column + 1};
      error(pos, "", fmt::format("YAML syntax error: {}", e.msg));
      return std::unexpected(std::move(diags_));
    }
    try {
      read_lab(root);
      check_lab();
    } catch (const YAML::Exception& e) {
      // Not expected (only iteration and Scalar() are used), but yaml-cpp's
      // exceptions must not leave the module.
      error(position_of(root), "", fmt::format("YAML error: {}", e.msg));
    }
    if (!diags_.empty()) {
      std::stable_sort(diags_.begin(), diags_.end(),
                       [](const Diagnostic& a, const Diagnostic& b) { return a.pos < b.pos; });
      diags_.erase(std::unique(diags_.begin(), diags_.end()), diags_.end());
      return std::unexpected(std::move(diags_));
    }
    return std::move(lab_);
  }

 private:
  void error(Position pos, std::string_view ctx, std::string_view message) {
    diags_.push_back(Diagnostic{file_, pos, prefixed(ctx, message)});
  }

  // "<key>: expected <what>, got <value>".
  void type_error(const Field& f, std::string_view ctx, std::string_view what) {
    error(f.pos, ctx, fmt::format("{}: expected {}, got {}", f.key, what, describe(f.value)));
  }

  // The entries of a map with fixed keys: unknown keys (with a did-you-mean)
  // and duplicate keys are reported; duplicates are left out.
  Fields fields(const YAML::Node& map, std::string_view ctx, Keys keys) {
    Fields out;
    if (!map.IsMap()) return out;
    for (const auto& kv : map) {
      const YAML::Node k = kv.first;
      const Position key_pos = position_of(k);
      if (!k.IsScalar()) {
        error(key_pos, ctx, fmt::format("expected a key name, got {}", describe(k)));
        continue;
      }
      const std::string& key = k.Scalar();
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        const auto suggestion = did_you_mean(key, key_list(keys));
        if (suggestion) {
          error(key_pos, ctx, fmt::format("unknown key '{}' (did you mean '{}'?)", shown(key), *suggestion));
          out.suggested.insert(*suggestion);
        } else {
          error(key_pos, ctx, fmt::format("unknown key '{}' (expected {})", shown(key), join_or(key_list(keys))));
        }
        continue;
      }
      if (const Field* first = out.get(key)) {
        error(key_pos, ctx, fmt::format("duplicate key '{}' (first at line {})", key, first->key_pos.line));
        continue;
      }
      const YAML::Node v = kv.second;
      out.items.push_back(Field{key, v, key_pos, v.IsNull() ? key_pos : position_of(v)});
    }
    return out;
  }

  // The entries of a map from names to settings (nodes, NICs, switches,
  // ports): names defined twice are reported and left out.
  std::vector<Named> named_entries(const YAML::Node& map, std::string_view ctx, std::string_view what) {
    std::vector<Named> out;
    for (const auto& kv : map) {
      const YAML::Node k = kv.first;
      const Position pos = position_of(k);
      if (!k.IsScalar()) {
        error(pos, ctx, fmt::format("expected a {} name, got {}", what, describe(k)));
        continue;
      }
      const std::string& name = k.Scalar();
      const auto first = std::find_if(out.begin(), out.end(), [&](const Named& n) { return n.name == name; });
      if (first != out.end()) {
        error(pos, ctx, fmt::format("{} '{}' is defined twice (first at line {})", what, shown(name), first->pos.line));
        continue;
      }
      const YAML::Node v = kv.second;
      out.push_back(Named{name, v, pos, v.IsNull() ? pos : position_of(v)});
    }
    return out;
  }

  std::optional<std::string> string_value(const Field& f, std::string_view ctx, std::string_view what) {
    if (!f.value.IsScalar()) {
      type_error(f, ctx, what);
      return std::nullopt;
    }
    return f.value.Scalar();
  }

  std::optional<bool> bool_value(const Field& f, std::string_view ctx) {
    const auto b = parse_bool(f.value);
    if (!b) type_error(f, ctx, "true or false");
    return b;
  }

  // ---- the lab ------------------------------------------------------------

  void read_lab(const YAML::Node& root) {
    if (!root.IsDefined() || root.IsNull()) {
      error(Position{1, 1}, "", "the file is empty: a topology needs at least a name and nodes");
      return;
    }
    if (!root.IsMap()) {
      error(position_of(root), "",
            fmt::format("expected a map with name, nodes, switches and links at the top, got {}", describe(root)));
      return;
    }
    const Fields f = fields(root, "", kLabKeys);
    if (const Field* name = f.get("name")) {
      if (auto s = string_value(*name, "", "the lab's name")) {
        if (!valid_name(*s)) {
          error(name->pos, "", fmt::format("name: invalid lab name '{}' ({})", shown(*s), kNameRule));
        }
        lab_.name = *s;
      }
    } else if (f.missing("name")) {
      error(position_of(root), "", "missing key 'name' (the lab's name)");
    }
    lab_.captures = lab_.directory / "captures";
    if (const Field* c = f.get("captures")) read_captures(*c);
    if (const Field* d = f.get("defaults")) read_defaults(*d);
    if (const Field* nodes = f.get("nodes")) {
      read_nodes(*nodes);
    } else if (f.missing("nodes")) {
      error(position_of(root), "", "missing key 'nodes' (the lab's guests)");
    }
    if (const Field* s = f.get("switches")) read_switches(*s);
    check_names();
    if (const Field* l = f.get("links")) read_links(*l);
  }

  void read_captures(const Field& f) {
    if (const auto b = parse_bool(f.value)) {
      lab_.captures = *b ? std::optional(lab_.directory / "captures") : std::nullopt;
      return;
    }
    if (!f.value.IsScalar() || f.value.Scalar().empty()) {
      type_error(f, "", "a directory, true or false");
      return;
    }
    lab_.captures = (lab_.directory / f.value.Scalar()).lexically_normal();
  }

  void read_defaults(const Field& f) {
    if (f.value.IsNull()) return;
    if (!f.value.IsMap()) {
      type_error(f, "", "a map of image, memory, cpu_engine, timer_slack and nic_model");
      return;
    }
    Defaults& d = lab_.defaults;
    d.pos = f.pos;
    const Fields df = fields(f.value, "defaults", kDefaultsKeys);
    if (const Field* x = df.get("image")) {
      if (auto im = read_image(*x, "defaults")) {
        d.image = std::move(*im);
        defaults_image_written_ = true;
      }
    }
    if (const Field* x = df.get("memory")) {
      if (auto m = read_memory(*x, "defaults")) d.memory_mib = *m;
    }
    if (const Field* x = df.get("cpu_engine")) {
      if (auto e = read_cpu_engine(*x, "defaults")) d.cpu_engine = *e;
    }
    if (const Field* x = df.get("timer_slack")) {
      if (auto t = read_timer_slack(*x, "defaults")) d.timer_slack_ms = *t;
    }
    if (const Field* x = df.get("nic_model")) {
      if (auto m = read_nic_model(*x, "defaults")) d.nic_model = *m;
    }
  }

  std::optional<Image> read_image(const Field& f, std::string_view ctx) {
    Image im;
    im.pos = f.pos;
    if (f.value.IsScalar()) {
      const std::string& s = f.value.Scalar();
      if (s != "default" && s != "i386" && s != "x86_64") {
        error(f.pos, ctx,
              fmt::format("unknown image '{}' (expected default, i386, x86_64, or a map of kernel, initrd and cmdline)",
                          shown(s)));
        return std::nullopt;
      }
      im.name = s;
      return im;
    }
    if (!f.value.IsMap()) {
      type_error(f, ctx, "default, i386, x86_64, or a map of kernel, initrd and cmdline");
      return std::nullopt;
    }
    im.name.clear();
    const std::string ictx = prefixed(ctx, "image");
    const Fields imf = fields(f.value, ictx, kImageKeys);
    bool ok = true;
    for (const char* key : {"kernel", "initrd"}) {
      const Field* x = imf.get(key);
      if (x == nullptr) {
        if (imf.missing(key)) {
          error(f.pos, ictx,
                std::string_view(key) == "initrd" ? "missing key 'initrd' (node.conf travels appended to the initrd)"
                                                  : fmt::format("missing key '{}'", key));
        }
        ok = false;
        continue;
      }
      auto s = string_value(*x, ictx, "a file name");
      if (!s || s->empty()) {
        if (s) type_error(*x, ictx, "a file name");
        ok = false;
        continue;
      }
      const fs::path resolved = (lab_.directory / *s).lexically_normal();
      (std::string_view(key) == "kernel" ? im.kernel : im.initrd) = resolved;
      if (options_.check_files && checked_files_.insert(resolved).second) {
        if (auto problem = file_problem(resolved)) {
          const std::string where = fs::path(*s).is_absolute() ? "" : fmt::format(" ({})", resolved.string());
          error(x->pos, ictx, fmt::format("{} '{}' {}{}", key, shown(*s), *problem, where));
        }
      }
    }
    if (const Field* x = imf.get("cmdline")) {
      if (auto s = string_value(*x, ictx, "a kernel command line")) im.cmdline = *s;
    }
    if (!ok) return std::nullopt;
    return im;
  }

  static std::optional<std::string> file_problem(const fs::path& p) {
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (!fs::exists(st)) return "does not exist";
    if (!fs::is_regular_file(st)) return "is not a regular file";
    return std::nullopt;
  }

  /// A whole number of `unit` from `lo` to `hi`, else a type error.
  std::optional<unsigned> read_whole(const Field& f, std::string_view ctx, std::string_view unit, unsigned lo,
                                     unsigned hi) {
    const auto v = parse_uint(f.value);
    if (!v || *v < lo || *v > hi) {
      type_error(f, ctx, fmt::format("a whole number of {} from {} to {}", unit, lo, hi));
      return std::nullopt;
    }
    return static_cast<unsigned>(*v);
  }
  std::optional<unsigned> read_memory(const Field& f, std::string_view ctx) {
    return read_whole(f, ctx, "MiB", kMinMemoryMib, kMaxMemoryMib);
  }
  std::optional<unsigned> read_timer_slack(const Field& f, std::string_view ctx) {
    return read_whole(f, ctx, "milliseconds", 0, kMaxTimerSlackMs);
  }

  std::optional<CpuEngine> read_cpu_engine(const Field& f, std::string_view ctx) {
    if (!f.value.IsScalar()) {
      type_error(f, ctx, "auto, kvm or emulator");
      return std::nullopt;
    }
    const std::string& s = f.value.Scalar();
    if (s == "auto") return CpuEngine::kAuto;
    if (s == "kvm") return CpuEngine::kKvm;
    if (s == "emulator") return CpuEngine::kEmulator;
    error(f.pos, ctx, fmt::format("unknown CPU engine '{}' (expected auto, kvm or emulator)", shown(s)));
    return std::nullopt;
  }

  std::optional<NicModel> read_nic_model(const Field& f, std::string_view ctx) {
    if (!f.value.IsScalar()) {
      type_error(f, ctx, "rtl8029 or ne2000");
      return std::nullopt;
    }
    const std::string& s = f.value.Scalar();
    if (s == "rtl8029") return NicModel::kRtl8029;
    if (s == "ne2000") return NicModel::kNe2000;
    error(f.pos, ctx, fmt::format("unknown NIC model '{}' (expected rtl8029 or ne2000)", shown(s)));
    return std::nullopt;
  }

  // ---- nodes --------------------------------------------------------------

  void read_nodes(const Field& f) {
    if (f.value.IsNull()) return;
    if (!f.value.IsMap()) {
      type_error(f, "", "a map of node names to their settings");
      return;
    }
    for (const Named& n : named_entries(f.value, "", "node")) {
      const std::string ctx = fmt::format("node '{}'", shown(n.name));
      check_element_name(n, ctx);
      Node node;
      node.name = n.name;
      node.pos = n.pos;
      node.image = lab_.defaults.image;
      node.memory_mib = lab_.defaults.memory_mib;
      node.cpu_engine = lab_.defaults.cpu_engine;
      node.timer_slack_ms = lab_.defaults.timer_slack_ms;
      bool own_image = false;
      if (n.value.IsMap()) {
        const Fields nf = fields(n.value, ctx, kNodeKeys);
        if (const Field* x = nf.get("image")) {
          if (auto im = read_image(*x, ctx)) {
            node.image = std::move(*im);
            own_image = true;
          }
        }
        if (const Field* x = nf.get("memory")) {
          if (auto m = read_memory(*x, ctx)) node.memory_mib = *m;
        }
        if (const Field* x = nf.get("cpu_engine")) {
          if (auto e = read_cpu_engine(*x, ctx)) node.cpu_engine = *e;
        }
        if (const Field* x = nf.get("timer_slack")) {
          if (auto t = read_timer_slack(*x, ctx)) node.timer_slack_ms = *t;
        }
        if (const Field* x = nf.get("nics")) read_nics(*x, ctx, node);
        if (const Field* x = nf.get("routes")) read_routes(*x, ctx, node);
        if (const Field* x = nf.get("forwarding")) {
          if (auto b = bool_value(*x, ctx)) node.forwarding = *b;
        }
        if (const Field* x = nf.get("run")) read_run(*x, ctx, node);
      } else if (!n.value.IsNull()) {
        error(n.value_pos, ctx, fmt::format("expected a map of the node's settings, got {}", describe(n.value)));
      }
      own_image_.push_back(own_image);
      lab_.nodes.push_back(std::move(node));
    }
  }

  void check_element_name(const Named& n, std::string_view ctx) {
    if (n.name == "bridge" || n.name == "udp") {
      error(n.pos, ctx,
            fmt::format("'{}' is reserved for {} endpoints", n.name,
                        n.name == "bridge" ? "bridge:IFNAME" : "udp:HOST:PORT"));
    } else if (!valid_name(n.name)) {
      error(n.pos, ctx, fmt::format("invalid name ({})", kNameRule));
    }
  }

  void read_nics(const Field& f, std::string_view ctx, Node& node) {
    if (f.value.IsNull()) return;
    if (!f.value.IsMap()) {
      type_error(f, ctx, "a map of NIC names (eth0..eth3) to their settings");
      return;
    }
    for (const Named& n : named_entries(f.value, ctx, "NIC")) {
      const std::string nctx = fmt::format("{}: NIC '{}'", ctx, shown(n.name));
      Nic nic;
      nic.name = n.name;
      nic.pos = n.pos;
      nic.model = lab_.defaults.nic_model;
      nic.index = kBadIndex;
      unsigned idx = 0;
      const std::string_view nm = n.name;
      if (nm.size() > 3 && nm.starts_with("eth") && (nm.size() == 4 || nm[3] != '0') &&
          std::from_chars(nm.data() + 3, nm.data() + nm.size(), idx).ptr == nm.data() + nm.size()) {
        if (idx < kMaxNics) {
          nic.index = idx;
        } else {
          error(n.pos, nctx, "a node has at most four NICs, eth0 to eth3");
        }
      } else {
        error(n.pos, nctx, "NICs are named eth0 to eth3, as the guest names its cards");
      }
      // The written io and irq if valid (kNone otherwise).
      constexpr uint64_t kNone = ~uint64_t{0};
      uint64_t io = kNone, irq = kNone;
      if (n.value.IsMap()) {
        const Fields nf = fields(n.value, nctx, kNicKeys);
        if (const Field* x = nf.get("model")) {
          nic.model_pos = x->pos;
          // The message names the node only, as the issue spells it.
          if (auto m = read_nic_model(*x, x->value.IsScalar() ? ctx : std::string_view(nctx))) nic.model = *m;
        }
        if (const Field* x = nf.get("mac")) {
          nic.mac_pos = x->pos;
          if (auto s = string_value(*x, nctx, "a MAC address like 02:00:00:00:00:01")) {
            if (auto mac = parse_mac(*s)) {
              nic.mac = *mac;
              nic.mac_derived = false;
            } else {
              error(x->pos, nctx, mac.error());
            }
          }
        }
        if (const Field* x = nf.get("io")) {
          nic.io_pos = x->pos;
          const auto v = parse_uint(x->value);
          if (!v) {
            type_error(*x, nctx, "an I/O port like 0x300");
            io_invalid_.insert({node.name, nic.name});
          } else if (*v < kIsaIoMin || *v > kIsaIoMax || *v % kIsaIoSize != 0) {
            error(x->pos, nctx,
                  fmt::format("io {:#x} is not an NE2000 jumper setting (0x200 to 0x3e0 in steps of 0x20)", *v));
            io_invalid_.insert({node.name, nic.name});
          } else {
            io = *v;
          }
        }
        if (const Field* x = nf.get("irq")) {
          nic.irq_pos = x->pos;
          const auto v = parse_uint(x->value);
          if (!v) {
            type_error(*x, nctx, "an IRQ number");
            irq_invalid_.insert({node.name, nic.name});
          } else if (std::find(std::begin(kIsaIrqs), std::end(kIsaIrqs), *v) == std::end(kIsaIrqs)) {
            error(x->pos, nctx,
                  fmt::format("irq {} is not free for an ISA card on this PC (expected 5, 7, 9, 10, 11 or 12)", *v));
            irq_invalid_.insert({node.name, nic.name});
          } else {
            irq = *v;
          }
        }
        if (nic.model == NicModel::kRtl8029 && (nf.get("io") || nf.get("irq"))) {
          const Position at = nf.get("io") ? nf.get("io")->key_pos : nf.get("irq")->key_pos;
          error(at, nctx, "io and irq are for ne2000 cards (an rtl8029 gets its resources from the PCI host)");
        }
        if (const Field* x = nf.get("addresses")) read_addresses(*x, nctx, nic);
      } else if (!n.value.IsNull()) {
        error(n.value_pos, nctx, fmt::format("expected a map of the NIC's settings, got {}", describe(n.value)));
      }
      if (nic.model == NicModel::kNe2000) {
        nic.io = io != kNone ? static_cast<uint16_t>(io) : kIsaDefaultIo;
        nic.irq = irq != kNone ? static_cast<uint8_t>(irq) : kIsaDefaultIrq;
      }
      node.nics.push_back(std::move(nic));
    }
    std::stable_sort(node.nics.begin(), node.nics.end(), [](const Nic& a, const Nic& b) { return a.index < b.index; });
  }

  void read_addresses(const Field& f, std::string_view nctx, Nic& nic) {
    if (!f.value.IsSequence()) {
      type_error(f, nctx, "a list of addresses like [10.0.0.1/24]");
      return;
    }
    for (const YAML::Node& a : f.value) {
      const Position pos = position_of(a);
      if (!a.IsScalar()) {
        error(pos, nctx, fmt::format("addresses: expected an address like 10.0.0.1/24, got {}", describe(a)));
        continue;
      }
      auto c = parse_cidr(a.Scalar());
      if (!c) {
        error(pos, nctx, c.error());
        continue;
      }
      const unsigned host_bits_min = c->address.v6 ? 127 : 31;
      if (c->prefix < host_bits_min && c->is_network()) {
        error(pos, nctx,
              fmt::format("address {} is its subnet's network address (the host part is all zeros)", format_cidr(*c)));
        continue;
      }
      if (c->is_ipv4_broadcast()) {
        error(pos, nctx, fmt::format("address {} is its subnet's broadcast address", format_cidr(*c)));
        continue;
      }
      const auto same = std::find_if(nic.addresses.begin(), nic.addresses.end(),
                                     [&](const Cidr& o) { return o.address == c->address; });
      if (same != nic.addresses.end()) {
        error(pos, nctx,
              fmt::format("address {} is listed twice (first at line {})", format_ip(c->address),
                          nic.address_pos[static_cast<size_t>(same - nic.addresses.begin())].line));
        continue;
      }
      nic.addresses.push_back(*c);
      nic.address_pos.push_back(pos);
    }
  }

  void read_routes(const Field& f, std::string_view ctx, Node& node) {
    if (f.value.IsNull()) return;
    if (!f.value.IsSequence()) {
      type_error(f, ctx, "a list of routes like {to: 10.0.1.0/24, via: 10.0.0.254}");
      return;
    }
    unsigned number = 0;
    for (const YAML::Node& r : f.value) {
      ++number;
      const std::string rctx = fmt::format("{}: route {}", ctx, number);
      const Position pos = position_of(r);
      if (!r.IsMap()) {
        error(pos, rctx, fmt::format("expected a map like {{to: 10.0.1.0/24, via: 10.0.0.254}}, got {}", describe(r)));
        continue;
      }
      const Fields rf = fields(r, rctx, kRouteKeys);
      Route route;
      route.number = number;
      route.pos = pos;
      bool ok = true;
      const Field* to = rf.get("to");
      const Field* via = rf.get("via");
      if (rf.missing("to")) error(pos, rctx, "missing key 'to' (a network like 10.0.1.0/24, or default)");
      if (rf.missing("via")) error(pos, rctx, "missing key 'via' (the gateway's address)");
      if (!to || !via) continue;
      route.to_pos = to->pos;
      route.via_pos = via->pos;
      if (auto s = string_value(*to, rctx, "a network like 10.0.1.0/24, or default")) {
        if (*s != "default") {
          if (auto c = parse_cidr(*s)) {
            if (!c->is_network()) {
              error(to->pos, rctx,
                    fmt::format("to {}: the host bits are set (the network is {})", format_cidr(*c),
                                format_cidr(Cidr{c->network(), c->prefix})));
              ok = false;
            }
            route.to = *c;
          } else {
            error(to->pos, rctx, fmt::format("to: {}", c.error()));
            ok = false;
          }
        }
      } else {
        ok = false;
      }
      if (auto s = string_value(*via, rctx, "an IP address")) {
        if (auto ip = parse_ip(*s)) {
          route.via = *ip;
        } else {
          error(via->pos, rctx, fmt::format("via: {}", ip.error()));
          ok = false;
        }
      } else {
        ok = false;
      }
      if (const Field* dev = rf.get("dev")) {
        route.dev_pos = dev->pos;
        if (auto s = string_value(*dev, rctx, "a NIC name like eth0")) {
          route.dev = *s;
          if (!node.find_nic(*s)) {
            error(dev->pos, rctx, fmt::format("dev '{}': the node has no such NIC", shown(*s)));
            ok = false;
          }
        } else {
          ok = false;
        }
      }
      if (ok && route.to && route.to->address.v6 != route.via.v6) {
        error(via->pos, rctx,
              fmt::format("gateway {} is {} but the destination {} is {}", format_ip(route.via),
                          route.via.v6 ? "IPv6" : "IPv4", format_cidr(*route.to),
                          route.to->address.v6 ? "IPv6" : "IPv4"));
        ok = false;
      }
      if (ok) node.routes.push_back(std::move(route));
    }
  }

  void read_run(const Field& f, std::string_view ctx, Node& node) {
    std::vector<std::pair<std::string, Position>> commands;
    if (f.value.IsScalar()) {
      commands.emplace_back(f.value.Scalar(), f.pos);
    } else if (f.value.IsSequence()) {
      for (const YAML::Node& c : f.value) {
        if (!c.IsScalar()) {
          error(position_of(c), ctx, fmt::format("run: expected a shell command, got {}", describe(c)));
          continue;
        }
        commands.emplace_back(c.Scalar(), position_of(c));
      }
    } else {
      type_error(f, ctx, "a shell command or a list of them");
      return;
    }
    for (auto& [cmd, pos] : commands) {
      if (cmd.find_first_of("\r\n") != std::string::npos) {
        error(pos, ctx, "run: a command must be one line (node.conf runs each line by itself; use a list)");
      } else if (cmd.find_first_not_of(" \t") == std::string::npos) {
        error(pos, ctx, "run: empty command");
      } else {
        node.run.push_back(std::move(cmd));
      }
    }
  }

  // ---- switches -----------------------------------------------------------

  void read_switches(const Field& f) {
    if (f.value.IsNull()) return;
    if (!f.value.IsMap()) {
      type_error(f, "", "a map of switch names to their settings");
      return;
    }
    for (const Named& n : named_entries(f.value, "", "switch")) {
      const std::string ctx = fmt::format("switch '{}'", shown(n.name));
      check_element_name(n, ctx);
      Switch sw;
      sw.name = n.name;
      sw.pos = n.pos;
      if (n.value.IsMap()) {
        const Fields sf = fields(n.value, ctx, kSwitchKeys);
        if (const Field* p = sf.get("ports")) read_ports(*p, ctx, sw);
      } else if (!n.value.IsNull()) {
        error(n.value_pos, ctx, fmt::format("expected a map of the switch's settings, got {}", describe(n.value)));
      }
      lab_.switches.push_back(std::move(sw));
    }
  }

  std::optional<uint16_t> read_vlan(const YAML::Node& v, Position pos, std::string_view ctx, std::string_view key) {
    const auto n = parse_uint(v);
    if (!n) {
      error(pos, ctx, fmt::format("{}: expected a VLAN ID (1 to 4094), got {}", key, describe(v)));
      return std::nullopt;
    }
    if (*n < kMinVlan || *n > kMaxVlan) {
      error(pos, ctx, fmt::format("VLAN {} is outside {}..{}", *n, kMinVlan, kMaxVlan));
      return std::nullopt;
    }
    return static_cast<uint16_t>(*n);
  }

  void read_ports(const Field& f, std::string_view ctx, Switch& sw) {
    sw.ports_listed = true;
    if (f.value.IsNull()) return;
    if (!f.value.IsMap()) {
      type_error(f, ctx, "a map of port names to their VLAN settings");
      return;
    }
    for (const Named& n : named_entries(f.value, ctx, "port")) {
      const std::string pctx = fmt::format("{}: port '{}'", ctx, shown(n.name));
      SwitchPort port;
      port.name = n.name;
      port.pos = n.pos;
      if (!valid_name(n.name)) error(n.pos, pctx, fmt::format("invalid name ({})", kNameRule));
      if (n.value.IsMap()) {
        const Fields pf = fields(n.value, pctx, kPortKeys);
        const Field* vlan = pf.get("vlan");
        const Field* trunk = pf.get("trunk");
        const Field* native = pf.get("native");
        if (vlan && trunk) {
          error(trunk->key_pos, pctx, "a port is an access port (vlan) or a trunk (trunk), not both");
        } else if (vlan) {
          if (auto v = read_vlan(vlan->value, vlan->pos, pctx, "vlan")) port.vlans.vlan = *v;
        } else if (trunk) {
          port.vlans.mode = PortVlans::Mode::kTrunk;
          read_trunk(*trunk, pctx, port.vlans);
        }
        if (native) {
          if (!trunk) {
            error(native->key_pos, pctx, "native is for trunk ports (give trunk: too)");
          } else if (auto v = read_vlan(native->value, native->pos, pctx, "native")) {
            port.vlans.native = *v;
          }
        }
      } else if (!n.value.IsNull()) {
        error(n.value_pos, pctx,
              fmt::format("expected a map like {{vlan: 10}} or {{trunk: [10, 20]}}, got {}", describe(n.value)));
      }
      sw.ports.push_back(std::move(port));
    }
  }

  void read_trunk(const Field& f, std::string_view pctx, PortVlans& vlans) {
    if (f.value.IsScalar() && f.value.Scalar() == "all" && plain_scalar(f.value)) {
      vlans.all = true;
      return;
    }
    if (!f.value.IsSequence()) {
      type_error(f, pctx, "a list of VLAN IDs, or all");
      return;
    }
    if (f.value.size() == 0) {
      error(f.pos, pctx, "trunk: list the VLANs it carries, or write all");
      return;
    }
    for (const YAML::Node& v : f.value) {
      const Position pos = position_of(v);
      if (auto id = read_vlan(v, pos, pctx, "trunk")) {
        if (std::find(vlans.allowed.begin(), vlans.allowed.end(), *id) != vlans.allowed.end()) {
          error(pos, pctx, fmt::format("VLAN {} is listed twice", *id));
          continue;
        }
        vlans.allowed.push_back(*id);
      }
    }
    std::sort(vlans.allowed.begin(), vlans.allowed.end());
  }

  // Nodes and switches share one namespace: a link endpoint "x:y" names either.
  void check_names() {
    for (const Switch& sw : lab_.switches) {
      if (const Node* n = lab_.find_node(sw.name)) {
        error(sw.pos, fmt::format("switch '{}'", shown(sw.name)),
              fmt::format("the name is already node '{}''s (line {}); nodes and switches need distinct names",
                          shown(n->name), n->pos.line));
      }
    }
  }

  // ---- links --------------------------------------------------------------

  std::vector<std::string> element_names() const {
    std::vector<std::string> names;
    for (const Node& n : lab_.nodes) names.push_back(n.name);
    for (const Switch& s : lab_.switches) names.push_back(s.name);
    return names;
  }

  Switch* find_switch(std::string_view name) {
    for (Switch& s : lab_.switches) {
      if (s.name == name) return &s;
    }
    return nullptr;
  }

  std::optional<Endpoint> read_endpoint(const YAML::Node& v, std::string_view ctx) {
    const Position pos = position_of(v);
    if (!v.IsScalar()) {
      error(pos, ctx, fmt::format("expected an endpoint like alice:eth0, sw1 or sw1:p1, got {}", describe(v)));
      return std::nullopt;
    }
    Endpoint e;
    e.text = v.Scalar();
    e.pos = pos;
    const std::string_view text = e.text;
    const auto colon = text.find(':');
    const std::string_view head = text.substr(0, colon);
    const std::optional<std::string_view> rest =
        colon == std::string_view::npos ? std::nullopt : std::optional(text.substr(colon + 1));
    if (text.empty()) {
      error(pos, ctx, "empty endpoint (expected node:nic, switch, switch:port, bridge:IFNAME or udp:HOST:PORT)");
      return std::nullopt;
    }
    if (head == "bridge") {
      e.kind = Endpoint::Kind::kBridge;
      e.name = std::string(rest.value_or(""));
      if (auto problem = interface_name_problem(e.name)) {
        error(pos, ctx, *problem);
        return std::nullopt;
      }
      return e;
    }
    if (head == "udp") {
      e.kind = Endpoint::Kind::kUdp;
      auto a = rest ? parse_host_port(*rest) : std::nullopt;
      if (!a) {
        error(pos, ctx,
              fmt::format("'{}' is not udp:HOST:PORT (like udp:127.0.0.1:4000, or udp:[::1]:4000)", shown(text)));
        return std::nullopt;
      }
      e.remote = *a;
      return e;
    }
    const Node* node = lab_.find_node(head);
    Switch* sw = node ? nullptr : find_switch(head);
    if (!node && !sw) {
      const auto suggestion = did_you_mean(head, element_names());
      error(pos, ctx,
            suggestion ? fmt::format("no node or switch '{}' (did you mean '{}'?)", shown(head), *suggestion)
                       : fmt::format("no node or switch '{}'", shown(head)));
      return std::nullopt;
    }
    e.name = std::string(head);
    if (node) {
      e.kind = Endpoint::Kind::kNic;
      if (!rest) {
        error(pos, ctx, fmt::format("'{}' is a node: name one of its NICs, like {}:eth0", shown(head), shown(head)));
        return std::nullopt;
      }
      e.sub = std::string(*rest);
      if (!node->find_nic(e.sub)) {
        std::vector<std::string> names;
        for (const Nic& n : node->nics) names.push_back(n.name);
        error(pos, ctx,
              fmt::format("node '{}' has no NIC '{}' ({})", shown(head), shown(e.sub),
                          names.empty() ? std::string("it has none") : "it has " + join_comma(names)));
        return std::nullopt;
      }
      return e;
    }
    e.kind = Endpoint::Kind::kSwitchPort;
    if (!rest) {
      e.automatic_port = true;
      return e;
    }
    e.sub = std::string(*rest);
    if (sw->find_port(e.sub)) return e;
    if (sw->ports_listed) {
      std::vector<std::string> names;
      for (const SwitchPort& p : sw->ports) names.push_back(p.name);
      const auto suggestion = did_you_mean(e.sub, names);
      error(pos, ctx,
            suggestion ? fmt::format("switch '{}' has no port '{}' (did you mean '{}'?)", shown(head), shown(e.sub),
                                     *suggestion)
                       : fmt::format("switch '{}' has no port '{}' ({})", shown(head), shown(e.sub),
                                     names.empty() ? std::string("its ports: map is empty")
                                                   : "its ports are " + join_comma(names)));
      return std::nullopt;
    }
    if (!valid_name(e.sub)) {
      error(pos, ctx, fmt::format("invalid port name '{}' ({})", shown(e.sub), kNameRule));
      return std::nullopt;
    }
    SwitchPort port;
    port.name = e.sub;
    port.pos = pos;
    sw->ports.push_back(std::move(port));
    return e;
  }

  void read_links(const Field& f) {
    if (f.value.IsNull()) return;
    if (!f.value.IsSequence()) {
      type_error(f, "", "a list of links like [alice:eth0, sw1]");
      return;
    }
    // Endpoints in use: canonical text -> (link number, position).
    std::map<std::string, std::pair<unsigned, Position>> used;
    std::map<UdpAddress, std::pair<unsigned, Position>> locals;
    unsigned number = 0;
    for (const YAML::Node& item : f.value) {
      ++number;
      const std::string ctx = fmt::format("link {}", number);
      Link link;
      link.number = number;
      link.pos = position_of(item);
      YAML::Node ends;  // a sequence
      Position ends_pos = link.pos;
      const Field* local = nullptr;
      Fields lf;
      if (item.IsSequence()) {
        ends = item;
      } else if (item.IsMap()) {
        lf = fields(item, ctx, kLinkKeys);
        const Field* e = lf.get("endpoints");
        if (!e) {
          if (lf.missing("endpoints")) error(link.pos, ctx, "missing key 'endpoints' (the link's two ends)");
          continue;
        }
        if (!e->value.IsSequence()) {
          type_error(*e, ctx, "a list of two endpoints");
          continue;
        }
        ends = e->value;
        ends_pos = e->pos;
        if (const Field* c = lf.get("capture")) {
          if (auto b = bool_value(*c, ctx)) link.capture = *b;
        }
        local = lf.get("local");
      } else {
        error(link.pos, ctx, fmt::format("expected [A, B] or a map with endpoints, got {}", describe(item)));
        continue;
      }
      if (ends.size() != 2) {
        error(ends_pos, ctx, fmt::format("expected two endpoints, got {}", ends.size()));
        continue;
      }
      const YAML::Node& pair = ends;  // const: indexing never changes the node
      auto a = read_endpoint(pair[0], ctx);
      auto b = read_endpoint(pair[1], ctx);
      if (local) {
        link.local_pos = local->pos;
        const bool udp = (a && a->kind == Endpoint::Kind::kUdp) || (b && b->kind == Endpoint::Kind::kUdp);
        if (auto s = string_value(*local, ctx, "HOST:PORT")) {
          if (auto addr = parse_host_port(*s)) {
            link.local = *addr;
          } else {
            error(local->pos, ctx, fmt::format("local '{}' is not HOST:PORT (like 127.0.0.1:4001)", shown(*s)));
          }
        }
        if (!udp && (a && b)) error(local->key_pos, ctx, "local is for links with a udp: endpoint");
      }
      if (!a || !b) continue;
      link.ends = {std::move(*a), std::move(*b)};
      if (!check_link_ends(link, ctx, used, locals)) continue;
      lab_.links.push_back(std::move(link));
    }
    assign_automatic_ports();
    for (Link& l : lab_.links) {
      std::string n0 = l.ends[0].to_string(), n1 = l.ends[1].to_string();
      std::replace(n0.begin(), n0.end(), ':', '.');
      std::replace(n1.begin(), n1.end(), ':', '.');
      l.name = n0 + "--" + n1;
    }
  }

  bool check_link_ends(const Link& link, std::string_view ctx,
                       std::map<std::string, std::pair<unsigned, Position>>& used,
                       std::map<UdpAddress, std::pair<unsigned, Position>>& locals) {
    const Endpoint& a = link.ends[0];
    const Endpoint& b = link.ends[1];
    const auto external = [](const Endpoint& e) {
      return e.kind == Endpoint::Kind::kBridge || e.kind == Endpoint::Kind::kUdp;
    };
    if (external(a) && external(b)) {
      error(
          link.pos, ctx,
          fmt::format("{} and {}: a link needs a node or a switch at one end at least", a.to_string(), b.to_string()));
      return false;
    }
    if (a.kind == Endpoint::Kind::kSwitchPort && b.kind == Endpoint::Kind::kSwitchPort && a.name == b.name) {
      error(b.pos, ctx,
            fmt::format("both ends are on switch '{}': a loop (the fabric has no spanning tree)", shown(a.name)));
      return false;
    }
    bool ok = true;
    std::vector<std::string> keys;
    for (const Endpoint* e : {&a, &b}) {
      if (e->kind == Endpoint::Kind::kUdp || e->automatic_port) continue;
      const std::string key = e->to_string();
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        error(e->pos, ctx, fmt::format("both ends are {}", key));
        ok = false;
        continue;
      }
      keys.push_back(key);
      if (const auto it = used.find(key); it != used.end()) {
        error(e->pos, ctx,
              fmt::format("{} is already used by link {} (line {})", key, it->second.first, it->second.second.line));
        ok = false;
      }
    }
    if (link.local) {
      if (const auto it = locals.find(*link.local); it != locals.end()) {
        error(link.local_pos, ctx,
              fmt::format("local {} is already used by link {} (line {})", link.local->to_string(), it->second.first,
                          it->second.second.line));
        ok = false;
      }
    }
    if (!ok) return false;
    for (const auto& key : keys) used.emplace(key, std::pair(link.number, link.pos));
    if (link.local) locals.emplace(*link.local, std::pair(link.number, link.local_pos));
    return true;
  }

  // Ports for endpoints that name only a switch: "p1", "p2", ... skipping
  // names already taken, in link order.
  void assign_automatic_ports() {
    for (Link& l : lab_.links) {
      for (Endpoint& e : l.ends) {
        if (!e.automatic_port) continue;
        Switch* sw = find_switch(e.name);
        for (unsigned n = 1;; ++n) {
          std::string name = fmt::format("p{}", n);
          if (!sw->find_port(name)) {
            e.sub = name;
            SwitchPort port;
            port.name = std::move(name);
            port.automatic = true;
            port.pos = e.pos;
            sw->ports.push_back(std::move(port));
            break;
          }
        }
      }
    }
  }

  // ---- checks across elements ---------------------------------------------

  void check_lab() {
    check_switch_loops();
    check_trunk_natives();
    for (Node& node : lab_.nodes) check_node(node);
    check_segments();
    resolve_images();
  }

  // The switches and the links between them must form a forest: a second
  // path between two switches is a loop, and the fabric floods without a
  // spanning tree.
  void check_switch_loops() {
    struct Edge {
      std::string a, b;
      unsigned link;
    };
    std::vector<Edge> edges;
    for (const Link& l : lab_.links) {
      if (l.ends[0].kind != Endpoint::Kind::kSwitchPort || l.ends[1].kind != Endpoint::Kind::kSwitchPort) continue;
      const std::string& a = l.ends[0].name;
      const std::string& b = l.ends[1].name;
      if (auto path = switch_path(edges, a, b)) {
        std::vector<std::string> numbers;
        for (unsigned n : *path) numbers.push_back(std::to_string(n));
        error(l.pos, fmt::format("link {}", l.number),
              fmt::format("switches '{}' and '{}' are already connected (by link{} {}): a second path makes a loop, "
                          "and the fabric has no spanning tree",
                          shown(a), shown(b), numbers.size() > 1 ? "s" : "", join_comma(numbers)));
        continue;
      }
      edges.push_back(Edge{a, b, l.number});
    }
  }

  // The link numbers of the path from switch `from` to `to`, if any.
  template <class Edges>
  static std::optional<std::vector<unsigned>> switch_path(const Edges& edges, const std::string& from,
                                                          const std::string& to) {
    std::map<std::string, std::pair<std::string, unsigned>> came_from;  // switch -> (previous, link)
    std::vector<std::string> queue{from};
    came_from[from] = {"", 0};
    for (size_t i = 0; i < queue.size(); ++i) {
      const std::string here = queue[i];
      if (here == to) {
        std::vector<unsigned> path;
        for (std::string s = to; s != from; s = came_from[s].first) path.push_back(came_from[s].second);
        std::reverse(path.begin(), path.end());
        return path;
      }
      for (const auto& e : edges) {
        for (const auto& [x, y] : {std::pair(e.a, e.b), std::pair(e.b, e.a)}) {
          if (x == here && !came_from.count(y)) {
            came_from[y] = {here, e.link};
            queue.push_back(y);
          }
        }
      }
    }
    return std::nullopt;
  }

  // A guest's card sends untagged frames: on a trunk without a native VLAN
  // they would all be dropped.
  void check_trunk_natives() {
    for (const Link& l : lab_.links) {
      for (int i = 0; i < 2; ++i) {
        const Endpoint& nic = l.ends[i];
        const Endpoint& port = l.ends[1 - i];
        if (nic.kind != Endpoint::Kind::kNic || port.kind != Endpoint::Kind::kSwitchPort) continue;
        const SwitchPort* p = lab_.find_switch(port.name)->find_port(port.sub);
        if (p->vlans.mode == PortVlans::Mode::kTrunk && !p->vlans.native) {
          error(port.pos, fmt::format("link {}", l.number),
                fmt::format("{} is a trunk without a native VLAN: the untagged frames of {} would be dropped (give "
                            "the port native:, or make it an access port with vlan:)",
                            port.to_string(), nic.to_string()));
        }
      }
    }
  }

  void check_node(Node& node) {
    const std::string ctx = fmt::format("node '{}'", shown(node.name));
    std::vector<Nic*> nics;
    for (Nic& n : node.nics) {
      if (n.index != kBadIndex) nics.push_back(&n);
    }
    // Names: eth0.. without gaps; each model's cards consecutive.
    for (size_t i = 0; i < nics.size(); ++i) {
      if (nics[i]->index != i) {
        error(nics[i]->pos, ctx,
              fmt::format("NIC '{}': there is no eth{}: the guest names its cards eth0, eth1, ... in order, so NIC "
                          "names must run from eth0 without gaps",
                          nics[i]->name, i));
        break;
      }
    }
    unsigned model_changes = 0;
    for (size_t i = 1; i < nics.size(); ++i) {
      if (nics[i]->model == nics[i - 1]->model) continue;
      if (++model_changes == 2) {
        error(nics[i]->pos, ctx,
              fmt::format("NIC '{}' ({}) comes after {} ({}): the guest kernel names the cards of one driver together, "
                          "so the NICs of each model need consecutive names",
                          nics[i]->name, to_string(nics[i]->model), nics[i - 1]->name, to_string(nics[i - 1]->model)));
        break;
      }
    }
    // Only the i386 image has ne.ko (guest/README.md).
    if (node.image.name == "x86_64") {
      for (const Nic* n : nics) {
        if (n->model != NicModel::kNe2000) continue;
        error(n->model_pos.known() ? n->model_pos : n->pos, fmt::format("{}: NIC '{}'", ctx, n->name),
              "the x86_64 image has no ne2000 driver (ne.ko is built for i386 only): use image i386, or an rtl8029");
      }
    }
    // ISA resources.
    for (size_t i = 0; i < nics.size(); ++i) {
      Nic& n = *nics[i];
      if (n.model != NicModel::kNe2000) continue;
      const std::string nctx = fmt::format("{}: NIC '{}'", ctx, n.name);
      const bool io_ok = !io_invalid_.count({node.name, n.name});
      const bool irq_ok = !irq_invalid_.count({node.name, n.name});
      const std::string io_text = fmt::format("io {:#x}{}", n.io, n.io_pos.known() ? "" : " (the default)");
      const std::string irq_text = fmt::format("irq {}{}", n.irq, n.irq_pos.known() ? "" : " (the default)");
      if (io_ok) {
        for (const auto& fixed : kFixedPorts) {
          if (n.io <= fixed.last && n.io + kIsaIoSize - 1 >= fixed.first) {
            error(n.io_pos.known() ? n.io_pos : n.pos, nctx,
                  fmt::format("io {:#x}: the card's ports {:#x}-{:#x} overlap {} ({:#x}-{:#x})", n.io, n.io,
                              n.io + kIsaIoSize - 1, fixed.name, fixed.first, fixed.last));
          }
        }
        for (size_t j = 0; j < i; ++j) {
          const Nic& o = *nics[j];
          if (o.model == NicModel::kNe2000 && o.io == n.io && !io_invalid_.count({node.name, o.name})) {
            error(n.io_pos.known() ? n.io_pos : n.pos, nctx,
                  fmt::format("{} is already used by {} (give each ne2000 its own io)", io_text, o.name));
            break;
          }
        }
      }
      if (irq_ok) {
        for (size_t j = 0; j < i; ++j) {
          const Nic& o = *nics[j];
          if (o.model == NicModel::kNe2000 && o.irq == n.irq && !irq_invalid_.count({node.name, o.name})) {
            error(n.irq_pos.known() ? n.irq_pos : n.pos, nctx,
                  fmt::format("{} is already used by {} (give each ne2000 its own irq)", irq_text, o.name));
            break;
          }
        }
      }
    }
    // (PCI cards take the first of the IRQs 11, 10, 5, 7 that no ISA card
    // holds (vmcore/nics.cpp): with at most four cards one is always left.)
    // MACs: derived ones, and no two cards of a node alike.
    for (Nic& n : node.nics) {
      if (n.mac_derived && n.index != kBadIndex) n.mac = derived_mac(node.name, n.index);
    }
    for (size_t i = 0; i < nics.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (nics[i]->mac == nics[j]->mac) {
          const bool derived = nics[i]->mac_derived;
          error(derived ? nics[i]->pos : nics[i]->mac_pos, fmt::format("{}: NIC '{}'", ctx, nics[i]->name),
                fmt::format("{}MAC {} is already {}'s (a node's cards need distinct MACs)", derived ? "derived " : "",
                            format_mac(nics[i]->mac), nics[j]->name));
          break;
        }
      }
    }
    check_routes(node, ctx);
  }

  void check_routes(const Node& node, std::string_view ctx) {
    std::vector<std::pair<std::string, Position>> destinations;
    for (const Route& r : node.routes) {
      const std::string rctx = fmt::format("{}: route {}", ctx, r.number);
      const std::string dest = r.to ? format_cidr(*r.to) : (r.via.v6 ? "default (IPv6)" : "default");
      const auto dup =
          std::find_if(destinations.begin(), destinations.end(), [&](const auto& d) { return d.first == dest; });
      if (dup != destinations.end()) {
        error(
            r.to_pos, rctx,
            fmt::format("{} is already given (line {})",
                        r.to ? fmt::format("a route to {}", dest) : std::string("a default route"), dup->second.line));
      } else {
        destinations.emplace_back(dest, r.pos);
      }
      // An IPv6 link-local gateway is reached through `dev` alone.
      const bool link_local = r.via.v6 && r.via.bytes[0] == 0xfe && (r.via.bytes[1] & 0xc0) == 0x80;
      if (link_local) continue;
      std::vector<std::string> subnets;
      bool reachable = false;
      for (const Nic& n : node.nics) {
        if (!r.dev.empty() && n.name != r.dev) continue;
        for (const Cidr& c : n.addresses) {
          if (c.address.v6 != r.via.v6) continue;
          subnets.push_back(format_cidr(c));
          reachable = reachable || c.contains(r.via);
        }
      }
      if (reachable) continue;
      const std::string whose = r.dev.empty() ? "the node's" : r.dev + "'s";
      const std::string family = r.via.v6 ? "IPv6" : "IPv4";
      error(r.via_pos, rctx,
            subnets.empty() ? fmt::format("gateway {} is unreachable: {} has no {} address", format_ip(r.via),
                                          r.dev.empty() ? "the node" : r.dev, family)
                            : fmt::format("gateway {} is on none of {} subnets ({})", format_ip(r.via), whose,
                                          join_comma(subnets)));
    }
  }

  // No two cards on one L2 segment with the same IP address or MAC.
  void check_segments() {
    const std::vector<Segment> segs = segments(lab_);
    std::map<std::pair<std::string, std::string>, size_t> segment_of;
    for (size_t i = 0; i < segs.size(); ++i) {
      for (const NicRef& r : segs[i].nics) segment_of[{r.node, r.nic}] = i;
    }
    struct Owner {
      std::string node, nic;
      Position pos;
    };
    std::map<std::pair<size_t, IpAddress>, Owner> ips;
    std::map<std::pair<size_t, MacAddress>, Owner> macs;
    for (const Node& node : lab_.nodes) {
      for (const Nic& nic : node.nics) {
        const auto seg = segment_of.find({node.name, nic.name});
        if (seg == segment_of.end()) continue;  // a NIC with a bad name
        const std::string ctx = fmt::format("node '{}': NIC '{}'", shown(node.name), nic.name);
        for (size_t a = 0; a < nic.addresses.size(); ++a) {
          const Owner me{node.name, nic.name, nic.address_pos[a]};
          const auto [it, fresh] = ips.emplace(std::pair(seg->second, nic.addresses[a].address), me);
          if (!fresh && !(it->second.node == node.name && it->second.nic == nic.name)) {
            error(
                me.pos, ctx,
                fmt::format("address {} is already used by {}:{} (line {}) on the same segment",
                            format_ip(nic.addresses[a].address), it->second.node, it->second.nic, it->second.pos.line));
          }
        }
        const Owner me{node.name, nic.name, nic.mac_derived ? nic.pos : nic.mac_pos};
        const auto [it, fresh] = macs.emplace(std::pair(seg->second, nic.mac), me);
        if (!fresh && it->second.node != node.name) {
          error(me.pos, ctx,
                fmt::format("{}MAC {} is already used by {}:{} (line {}) on the same segment",
                            nic.mac_derived ? "derived " : "", format_mac(nic.mac), it->second.node, it->second.nic,
                            it->second.pos.line));
        }
      }
    }
  }

  // Named images get their files from the resolver; every image's files
  // are checked once, where the image is chosen.
  void resolve_images() {
    for (size_t i = 0; i < lab_.nodes.size(); ++i) {
      Node& node = lab_.nodes[i];
      Image& im = node.image;
      if (!im.named()) continue;
      const bool from_defaults = !own_image_[i] && defaults_image_written_;
      const std::string ctx = from_defaults ? "defaults" : fmt::format("node '{}'", shown(node.name));
      const Position at = im.pos.known() ? im.pos : node.pos;
      if (!options_.images) continue;
      const auto files = options_.images(im.name);
      if (!files) {
        if (reported_images_.insert(im.name + "\n" + ctx).second) {
          error(at, ctx, fmt::format("image '{}': no such image here", im.name));
        }
        continue;
      }
      im.kernel = files->kernel;
      im.initrd = files->initrd;
      if (!options_.check_files) continue;
      for (const auto& [what, path] : {std::pair("kernel", im.kernel), std::pair("initrd", im.initrd)}) {
        if (!checked_files_.insert(path).second) continue;
        if (auto problem = file_problem(path)) {
          error(at, ctx,
                fmt::format("image '{}': {} {} {} (guest/build-images.sh builds it; scripts/setup.sh runs that)",
                            im.name, what, path.string(), *problem));
        }
      }
    }
  }

  Diagnostics diags_;
  std::string file_;
  const LoadOptions& options_;
  Lab lab_;
  bool defaults_image_written_ = false;
  std::vector<bool> own_image_;                                             // per node: the node names its own image
  std::set<std::pair<std::string, std::string>> io_invalid_, irq_invalid_;  // (node, NIC) with a bad io / irq
  std::set<fs::path> checked_files_;
  std::set<std::string> reported_images_;
};

}  // namespace

ImageResolver guest_image_dir(std::filesystem::path guest_dir) {
  return [dir = std::move(guest_dir)](std::string_view name) -> std::optional<ImageFiles> {
    std::string arch;
    if (name == "default" || name == "i386")
      arch = "i386";
    else if (name == "x86_64")
      arch = "x86_64";
    else
      return std::nullopt;
    return ImageFiles{dir / arch / "vmlinuz", dir / arch / "initrd.cpio"};
  };
}

std::expected<Lab, Diagnostics> load_lab(const std::filesystem::path& path, const LoadOptions& options) {
  const std::string display = options.display_name.value_or(path.string());
  const auto fail = [&](int err) {
    return std::unexpected(Diagnostics{Diagnostic{display, {}, fmt::format("cannot read: {}", std::strerror(err))}});
  };
  std::error_code ec;
  if (fs::is_directory(path, ec)) return fail(EISDIR);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return fail(errno);
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool bad = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (bad) return fail(err);
  Loader loader(display, fs::absolute(path, ec).lexically_normal().parent_path(), options);
  return loader.load(text, path);
}

std::expected<Lab, Diagnostics> parse_lab(std::string_view yaml, const std::filesystem::path& directory,
                                          const LoadOptions& options) {
  std::error_code ec;
  Loader loader(options.display_name.value_or("<text>"), fs::absolute(directory, ec).lexically_normal(), options);
  return loader.load(yaml, {});
}

std::string_view default_lab_text() {
  return R"(# The lab `twoostwo up` brings up without a topology file: two guests on
# one switch. docs/topology.md describes the format.
name: default
captures: twoostwo-captures   # one pcap file per link, in ./twoostwo-captures
defaults:
  image: default          # Debian's i386 kernel and the busybox initramfs
  memory: 128             # MiB
nodes:
  alice:
    nics:
      eth0: {model: rtl8029, addresses: [10.0.0.1/24]}
  bob:
    nics:
      eth0: {model: rtl8029, addresses: [10.0.0.2/24]}
switches:
  sw1: {}
links:
  - [alice:eth0, sw1]
  - [bob:eth0, sw1]
)";
}

}  // namespace twoostwo::topology
