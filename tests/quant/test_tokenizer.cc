// Byte-level BPE: token ids of the real Qwen3 and Llama 3 tokenizer.json files against fixtures
// from an independent implementation (@lenml/tokenizers, JavaScript; see
// fixtures/gen_tokenizer_fixtures.mjs), plus hand-checked small tokenizers for the GPT-2 regex,
// digit splitting and both merge syntaxes.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dmx/quant/tokenizer.h"
#include "tiny_tokenizer.h"

using dmx::quant::Tokenizer;
using dmx::quant::TokenizerError;
using json = nlohmann::json;
using dmx::quant::testing::tiny_tokenizer;

namespace {

json load_fixtures() {
  std::ifstream in(std::string(DMX_QUANT_FIXTURES) + "/tokenizer_fixtures.json");
  EXPECT_TRUE(in.good()) << "missing tokenizer_fixtures.json";
  return json::parse(in);
}

// Each real tokenizer is loaded once for the whole suite (about a second each).
const Tokenizer& real_tokenizer(const std::string& family) {
  static std::map<std::string, Tokenizer> loaded;
  auto it = loaded.find(family);
  if (it == loaded.end())
    it = loaded
             .emplace(family, Tokenizer::load(std::string(DMX_QUANT_TOKENIZERS) + "/" + family +
                                              "_tokenizer.json"))
             .first;
  return it->second;
}

void check_family(const std::string& family, int* cases) {
  static const json fixtures = load_fixtures();
  const Tokenizer& tok = real_tokenizer(family);
  for (const json& c : fixtures.at(family)) {
    const std::string text = c.at("text");
    const std::vector<int32_t> expect = c.at("ids").get<std::vector<int32_t>>();
    EXPECT_EQ(tok.encode(text), expect) << family << " text: " << json(text).dump();
    ++*cases;
  }
}

}  // namespace

TEST(Tokenizer, Qwen3MatchesIndependentImplementation) {
  int cases = 0;
  check_family("qwen3", &cases);
  EXPECT_GE(cases, 25);
}

TEST(Tokenizer, Llama3MatchesIndependentImplementation) {
  int cases = 0;
  check_family("llama3", &cases);
  EXPECT_GE(cases, 25);
}

TEST(Tokenizer, DecodeInvertsEncode) {
  const Tokenizer& llama = real_tokenizer("llama3");
  const Tokenizer& qwen = real_tokenizer("qwen3");
  for (const std::string text : {"Hello world, 12345 + 678!", "  spaces\n\n\ttabs",
                                 "emoji 🦀👍🏽 and 你好", "<|endoftext|>x"}) {
    EXPECT_EQ(llama.decode(llama.encode(text)), text);
    EXPECT_EQ(qwen.decode(qwen.encode(text)), text);
  }
  // Qwen3 normalizes to NFC first: a decomposed é comes back composed.
  EXPECT_EQ(qwen.decode(qwen.encode("e\xCC\x81")), "\xC3\xA9");
  EXPECT_EQ(qwen.decode(qwen.encode("<|endoftext|>a"), /*skip_special_tokens=*/true), "a");
  EXPECT_EQ(qwen.vocab_size(), 151669);
  EXPECT_EQ(llama.vocab_size(), 128256);
  EXPECT_EQ(qwen.token_to_id("<|im_start|>"), 151644);
}

TEST(Tokenizer, LongPiecesRoundTrip) {
  // One 60 KB pre-token (a CJK run with no break) and a 50 000-space run: the merge loop must be
  // O(n log n) to finish, and decoding must give the text back.
  const Tokenizer& llama = real_tokenizer("llama3");
  std::string cjk;
  for (int i = 0; i < 20000; ++i) cjk += (i % 3 == 0) ? "你" : (i % 3 == 1 ? "好" : "世");
  const std::string spaces(50000, ' ');
  for (const std::string& text : {cjk, spaces + "x"}) {
    auto ids = llama.encode(text);
    EXPECT_LT(ids.size(), text.size() / 2);
    EXPECT_EQ(llama.decode(ids), text);
  }
}

TEST(Tokenizer, Gpt2RegexDigitsAndBothMergeSyntaxes) {
  // GPT-2 style: ByteLevel with its own regex; " lo" + "w" merges; "Ġ" is the space symbol.
  json pre = {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Digits"}, {"individual_digits", true}},
                {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}}}};
  json merges_str = {"l o", "lo w", "Ġ lo", "Ġlo w", "1 2"};
  json merges_arr = json::array();  // (explicit: nlohmann would read {"a", "b"} pairs as an object)
  for (auto [x, y] : {std::pair{"l", "o"}, {"lo", "w"}, {"Ġ", "lo"}, {"Ġlo", "w"}, {"1", "2"}})
    merges_arr.push_back(json::array({x, y}));
  json extra = {"lo", "low", "Ġlo", "Ġlow", "12"};
  Tokenizer a = Tokenizer::from_json(tiny_tokenizer(pre, merges_str, extra), "tiny-a");
  Tokenizer b = Tokenizer::from_json(tiny_tokenizer(pre, merges_arr, extra), "tiny-b");
  // ids: byte b has id b (tiny_tokenizer numbers the byte symbols by byte value), extras 256+.
  auto byte_id = [](char c) { return static_cast<int32_t>(static_cast<unsigned char>(c)); };
  const int32_t lo = 256, low = 257, sp_lo = 258, sp_low = 259;
  // " low": Ġ l o w -> Ġ lo w -> (lo w ranks before Ġ lo) Ġ low; no "Ġ low" merge, so 2 tokens.
  std::vector<int32_t> expect = {low, byte_id(' '), low, sp_lo, byte_id('x')};
  EXPECT_EQ(a.encode("low low lox"), expect);
  EXPECT_EQ(b.encode("low low lox"), expect);
  (void)lo;
  // Digits split individually before BPE, so the "1 2" merge never applies; <eos> split first.
  EXPECT_EQ(a.encode("12<eos>"), (std::vector<int32_t>{byte_id('1'), byte_id('2'), 1000}));
  // Without the Digits step, "12" is one piece and merges.
  json pre2 = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  Tokenizer c = Tokenizer::from_json(tiny_tokenizer(pre2, merges_str, extra), "tiny-c");
  EXPECT_EQ(c.encode("12"), (std::vector<int32_t>{260}));
  EXPECT_EQ(c.decode({260, 1000, sp_low}), "12<eos> low");
}

TEST(Tokenizer, Errors) {
  const Tokenizer& qwen = real_tokenizer("qwen3");
  EXPECT_THROW(qwen.encode("bad \xff utf8"), TokenizerError);
  EXPECT_THROW(qwen.decode({-1}), TokenizerError);
  json pre = {{"type", "ByteLevel"}};
  try {
    Tokenizer::from_json(tiny_tokenizer(pre, json::array(), json::array(), {{"type", "NFKD"}}),
                         "t.json");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("t.json: normalizer \"NFKD\" is not supported"),
              std::string::npos);
  }
  try {
    Tokenizer::from_json(tiny_tokenizer(pre, json::array({"a zz"}), json::array()), "t.json");
    FAIL();
  } catch (const TokenizerError& e) {
    EXPECT_NE(std::string(e.what()).find("missing from the vocab"), std::string::npos);
  }
  EXPECT_THROW(Tokenizer::from_json("{\"model\": ", "t.json"), TokenizerError);
  EXPECT_THROW(Tokenizer::load("/nonexistent/tokenizer.json"), TokenizerError);
}
