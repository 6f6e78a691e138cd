// Byte-level BPE tokenizer for Hugging Face tokenizer.json files.
#include "dmx/quant/tokenizer.h"

#include <dmx/json.h>
#include <dmx/util.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <unordered_map>

namespace dmx::quant {
namespace {

using json = nlohmann::json;

// The regex GPT-2's ByteLevel pre-tokenizer uses when use_regex is true.
// Sequences of normalizers / pre-tokenizers deeper than this are refused (real files nest 1-2).
constexpr int kMaxNesting = 16;
// Token ids up to 2^21 (real vocabularies: 32k-262k): id_to_token is sized by the largest id.
constexpr int64_t kMaxTokenId = (int64_t(1) << 21) - 1;

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw TokenizerError(source + ": " + what);
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 and up.
std::array<std::string, 256> byte_to_unicode_table() {
  std::array<std::string, 256> t;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++);
    std::string s;
    if (cp < 0x80) {
      s.push_back(static_cast<char>(cp));
    } else {
      s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
    t[b] = s;
  }
  return t;
}

// Length of the valid UTF-8 prefix of s (== s.size() when all valid).
size_t utf8_valid_prefix(std::string_view s) {
  size_t i = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07;
    else
      return i;
    if (i + len > n) return i;
    for (int k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return i;
    i += len;
  }
  return n;
}

size_t utf8_char_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) return 2;
  if ((c & 0xF0) == 0xE0) return 3;
  return 4;
}

// A compiled PCRE2 pattern (UTF + Unicode properties, JIT when available).
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& source) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
    if (!code_) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof buf);
      fail(source, "pre-tokenizer regex does not compile at offset " + std::to_string(off) + ": " +
                       reinterpret_cast<char*>(buf));
    }
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls f(begin, end) for every match in s (empty matches skipped), left to right.
  template <class F>
  void for_each_match(std::string_view s, F&& f) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0;
    const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
    while (pos <= s.size()) {
      int rc = jit_ ? pcre2_jit_match(code_, subj, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr)
                    : pcre2_match(code_, subj, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc < 0) break;
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step one character to make progress
        if (b >= s.size()) break;
        pos = b + utf8_char_len(static_cast<unsigned char>(s[b]));
        continue;
      }
      f(b, e);
      pos = e;
    }
    pcre2_match_data_free(md);
  }

 private:
  pcre2_code* code_ = nullptr;
  bool jit_ = false;
};

std::string escape_regex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::strchr("\\^$.|?*+()[]{}", c) && c != 0) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

enum class SplitBehavior { Isolated, Removed, MergedWithPrevious, MergedWithNext };

struct PreTokenizerStep {
  enum Kind { Split, ByteLevel } kind = Split;
  std::shared_ptr<Regex> regex;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool add_prefix_space = false;  // ByteLevel
};

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
};

bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  bool nfc = false;
  std::vector<PreTokenizerStep> steps;
  std::unordered_map<std::string, int32_t> vocab;
  std::vector<std::string> id_to_token;  // BPE vocab and added tokens
  std::vector<uint8_t> id_is_special;
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) -> (rank, merged id)
  bool ignore_merges = false;
  std::vector<AddedToken> added;
  std::array<std::vector<size_t>, 256> added_by_first_byte;  // indices into added, longest first
  std::array<std::string, 256> byte_to_unicode;
  std::unordered_map<uint32_t, uint8_t> unicode_to_byte;
  std::array<int32_t, 256> byte_id{};

  void add_pretokenizer(const json& p, int depth = 0);
  void split_added(std::string_view text, bool normalized_pass,
                   std::vector<std::pair<std::string, int32_t>>& out) const;
  std::string normalize(std::string_view s) const;
  void pretokenize(std::string piece, std::vector<std::string>& out) const;
  void bpe(const std::string& piece, std::vector<int32_t>& out,
           std::unordered_map<std::string, std::vector<int32_t>>& cache) const;
};

