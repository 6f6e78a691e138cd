// dmx-search's checkpoint.json: writer and strict reader.
#include "dmx/quant/search_checkpoint.h"

#include <dmx/json.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

namespace dmx::quant {

using json = nlohmann::json;

std::string search_checkpoint_json(const SearchCheckpoint& ck) {
  json j;
  j["fingerprint"] = ck.fingerprint;
  j["step"] = ck.step;
  j["theta"] = ck.theta;
  j["momentum"] = ck.momentum;
  return j.dump();
}

SearchCheckpoint parse_search_checkpoint(const std::string& text, const std::string& origin,
                                         const std::string& fingerprint, size_t params, int steps) {
  auto fail = [&](const std::string& what) -> void { throw CheckpointError(origin + ": " + what); };
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("not a checkpoint (" + json_error_detail(e) + ")");
  }
  if (!j.is_object()) fail("not a checkpoint (not a JSON object)");
  SearchCheckpoint ck;
  if (!j.contains("fingerprint") || !j["fingerprint"].is_string())
    fail("not a checkpoint (no fingerprint)");
  ck.fingerprint = j["fingerprint"].get<std::string>();
  if (!fingerprint.empty() && ck.fingerprint != fingerprint)
    fail(
        "checkpoint of a different search (other options, model or data); delete it or pick "
        "another --out");
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0 ||
      j["step"].get<int64_t>() > steps)
    fail("step must be an integer in [0, " + std::to_string(steps) + "]");
  ck.step = int(j["step"].get<int64_t>());
  for (const char* key : {"theta", "momentum"}) {
    if (!j.contains(key) || !j[key].is_array()) fail(std::string("no ") + key + " array");
    const json& a = j[key];
    if (params != 0 && a.size() != params)
      fail("wrong number of offsets: " + std::to_string(a.size()) + " " + key + " values for " +
           std::to_string(params) + " offsets");
    auto& out = std::string(key) == "theta" ? ck.theta : ck.momentum;
    out.reserve(a.size());
    for (const json& v : a) {
      if (!v.is_number_unsigned() || v.get<uint64_t>() > 0xFFFFFFFFull)
        fail(std::string(key) + " holds " + v.dump() + ", not FP32 bits (0..4294967295)");
      const uint32_t bits = uint32_t(v.get<uint64_t>());
      float f;
      std::memcpy(&f, &bits, 4);
      if (!std::isfinite(f)) fail(std::string(key) + " holds a non-finite value");
      out.push_back(bits);
    }
  }
  if (ck.theta.size() != ck.momentum.size()) fail("theta and momentum differ in length");
  return ck;
}

}  // namespace dmx::quant
