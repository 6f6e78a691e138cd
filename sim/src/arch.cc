// Architecture config files (JSON): parsing with strict key and range checks.
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dmx/json.h"
#include "dmx/sim.h"

#ifndef DMX_RTL_STAGES
#define DMX_RTL_STAGES 4
#endif

namespace dmx::sim {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail(const std::string& origin, const std::string& key, const std::string& what) {
  throw ConfigError(origin + ": key '" + key + "': " + what);
}

void check_keys(const json& obj, const std::string& origin, const std::string& prefix,
                const std::set<std::string>& allowed) {
  if (!obj.is_object()) fail(origin, prefix.empty() ? "<root>" : prefix, "must be a JSON object");
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (!allowed.count(it.key())) {
      std::string known;
      for (const auto& k : allowed) known += (known.empty() ? "" : ", ") + k;
      fail(origin, prefix + it.key(), "unknown key (known here: " + known + ")");
    }
  }
}

// A physical quantity: a finite number in [lo, hi] (lo exclusive unless `inclusive`). The upper
// bounds keep every derived cycle count far inside int64 and every loop short.
double get_number(const json& obj, const std::string& origin, const std::string& prefix,
                  const char* key, double dflt, double lo, bool inclusive, double hi) {
  if (!obj.contains(key)) return dflt;
  const json& v = obj.at(key);
  if (!v.is_number()) fail(origin, prefix + key, "must be a number, got " + v.dump());
  double x = v.get<double>();
  bool ok = (inclusive ? x >= lo : x > lo) && x <= hi;
  if (!std::isfinite(x) || !ok) {
    std::ostringstream os;
    os << "must be in " << (inclusive ? "[" : "(") << lo << ", " << hi << "], got " << v.dump();
    fail(origin, prefix + key, os.str());
  }
  return x;
}

int get_int(const json& obj, const std::string& origin, const std::string& prefix, const char* key,
            int dflt, int min_value) {
  if (!obj.contains(key)) return dflt;
  const json& v = obj.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < min_value || v.get<int64_t>() > (1 << 20))
    fail(origin, prefix + key,
         "must be an integer in [" + std::to_string(min_value) + ", 1048576], got " + v.dump());
  return v.get<int>();
}

MxFormat get_format(const std::string& name, const std::string& origin, const std::string& key) {
  auto f = parse_format(name);
  if (!f) fail(origin, key, "unknown MX format '" + name + "'");
  return *f;
}

std::pair<MxFormat, MxFormat> get_pair(const std::string& text, const std::string& origin,
                                       const std::string& key) {
  auto comma = text.find(',');
  if (comma == std::string::npos) fail(origin, key, "expected \"<weight fmt>,<act fmt>\"");
  return {get_format(text.substr(0, comma), origin, key),
          get_format(text.substr(comma + 1), origin, key)};
}

// Narrowing an operand (to a format of fewer bits) must never make a pair slower or costlier per
// MAC: the cost tables' monotonicity rests on it.
void check_monotone(const ArchConfig& a, const std::string& origin) {
  for (MxFormat w : kAllFormats)
    for (MxFormat f : kAllFormats)
      for (MxFormat n : kAllFormats) {
        if (format_bits(n) >= format_bits(w) && format_bits(n) >= format_bits(f)) continue;
        auto pair = [](MxFormat x, MxFormat y) {
          return std::string(format_name(x)) + "," + format_name(y);
        };
        auto check = [&](MxFormat w0, MxFormat a0, MxFormat w1, MxFormat a1) {
          if (a.pair_throughput(w1, a1) < a.pair_throughput(w0, a0))
            fail(origin, "throughput_pair." + pair(w1, a1),
                 "narrower pair " + pair(w1, a1) + " would issue fewer blocks per cycle than " +
                     pair(w0, a0));
          if (a.mac_pj[int(w1)][int(a1)] > a.mac_pj[int(w0)][int(a0)])
            fail(origin, "energy_pj.mac_pair." + pair(w1, a1),
                 "narrower pair " + pair(w1, a1) + " would cost more pJ per MAC than " +
                     pair(w0, a0));
        };
        if (format_bits(n) < format_bits(w)) check(w, f, n, f);
        if (format_bits(n) < format_bits(f)) check(w, f, w, n);
      }
}

}  // namespace

std::string read_config_file(const std::string& path, const char* what) {
  try {
    return read_regular_file(path, what, kMaxConfigBytes);
  } catch (const InputFileError& e) {
    throw ConfigError(e.what());
  }
}

const char* dataflow_name(Dataflow d) {
  switch (d) {
    case Dataflow::OUTPUT_STATIONARY:
      return "output_stationary";
    case Dataflow::WEIGHT_STATIONARY:
      return "weight_stationary";
    case Dataflow::INPUT_STATIONARY:
      return "input_stationary";
  }
  return "?";
}