void Tokenizer::Impl::add_pretokenizer(const json& p, int depth) {
  if (p.is_null()) return;
  if (depth > kMaxNesting)
    fail(source, "pre_tokenizer Sequences nested deeper than " + std::to_string(kMaxNesting));
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const json& q : p.at("pretokenizers")) add_pretokenizer(q, depth + 1);
  } else if (type == "Split") {
    if (p.value("invert", false)) fail(source, "Split pre-tokenizer with invert is not supported");
    PreTokenizerStep s;
    const json& pat = p.at("pattern");
    std::string regex;
    if (pat.contains("Regex"))
      regex = pat["Regex"].get<std::string>();
    else if (pat.contains("String"))
      regex = escape_regex(pat["String"].get<std::string>());
    else
      fail(source, "Split pre-tokenizer without Regex or String pattern");
    s.regex = std::make_shared<Regex>(regex, source);
    const std::string b = p.value("behavior", "Isolated");
    if (b == "Isolated")
      s.behavior = SplitBehavior::Isolated;
    else if (b == "Removed")
      s.behavior = SplitBehavior::Removed;
    else if (b == "MergedWithPrevious")
      s.behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext")
      s.behavior = SplitBehavior::MergedWithNext;
    else
      fail(source, "Split behavior \"" + b + "\" is not supported");
    steps.push_back(std::move(s));
  } else if (type == "Digits") {
    PreTokenizerStep s;
    s.regex =
        std::make_shared<Regex>(p.value("individual_digits", false) ? "\\p{N}" : "\\p{N}+", source);
    steps.push_back(std::move(s));
  } else if (type == "ByteLevel") {
    PreTokenizerStep s;
    s.kind = PreTokenizerStep::ByteLevel;
    s.add_prefix_space = p.value("add_prefix_space", false);
    if (p.value("use_regex", true)) s.regex = std::make_shared<Regex>(kGpt2Pattern, source);
    steps.push_back(std::move(s));
  } else {
    fail(source, "pre-tokenizer \"" + type + "\" is not supported");
  }
}

std::string Tokenizer::Impl::normalize(std::string_view s) const {
  if (!nfc ||
      std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return std::string(s);
  UErrorCode st = U_ZERO_ERROR;
  const UNormalizer2* n = unorm2_getNFCInstance(&st);
  if (U_FAILURE(st)) fail(source, "ICU NFC normalizer unavailable");
  int32_t len16 = 0;
  if (s.size() > static_cast<size_t>(INT32_MAX / 2)) fail(source, "text too long for NFC");
  u_strFromUTF8(nullptr, 0, &len16, s.data(), static_cast<int32_t>(s.size()), &st);
  st = U_ZERO_ERROR;
  std::u16string src(len16, u'\0');
  u_strFromUTF8(reinterpret_cast<UChar*>(src.data()), len16, nullptr, s.data(),
                static_cast<int32_t>(s.size()), &st);
  if (U_FAILURE(st)) fail(source, "ICU cannot convert text to UTF-16");
  if (unorm2_isNormalized(n, reinterpret_cast<const UChar*>(src.data()), len16, &st) &&
      U_SUCCESS(st))
    return std::string(s);
  st = U_ZERO_ERROR;
  std::u16string dst(len16 * 3 + 16, u'\0');
  int32_t dlen =
      unorm2_normalize(n, reinterpret_cast<const UChar*>(src.data()), len16,
                       reinterpret_cast<UChar*>(dst.data()), static_cast<int32_t>(dst.size()), &st);
  if (U_FAILURE(st)) fail(source, "ICU NFC normalization failed");
  int32_t len8 = 0;
  u_strToUTF8(nullptr, 0, &len8, reinterpret_cast<const UChar*>(dst.data()), dlen, &st);
  st = U_ZERO_ERROR;
  std::string out(len8, '\0');
  u_strToUTF8(out.data(), len8, nullptr, reinterpret_cast<const UChar*>(dst.data()), dlen, &st);
  if (U_FAILURE(st)) fail(source, "ICU cannot convert text to UTF-8");
  return out;
}

// Splits `text` on added tokens (those with the given `normalized` flag): pieces of ordinary text
// get id -1, added tokens their id.
void Tokenizer::Impl::split_added(std::string_view text, bool normalized_pass,
                                  std::vector<std::pair<std::string, int32_t>>& out) const {
  size_t start = 0, i = 0;
  auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < text.size()) {
    const auto& cands = added_by_first_byte[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (size_t k : cands) {
      const AddedToken& t = added[k];
      if (t.normalized != normalized_pass) continue;
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        size_t e = i + t.content.size();
        if ((i > 0 && is_word_byte(text[i - 1])) || (e < text.size() && is_word_byte(text[e])))
          continue;
      }
      hit = &t;
      break;
    }
    if (!hit) {
      ++i;
      continue;
    }
    size_t pre_end = i, post_begin = i + hit->content.size();
    if (hit->lstrip)
      while (pre_end > start && is_space(text[pre_end - 1])) --pre_end;
    if (hit->rstrip)
      while (post_begin < text.size() && is_space(text[post_begin])) ++post_begin;
    if (pre_end > start) out.emplace_back(std::string(text.substr(start, pre_end - start)), -1);
    out.emplace_back(hit->content, hit->id);
    start = i = post_begin;
  }
  if (start < text.size()) out.emplace_back(std::string(text.substr(start)), -1);
}

