// A tiny byte-level tokenizer.json for the quant tests, written out independently of the library.
#pragma once

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace dmx::quant::testing {

using json = nlohmann::json;

// A tiny byte-level tokenizer.json: the 256 byte symbols plus the given merges.
inline std::string tiny_tokenizer(const json& pre_tokenizer, const json& merges,
                                  const json& extra_vocab, const json& normalizer = nullptr) {
  json vocab = json::object();
  int id = 0;
  // GPT-2 bytes_to_unicode, written out independently of the library.
  std::vector<int> bs;
  for (int b = '!'; b <= '~'; ++b) bs.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) bs.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) bs.push_back(b);
  std::vector<int> cs = bs;
  int n = 0;
  for (int b = 0; b < 256; ++b)
    if (std::find(bs.begin(), bs.end(), b) == bs.end()) bs.push_back(b), cs.push_back(256 + n++);
  std::vector<std::string> sym(256);
  for (size_t i = 0; i < bs.size(); ++i) {
    std::string s;
    int cp = cs[i];
    if (cp < 0x80)
      s.push_back(static_cast<char>(cp));
    else
      s.push_back(static_cast<char>(0xC0 | (cp >> 6))),
          s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    sym[bs[i]] = s;
  }
  for (int b = 0; b < 256; ++b) vocab[sym[b]] = id++;
  for (const auto& t : extra_vocab) vocab[t.get<std::string>()] = id++;
  json j = {
      {"version", "1.0"},
      {"normalizer", normalizer},
      {"pre_tokenizer", pre_tokenizer},
      {"decoder", {{"type", "ByteLevel"}}},
      {"added_tokens", json::array({{{"id", 1000}, {"content", "<eos>"}, {"special", true}}})},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  return j.dump();
}

}  // namespace dmx::quant::testing
