// Architecture config files (JSON): parsing with strict key and range checks.
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

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

double get_number(const json& obj, const std::string& origin, const std::string& prefix,
                  const char* key, double dflt, double min_exclusive_or_inclusive, bool inclusive) {
  if (!obj.contains(key)) return dflt;
  const json& v = obj.at(key);
  if (!v.is_number()) fail(origin, prefix + key, "must be a number, got " + v.dump());
  double x = v.get<double>();
  bool ok = inclusive ? x >= min_exclusive_or_inclusive : x > min_exclusive_or_inclusive;
  if (!std::isfinite(x) || !ok) {
    std::ostringstream os;
    os << "must be " << (inclusive ? ">= " : "> ") << min_exclusive_or_inclusive << ", got "
       << v.dump();
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

}  // namespace

const char* dataflow_name(Dataflow d) {
  return d == Dataflow::OUTPUT_STATIONARY ? "output_stationary" : "weight_stationary";
}

std::string ArchConfig::fingerprint() const {
  std::ostringstream os;
  os.precision(17);
  os << units << '/' << lanes << '/' << unit_stages << '/' << clock_ghz << '/' << sram_a_kib << '/'
     << sram_b_kib << '/' << sram_c_kib << '/' << dram_gbps << '/' << dram_latency_ns << '/'
     << int(dataflow);
  for (int t : throughput) os << '/' << t;
  return os.str();  // energy is applied after simulation: it does not change cycles
}

ArchConfig parse_arch_json(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ConfigError(origin + ": not valid JSON: " + e.what());
  }
  check_keys(j, origin, "",
             {"name", "description", "sources", "array", "clock_ghz", "sram_kib", "dram",
              "throughput", "energy_pj", "dataflow"});
  ArchConfig a;
  a.origin = origin;
  if (j.contains("name")) {
    if (!j["name"].is_string()) fail(origin, "name", "must be a string");
    a.name = j["name"].get<std::string>();
  }
  if (j.contains("description") && !j["description"].is_string())
    fail(origin, "description", "must be a string");
  if (j.contains("array")) {
    const json& x = j["array"];
    check_keys(x, origin, "array.", {"units", "lanes", "unit_stages"});
    a.units = get_int(x, origin, "array.", "units", a.units, 1);
    a.lanes = get_int(x, origin, "array.", "lanes", a.lanes, 1);
  }
  a.unit_stages = DMX_RTL_STAGES;
  if (j.contains("array")) a.unit_stages = get_int(j["array"], origin, "array.", "unit_stages",
                                                   a.unit_stages, 1);
  a.clock_ghz = get_number(j, origin, "", "clock_ghz", a.clock_ghz, 0, false);
  if (j.contains("sram_kib")) {
    const json& x = j["sram_kib"];
    check_keys(x, origin, "sram_kib.", {"a", "b", "c"});
    a.sram_a_kib = get_number(x, origin, "sram_kib.", "a", a.sram_a_kib, 0, false);
    a.sram_b_kib = get_number(x, origin, "sram_kib.", "b", a.sram_b_kib, 0, false);
    a.sram_c_kib = get_number(x, origin, "sram_kib.", "c", a.sram_c_kib, 0, false);
  }
  if (j.contains("dram")) {
    const json& x = j["dram"];
    check_keys(x, origin, "dram.", {"gbps", "latency_ns"});
    a.dram_gbps = get_number(x, origin, "dram.", "gbps", a.dram_gbps, 0, false);
    a.dram_latency_ns = get_number(x, origin, "dram.", "latency_ns", a.dram_latency_ns, 0, true);
  }
  if (j.contains("throughput")) {
    const json& x = j["throughput"];
    if (!x.is_object()) fail(origin, "throughput", "must be an object {format: blocks/cycle}");
    for (auto it = x.begin(); it != x.end(); ++it) {
      MxFormat f = get_format(it.key(), origin, "throughput." + it.key());
      a.throughput[int(f)] = get_int(x, origin, "throughput.", it.key().c_str(), 1, 1);
    }
  }
  // Energy: per-format MAC energy (both operands in that format); a mixed pair defaults to the
  // mean of its two formats unless mac_pair gives it ("<weight>,<activation>": pJ).
  std::array<double, kNumFormats> mac_same{};
  mac_same.fill(1.0);
  if (j.contains("energy_pj")) {
    const json& x = j["energy_pj"];
    check_keys(x, origin, "energy_pj.", {"mac", "mac_pair", "sram_byte", "dram_byte"});
    if (x.contains("mac")) {
      const json& m = x["mac"];
      if (!m.is_object()) fail(origin, "energy_pj.mac", "must be an object {format: pJ}");
      for (auto it = m.begin(); it != m.end(); ++it) {
        MxFormat f = get_format(it.key(), origin, "energy_pj.mac." + it.key());
        mac_same[int(f)] = get_number(m, origin, "energy_pj.mac.", it.key().c_str(), 1, 0, true);
      }
    }
    a.sram_pj_per_byte =
        get_number(x, origin, "energy_pj.", "sram_byte", a.sram_pj_per_byte, 0, true);
    a.dram_pj_per_byte =
        get_number(x, origin, "energy_pj.", "dram_byte", a.dram_pj_per_byte, 0, true);
  }
  for (int w = 0; w < kNumFormats; ++w)
    for (int f = 0; f < kNumFormats; ++f) a.mac_pj[w][f] = 0.5 * (mac_same[w] + mac_same[f]);
  if (j.contains("energy_pj") && j["energy_pj"].contains("mac_pair")) {
    const json& m = j["energy_pj"]["mac_pair"];
    if (!m.is_object()) fail(origin, "energy_pj.mac_pair", "must be an object {\"W,A\": pJ}");
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string key = "energy_pj.mac_pair." + it.key();
      auto comma = it.key().find(',');
      if (comma == std::string::npos) fail(origin, key, "expected \"<weight fmt>,<act fmt>\"");
      MxFormat w = get_format(it.key().substr(0, comma), origin, key);
      MxFormat f = get_format(it.key().substr(comma + 1), origin, key);
      a.mac_pj[int(w)][int(f)] =
          get_number(m, origin, "energy_pj.mac_pair.", it.key().c_str(), 1, 0, true);
    }
  }
  if (j.contains("dataflow")) {
    const json& d = j["dataflow"];
    std::string s = d.is_string() ? d.get<std::string>() : "";
    if (s == "output_stationary" || s == "os")
      a.dataflow = Dataflow::OUTPUT_STATIONARY;
    else if (s == "weight_stationary" || s == "ws")
      a.dataflow = Dataflow::WEIGHT_STATIONARY;
    else
      fail(origin, "dataflow", "must be \"output_stationary\" or \"weight_stationary\", got " +
                                   d.dump());
  }
  if (a.name.empty()) a.name = origin;
  return a;
}

ArchConfig load_arch(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open architecture config");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_arch_json(ss.str(), path);
}

std::string override_arch_key(const std::string& text, const std::string& origin,
                              const std::string& key, const std::string& value) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw ConfigError(origin + ": not valid JSON: " + e.what());
  }
  json v;
  try {
    v = json::parse(value);
  } catch (const json::parse_error&) {
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