void Tokenizer::Impl::pretokenize(std::string piece, std::vector<std::string>& out) const {
  std::vector<std::string> cur{std::move(piece)}, next;
  for (const PreTokenizerStep& s : steps) {
    next.clear();
    for (std::string& p : cur) {
      if (s.kind == PreTokenizerStep::ByteLevel && s.add_prefix_space && !p.empty() && p[0] != ' ')
        p.insert(p.begin(), ' ');
      if (!s.regex) {
        next.push_back(std::move(p));
        continue;
      }
      std::string_view v(p);
      size_t last = 0;
      std::string pending;  // MergedWithNext: a match waiting for the next piece
      auto emit = [&](std::string_view x) {
        if (!x.empty()) next.emplace_back(x);
      };
      s.regex->for_each_match(v, [&](size_t b, size_t e) {
        switch (s.behavior) {
          case SplitBehavior::Isolated:
            emit(v.substr(last, b - last));
            emit(v.substr(b, e - b));
            last = e;
            break;
          case SplitBehavior::Removed:
            emit(v.substr(last, b - last));
            last = e;
            break;
          case SplitBehavior::MergedWithPrevious:
            emit(v.substr(last, e - last));
            last = e;
            break;
          case SplitBehavior::MergedWithNext:
            emit(v.substr(last, b - last));
            last = b;
            break;
        }
      });
      emit(v.substr(last));
    }
    std::swap(cur, next);
  }
  for (auto& p : cur) out.push_back(std::move(p));
}