std::optional<Dataflow> parse_dataflow(const std::string& s) {
  if (s == "output_stationary" || s == "os") return Dataflow::OUTPUT_STATIONARY;
  if (s == "weight_stationary" || s == "ws") return Dataflow::WEIGHT_STATIONARY;
  if (s == "input_stationary" || s == "is") return Dataflow::INPUT_STATIONARY;
  return std::nullopt;
}

ArchConfig::ArchConfig() {
  for (auto& row : pair_tp) row.fill(1);
  for (auto& row : mac_pj) row.fill(1.0);
}

int ArchConfig::max_throughput() const {
  int t = 1;
  for (const auto& row : pair_tp)
    for (int x : row) t = std::max(t, x);
  return t;
}

void ArchConfig::set_format_throughput(const std::array<int, kNumFormats>& t) {
  for (int w = 0; w < kNumFormats; ++w)
    for (int a = 0; a < kNumFormats; ++a) pair_tp[w][a] = std::min(t[w], t[a]);
}

std::string ArchConfig::fingerprint() const {
  std::ostringstream os;
  os.precision(17);
  os << units << '/' << lanes << '/' << unit_stages << '/' << clock_ghz << '/' << sram_a_kib << '/'
     << sram_b_kib << '/' << sram_c_kib << '/' << dram_gbps << '/' << dram_latency_ns << '/'
     << int(dataflow);
  for (const auto& row : pair_tp)
    for (int t : row) os << '/' << t;
  return os.str();  // energy is applied after simulation: it does not change cycles or bytes
}

