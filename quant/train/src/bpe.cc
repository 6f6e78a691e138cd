// Byte-level BPE trainer: word counts from the GPT-2 regex, then greedy pair merging with
// incremental pair counts and a lazily invalidated max-heap.
#include "dmx/train/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <queue>
#include <stdexcept>
#include <unordered_set>

namespace dmx::train {
namespace {

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string utf8_of(uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

const std::array<std::string, 256>& byte_table() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = utf8_of(printable ? static_cast<uint32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  for (unsigned char c : bytes) out += byte_table()[c];
  return out;
}

struct WordCounter::Regex {
  pcre2_code* code = nullptr;
  pcre2_match_data* md = nullptr;
};

WordCounter::WordCounter() : re_(new Regex) {
  int err = 0;
  PCRE2_SIZE off = 0;
  re_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern), PCRE2_ZERO_TERMINATED,
                            PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!re_->code) {
    delete re_;
    throw std::runtime_error("GPT-2 pre-tokenizer regex does not compile");
  }
  pcre2_jit_compile(re_->code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter on failure
  re_->md = pcre2_match_data_create_from_pattern(re_->code, nullptr);
}

WordCounter::~WordCounter() {
  pcre2_match_data_free(re_->md);
  pcre2_code_free(re_->code);
  delete re_;
}

void WordCounter::add(std::string_view text, const std::string& source) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  PCRE2_SIZE pos = 0;
  uint32_t options = 0;  // UTF is checked once, on the first match
  while (pos < text.size()) {
    const int rc = pcre2_match(re_->code, subject, text.size(), pos, options, re_->md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw std::runtime_error(source + ": " + reinterpret_cast<const char*>(msg) + " (near byte " +
                               std::to_string(pcre2_get_startchar(re_->md)) + ")");
    }
    options = PCRE2_NO_UTF_CHECK;
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(re_->md);
    if (ov[1] == ov[0]) {  // the pattern never matches empty, but never loop forever
      ++pos;
      continue;
    }
    ++counts_[std::string(text.substr(ov[0], ov[1] - ov[0]))];
    pos = ov[1];
  }
}

BpeModel train_bpe(const std::unordered_map<std::string, int64_t>& counts, const BpeOptions& opt) {
  BpeModel m;
  m.num_special = static_cast<int64_t>(opt.special_tokens.size());
  for (const std::string& s : opt.special_tokens) m.vocab.push_back(s);
  for (int b = 0; b < 256; ++b) m.vocab.push_back(byte_table()[b]);
  if (opt.vocab_size < static_cast<int64_t>(m.vocab.size()))
    throw std::runtime_error("vocab size " + std::to_string(opt.vocab_size) + " is below the " +
                             std::to_string(m.vocab.size()) + " special and byte tokens");
  const int32_t byte0 = static_cast<int32_t>(m.num_special);

  // Words in sorted order, so ids and tie-breaking never depend on hash order.
  m.words.reserve(counts.size());
  for (const auto& [w, c] : counts) m.words.push_back(w);
  std::sort(m.words.begin(), m.words.end());
  m.word_counts.resize(m.words.size());
  m.word_tokens.resize(m.words.size());
  for (size_t i = 0; i < m.words.size(); ++i) {
    m.word_counts[i] = counts.at(m.words[i]);
    for (unsigned char c : m.words[i]) m.word_tokens[i].push_back(byte0 + c);
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // may hold stale word indices
  for (size_t w = 0; w < m.words.size(); ++w) {
    const auto& t = m.word_tokens[w];
    for (size_t i = 0; i + 1 < t.size(); ++i) {
      const uint64_t k = pair_key(t[i], t[i + 1]);
      pair_count[k] += m.word_counts[w];
      auto& wl = where[k];
      if (wl.empty() || wl.back() != static_cast<int32_t>(w)) wl.push_back(static_cast<int32_t>(w));
    }
  }
  // Max-heap on (count, then the smaller pair); entries whose count is stale are skipped.
  using Entry = std::pair<int64_t, uint64_t>;
  auto worse = [](const Entry& x, const Entry& y) {
    return x.first != y.first ? x.first < y.first : x.second > y.second;
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  const int64_t wanted = opt.vocab_size - static_cast<int64_t>(m.vocab.size());
  std::unordered_set<uint64_t> changed;
  std::vector<int32_t> merged;
  while (static_cast<int64_t>(m.vocab.size()) < opt.vocab_size && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.second);
    if (pc == pair_count.end() || pc->second != top.first) continue;  // stale
    if (top.first < opt.min_frequency) break;
    const int32_t a = static_cast<int32_t>(top.second >> 32);
    const int32_t b = static_cast<int32_t>(top.second & 0xFFFFFFFFu);
    const int32_t id = static_cast<int32_t>(m.vocab.size());
    m.vocab.push_back(m.vocab[a] + m.vocab[b]);
    m.merges.emplace_back(a, b);

    std::vector<int32_t> words = std::move(where[top.second]);
    where.erase(top.second);
    std::sort(words.begin(), words.end());
    words.erase(std::unique(words.begin(), words.end()), words.end());
    changed.clear();
    for (int32_t w : words) {
      auto& t = m.word_tokens[w];
      bool has = false;
      for (size_t i = 0; i + 1 < t.size() && !has; ++i) has = t[i] == a && t[i + 1] == b;
      if (!has) continue;
      const int64_t f = m.word_counts[w];
      for (size_t i = 0; i + 1 < t.size(); ++i) {
        const uint64_t k = pair_key(t[i], t[i + 1]);
        pair_count[k] -= f;
        changed.insert(k);
      }
      merged.clear();
      for (size_t i = 0; i < t.size(); ++i) {
        if (i + 1 < t.size() && t[i] == a && t[i + 1] == b) {
          merged.push_back(id);
          ++i;
        } else {
          merged.push_back(t[i]);
        }
      }
      t = merged;
      for (size_t i = 0; i + 1 < t.size(); ++i) {
        const uint64_t k = pair_key(t[i], t[i + 1]);
        pair_count[k] += f;
        changed.insert(k);
        if (t[i] == id || t[i + 1] == id) {
          auto& wl = where[k];
          if (wl.empty() || wl.back() != w) wl.push_back(w);
        }
      }
    }
    for (uint64_t k : changed) {
      auto it = pair_count.find(k);
      if (it->second <= 0) {
        pair_count.erase(it);
      } else {
        heap.push({it->second, k});
      }
    }
    if (opt.progress) opt.progress(static_cast<int64_t>(m.merges.size()), wanted);
  }
  return m;
}

std::string tokenizer_json(const BpeModel& m) {
  using ojson = nlohmann::ordered_json;
  ojson added = ojson::array();
  for (int64_t i = 0; i < m.num_special; ++i)
    added.push_back({{"id", i},
                     {"content", m.vocab[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  ojson vocab = ojson::object();
  for (size_t i = 0; i < m.vocab.size(); ++i) vocab[m.vocab[i]] = i;
  ojson merges = ojson::array();
  for (const auto& [a, b] : m.merges) merges.push_back(ojson::array({m.vocab[a], m.vocab[b]}));
  auto byte_level = [](bool prefix, bool trim) {
    return ojson{{"type", "ByteLevel"},
                 {"add_prefix_space", prefix},
                 {"trim_offsets", trim},
                 {"use_regex", true}};
  };
  ojson j = {{"version", "1.0"},
             {"truncation", nullptr},
             {"padding", nullptr},
             {"added_tokens", added},
             {"normalizer", nullptr},
             {"pre_tokenizer", byte_level(false, true)},
             {"post_processor", byte_level(true, false)},
             {"decoder", byte_level(true, true)},
             {"model",
              {{"type", "BPE"},
               {"dropout", nullptr},
               {"unk_token", nullptr},
               {"continuing_subword_prefix", ""},
               {"end_of_word_suffix", ""},
               {"fuse_unk", false},
               {"byte_fallback", false},
               {"ignore_merges", false},
               {"vocab", vocab},
               {"merges", merges}}}};
  return j.dump(1) + "\n";
}

}  // namespace dmx::train