void Tokenizer::Impl::bpe(const std::string& piece, std::vector<int32_t>& out,
                          std::unordered_map<std::string, std::vector<int32_t>>& cache) const {
  auto cached = cache.find(piece);
  if (cached != cache.end()) {
    out.insert(out.end(), cached->second.begin(), cached->second.end());
    return;
  }
  std::vector<int32_t> ids;
  if (ignore_merges) {
    std::string mapped;
    for (unsigned char b : piece) mapped += byte_to_unicode[b];
    auto it = vocab.find(mapped);
    if (it != vocab.end()) ids.push_back(it->second);
  }
  if (ids.empty()) {
    ids.reserve(piece.size());
    for (unsigned char b : piece) {
      if (byte_id[b] < 0)
        fail(source, "vocabulary lacks the byte-level token of byte " + std::to_string(b));
      ids.push_back(byte_id[b]);
    }
    // Repeatedly merge the adjacent pair of lowest rank, leftmost first on ties (HF's order), with
    // a heap over a linked list of symbols: O(n log n), so long pieces (CJK runs) stay fast.
    const size_t n = ids.size();
    std::vector<int32_t> prev(n), next(n);
    for (size_t i = 0; i < n; ++i) {
      prev[i] = static_cast<int32_t>(i) - 1;
      next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    }
    struct Candidate {
      int32_t rank, pos, left, right, merged;
      bool operator>(const Candidate& o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
    auto push = [&](int32_t pos) {
      if (pos < 0 || next[pos] < 0) return;
      const int32_t a = ids[pos], b = ids[next[pos]];
      auto m = merges.find((static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) |
                           static_cast<uint32_t>(b));
      if (m != merges.end()) heap.push({m->second.first, pos, a, b, m->second.second});
    };
    for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
    std::vector<uint8_t> alive(n, 1);
    while (!heap.empty()) {
      const Candidate c = heap.top();
      heap.pop();
      const int32_t r = next[c.pos];
      if (!alive[c.pos] || r < 0 || ids[c.pos] != c.left || ids[r] != c.right) continue;  // stale
      ids[c.pos] = c.merged;
      alive[r] = 0;
      next[c.pos] = next[r];
      if (next[r] >= 0) prev[next[r]] = c.pos;
      push(prev[c.pos]);
      push(c.pos);
    }
    std::vector<int32_t> merged_ids;
    for (int32_t i = n ? 0 : -1; i >= 0; i = next[i]) merged_ids.push_back(ids[i]);
    ids = std::move(merged_ids);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cache.size() < (1u << 20)) cache.emplace(piece, std::move(ids));
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) {
    p /= "tokenizer.json";
    if (!std::filesystem::exists(p))
      throw TokenizerError(path + ": the model directory has no tokenizer.json");
  }
  try {
    return from_json(read_regular_file(p.string(), "tokenizer.json", int64_t(512) << 20),
                     p.string());
  } catch (const InputFileError& e) {
    throw TokenizerError(e.what());
  }
}

Tokenizer Tokenizer::from_json(const std::string& text, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  Impl& t = *impl;
  t.source = source;
  const json j = parse_json<TokenizerError>(text, source);
  try {
    if (!j.is_object() || !j.contains("model")) fail(source, "no \"model\" section");
    const json& m = j["model"];
    if (m.value("type", "BPE") != "BPE")
      fail(source, "model type \"" + m.value("type", "") + "\" is not BPE");
    if (m.contains("byte_fallback") && m["byte_fallback"].is_boolean() &&
        m["byte_fallback"].get<bool>())
      fail(source, "BPE byte_fallback (SentencePiece style) is not supported; byte-level BPE only");
    t.ignore_merges = m.value("ignore_merges", false);

    // Normalizer: none or NFC (possibly in a Sequence).
    std::function<void(const json&, int)> add_norm = [&](const json& n, int depth) {
      if (n.is_null()) return;
      if (depth > kMaxNesting)
        fail(source, "normalizer Sequences nested deeper than " + std::to_string(kMaxNesting));
      const std::string type = n.value("type", "");
      if (type == "NFC")
        t.nfc = true;
      else if (type == "Sequence")
        for (const json& q : n.at("normalizers")) add_norm(q, depth + 1);
      else
        fail(source, "normalizer \"" + type + "\" is not supported (NFC)");
    };
    if (j.contains("normalizer")) add_norm(j["normalizer"], 0);
    if (j.contains("pre_tokenizer")) t.add_pretokenizer(j["pre_tokenizer"]);
    if (std::none_of(t.steps.begin(), t.steps.end(), [](const PreTokenizerStep& s) {
          return s.kind == PreTokenizerStep::ByteLevel;
        }))
      fail(source, "no ByteLevel pre-tokenizer: only byte-level BPE is supported");
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      const std::string d = j["decoder"].value("type", "");
      if (d != "ByteLevel") fail(source, "decoder \"" + d + "\" is not supported (ByteLevel)");
    }

    // Ids: integers in [0, kMaxTokenId], each naming one token (checked before any allocation).
    auto token_id = [&](const json& v, const std::string& what) -> int32_t {
      if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > kMaxTokenId) ||
          v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId)
        fail(source, what + " has the id " + v.dump() + ", not an integer in [0, " +
                         std::to_string(kMaxTokenId) + "]");
      return static_cast<int32_t>(v.get<int64_t>());
    };
    int32_t max_id = -1;
    std::unordered_map<int32_t, std::string> by_id;
    for (auto it = m.at("vocab").begin(); it != m.at("vocab").end(); ++it) {
      const int32_t id = token_id(it.value(), "vocab token " + json(it.key()).dump());
      auto [prev, fresh] = by_id.emplace(id, it.key());
      if (!fresh)
        fail(source, "vocab ids must be unique: " + std::to_string(id) + " is given to " +
                         json(prev->second).dump() + " and " + json(it.key()).dump());
      t.vocab[it.key()] = id;
      max_id = std::max(max_id, id);
    }
    std::unordered_map<int32_t, std::string> added_by_id;
    for (const json& a : j.value("added_tokens", json::array())) {
      AddedToken at{a.at("content").get<std::string>(), 0,
                    a.value("special", false),          a.value("lstrip", false),
                    a.value("rstrip", false),           a.value("single_word", false),
                    a.value("normalized", false)};
      at.id = token_id(a.at("id"), "added token " + json(at.content).dump());
      if (at.content.empty()) fail(source, "bad added token " + a.dump());
      // An added token may repeat its own vocab entry (same id, same text), never another one.
      auto v = by_id.find(at.id);
      if (v != by_id.end() && v->second != at.content)
        fail(source, "added token " + json(at.content).dump() + " has the id " +
                         std::to_string(at.id) + " of the vocab token " + json(v->second).dump());
      auto [prev, fresh] = added_by_id.emplace(at.id, at.content);
      if (!fresh && prev->second != at.content)
        fail(source, "added tokens " + json(prev->second).dump() + " and " +
                         json(at.content).dump() + " share the id " + std::to_string(at.id));
      max_id = std::max(max_id, at.id);
      t.added.push_back(std::move(at));
    }
    t.id_to_token.assign(static_cast<size_t>(max_id) + 1, std::string());
    t.id_is_special.assign(static_cast<size_t>(max_id) + 1, 0);
    for (const auto& [tok, id] : t.vocab) t.id_to_token[id] = tok;
    for (const auto& a : t.added) {
      t.id_to_token[a.id] = a.content;
      t.id_is_special[a.id] = a.special;
    }
    // Longest added token first, so "<|im_start|>" wins over a shorter prefix.
    std::vector<size_t> order(t.added.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return t.added[a].content.size() > t.added[b].content.size();
    });
    for (size_t k : order)
      t.added_by_first_byte[static_cast<unsigned char>(t.added[k].content[0])].push_back(k);

    t.byte_to_unicode = byte_to_unicode_table();
    for (int b = 0; b < 256; ++b) {
      const std::string& u = t.byte_to_unicode[b];
      uint32_t cp = u.size() == 1 ? static_cast<unsigned char>(u[0])
                                  : ((static_cast<unsigned char>(u[0]) & 0x1F) << 6) |
                                        (static_cast<unsigned char>(u[1]) & 0x3F);
      t.unicode_to_byte[cp] = static_cast<uint8_t>(b);
      auto it = t.vocab.find(u);
      t.byte_id[b] = it == t.vocab.end() ? -1 : it->second;
    }

    int32_t rank = 0;
    for (const json& mg : m.at("merges")) {
      std::string a, b;
      if (mg.is_string()) {  // "a b" (tokenizers < 0.20)
        const std::string s = mg.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail(source, "merge " + mg.dump() + " is not two tokens separated by one space");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() &&
                 mg[1].is_string()) {  // ["a", "b"]
        a = mg[0].get<std::string>();
        b = mg[1].get<std::string>();
      } else {
        fail(source, "merge " + mg.dump() + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      auto ia = t.vocab.find(a), ib = t.vocab.find(b), ic = t.vocab.find(a + b);
      if (ia == t.vocab.end() || ib == t.vocab.end() || ic == t.vocab.end())
        fail(source, "merge " + mg.dump() + " uses a token missing from the vocab");
      uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                     static_cast<uint32_t>(ib->second);
      t.merges.emplace(key, std::make_pair(rank++, ic->second));  // first occurrence wins
    }
  } catch (const json::exception& e) {
    std::string msg = e.what();
    fail(source, "unexpected structure (" + msg.substr(msg.find(']') + 2) + ")");
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const Impl& t = *impl_;
  size_t valid = utf8_valid_prefix(text);
  if (valid != text.size())
    throw TokenizerError("text is not valid UTF-8 at byte " + std::to_string(valid));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  std::unordered_map<std::string, std::vector<int32_t>> cache;
  std::vector<std::pair<std::string, int32_t>> raw, norm;
  std::vector<std::string> pieces;
  t.split_added(text, /*normalized_pass=*/false, raw);
  for (auto& [segment, id] : raw) {
    if (id >= 0) {
      ids.push_back(id);
      continue;
    }
    norm.clear();
    t.split_added(t.normalize(segment), /*normalized_pass=*/true, norm);
    for (auto& [seg, id2] : norm) {
      if (id2 >= 0) {
        ids.push_back(id2);
        continue;
      }
      pieces.clear();
      t.pretokenize(std::move(seg), pieces);
      for (const std::string& p : pieces) t.bpe(p, ids, cache);
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  const Impl& t = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.id_to_token.size())
      throw TokenizerError("token id " + std::to_string(id) + " is outside the vocabulary");
    if (t.id_is_special[id]) {
      if (!skip_special_tokens) out += t.id_to_token[id];
      continue;
    }
    const std::string& tok = t.id_to_token[id];
    for (size_t i = 0; i < tok.size();) {
      size_t len = utf8_char_len(static_cast<unsigned char>(tok[i]));
      uint32_t cp;
      auto c0 = static_cast<unsigned char>(tok[i]);
      if (len == 1)
        cp = c0;
      else if (len == 2 && i + 1 < tok.size())
        cp = ((c0 & 0x1F) << 6) | (static_cast<unsigned char>(tok[i + 1]) & 0x3F);
      else
        cp = UINT32_MAX;
      auto it = t.unicode_to_byte.find(cp);
      if (it != t.unicode_to_byte.end())
        out.push_back(static_cast<char>(it->second));
      else
        out.append(tok, i, len);  // not a byte-level character (e.g. a non-special added token)
      i += len;
    }
  }
  return out;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_to_token.size()); }

int32_t Tokenizer::token_to_id(const std::string& token) const {
  for (const auto& a : impl_->added)
    if (a.content == token) return a.id;
  auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

}  // namespace dmx::quant