ArchConfig parse_arch_json(const std::string& text, const std::string& origin) {
  json j = parse_json<ConfigError>(text, origin);
  check_keys(j, origin, "",
             {"name", "description", "sources", "derivation", "array", "clock_ghz", "sram_kib",
              "dram", "throughput", "throughput_pair", "energy_pj", "static_mw", "dataflow"});
  ArchConfig a;
  a.origin = origin;
  if (j.contains("name")) {
    if (!j["name"].is_string()) fail(origin, "name", "must be a string");
    a.name = j["name"].get<std::string>();
  }
  if (j.contains("description") && !j["description"].is_string())
    fail(origin, "description", "must be a string");
  // The inputs of the derived numbers (sim/configs/derive.py); documentation for the simulator.
  if (j.contains("derivation") && !j["derivation"].is_object())
    fail(origin, "derivation", "must be an object");
  if (j.contains("array")) {
    const json& x = j["array"];
    check_keys(x, origin, "array.", {"units", "lanes", "unit_stages"});
    a.units = get_int(x, origin, "array.", "units", a.units, 1);
    a.lanes = get_int(x, origin, "array.", "lanes", a.lanes, 1);
  }
  a.unit_stages = DMX_RTL_STAGES;
  if (j.contains("array"))
    a.unit_stages = get_int(j["array"], origin, "array.", "unit_stages", a.unit_stages, 1);
  a.clock_ghz = get_number(j, origin, "", "clock_ghz", a.clock_ghz, 1e-3, true, 100);
  if (j.contains("sram_kib")) {
    const json& x = j["sram_kib"];
    check_keys(x, origin, "sram_kib.", {"a", "b", "c"});
    // At least 1 KiB (a tile must hold a few blocks), at most 1 GiB per buffer.
    a.sram_a_kib = get_number(x, origin, "sram_kib.", "a", a.sram_a_kib, 1, true, 1 << 20);
    a.sram_b_kib = get_number(x, origin, "sram_kib.", "b", a.sram_b_kib, 1, true, 1 << 20);
    a.sram_c_kib = get_number(x, origin, "sram_kib.", "c", a.sram_c_kib, 1, true, 1 << 20);
  }
  if (j.contains("dram")) {
    const json& x = j["dram"];
    check_keys(x, origin, "dram.", {"gbps", "latency_ns"});
    a.dram_gbps = get_number(x, origin, "dram.", "gbps", a.dram_gbps, 1e-3, true, 1e7);
    a.dram_latency_ns =
        get_number(x, origin, "dram.", "latency_ns", a.dram_latency_ns, 0, true, 1e6);
  }
  std::array<int, kNumFormats> tp{1, 1, 1, 1, 1, 1};
  if (j.contains("throughput")) {
    const json& x = j["throughput"];
    if (!x.is_object()) fail(origin, "throughput", "must be an object {format: blocks/cycle}");
    for (auto it = x.begin(); it != x.end(); ++it) {
      MxFormat f = get_format(it.key(), origin, "throughput." + it.key());
      tp[int(f)] = get_int(x, origin, "throughput.", it.key().c_str(), 1, 1);
      if (tp[int(f)] > 64) fail(origin, "throughput." + it.key(), "must be at most 64");
    }
  }
  a.set_format_throughput(tp);
  if (j.contains("throughput_pair")) {
    const json& x = j["throughput_pair"];
    if (!x.is_object())
      fail(origin, "throughput_pair", "must be an object {\"W,A\": blocks/cycle}");
    for (auto it = x.begin(); it != x.end(); ++it) {
      auto [w, f] = get_pair(it.key(), origin, "throughput_pair." + it.key());
      a.pair_tp[int(w)][int(f)] = get_int(x, origin, "throughput_pair.", it.key().c_str(), 1, 1);
      if (a.pair_tp[int(w)][int(f)] > 64)
        fail(origin, "throughput_pair." + it.key(), "must be at most 64");
    }
  }
  // Energy: per-format MAC energy (both operands in that format); a mixed pair defaults to the
  // mean of its two formats unless mac_pair gives it ("<weight>,<activation>": pJ).
  std::array<double, kNumFormats> mac_same{};
  mac_same.fill(1.0);
  if (j.contains("energy_pj")) {
    const json& x = j["energy_pj"];
    check_keys(x, origin, "energy_pj.",
               {"mac", "mac_pair", "sram_byte", "sram_read_byte", "sram_write_byte", "dram_byte"});
    if (x.contains("mac")) {
      const json& m = x["mac"];
      if (!m.is_object()) fail(origin, "energy_pj.mac", "must be an object {format: pJ}");
      for (auto it = m.begin(); it != m.end(); ++it) {
        MxFormat f = get_format(it.key(), origin, "energy_pj.mac." + it.key());
        mac_same[int(f)] =
            get_number(m, origin, "energy_pj.mac.", it.key().c_str(), 1, 0, true, 1e6);
      }
    }
    // sram_byte sets reads and writes alike; sram_read_byte / sram_write_byte refine it.
    const double sram =
        get_number(x, origin, "energy_pj.", "sram_byte", a.sram_read_pj_per_byte, 0, true, 1e6);
    a.sram_read_pj_per_byte =
        get_number(x, origin, "energy_pj.", "sram_read_byte", sram, 0, true, 1e6);
    a.sram_write_pj_per_byte =
        get_number(x, origin, "energy_pj.", "sram_write_byte", sram, 0, true, 1e6);
    a.dram_pj_per_byte =
        get_number(x, origin, "energy_pj.", "dram_byte", a.dram_pj_per_byte, 0, true, 1e6);
  }
  for (int w = 0; w < kNumFormats; ++w)
    for (int f = 0; f < kNumFormats; ++f) a.mac_pj[w][f] = 0.5 * (mac_same[w] + mac_same[f]);
  if (j.contains("energy_pj") && j["energy_pj"].contains("mac_pair")) {
    const json& m = j["energy_pj"]["mac_pair"];
    if (!m.is_object()) fail(origin, "energy_pj.mac_pair", "must be an object {\"W,A\": pJ}");
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string key = "energy_pj.mac_pair." + it.key();
      auto [w, f] = get_pair(it.key(), origin, key);
      a.mac_pj[int(w)][int(f)] =
          get_number(m, origin, "energy_pj.mac_pair.", it.key().c_str(), 1, 0, true, 1e6);
    }
  }
  a.static_mw = get_number(j, origin, "", "static_mw", a.static_mw, 0, true, 1e7);
  if (j.contains("dataflow")) {
    const json& d = j["dataflow"];
    auto df = parse_dataflow(d.is_string() ? d.get<std::string>() : "");
    if (!df)
      fail(origin, "dataflow",
           "must be \"output_stationary\", \"weight_stationary\" or \"input_stationary\", got " +
               d.dump());
    a.dataflow = *df;
  }
  check_monotone(a, origin);
  if (a.name.empty()) a.name = origin;
  return a;
}

ArchConfig load_arch(const std::string& path) {
  return parse_arch_json(read_config_file(path, "architecture config"), path);
}

std::string override_arch_key(const std::string& text, const std::string& origin,
                              const std::string& key, const std::string& value) {
  json j = parse_json<ConfigError>(text, origin);
  json v;
  try {
    v = json::parse(value);
  } catch (const json::exception&) {
    v = value;  // a bare word: a string (e.g. dataflow=weight_stationary)
  }
  json* node = &j;
  std::stringstream parts(key);
  std::string part;
  std::vector<std::string> path;
  while (std::getline(parts, part, '.')) path.push_back(part);
  if (path.empty()) throw ConfigError(origin + ": empty --vary key");
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    if (!node->is_object()) fail(origin, key, "is not inside an object");
    node = &(*node)[path[i]];
    if (node->is_null()) *node = json::object();
  }
  (*node)[path.back()] = v;
  std::string out = j.dump(2);
  parse_arch_json(out, origin + " with " + key + "=" + value);  // validates the key and value
  return out;
}

}  // namespace dmx::sim
