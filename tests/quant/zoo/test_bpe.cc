// dmx-bpe-train's library against the runtime tokenizer (an independent BPE encoder): the
// runtime must segment every training word exactly as training left it, and decode(encode(x))
// must give x back; plus a merge sequence worked out by hand.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <random>
#include <sstream>

#include "dmx/quant/tokenizer.h"
#include "dmx/train/bpe.h"

namespace {

using dmx::train::BpeModel;
using dmx::train::BpeOptions;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kRoot = DMX_SOURCE_DIR;

TEST(ZooBpe, HandWorkedMerges) {
  // Pairs: (a,b) 5+3 = 8, (b,c) 3+1 = 4. Merge 1: a+b. Then "abc" = [ab, c]: (ab,c) 3 and
  // (b,c) 1 (from "bc"). Merge 2: ab+c. (b,c) = 1 < min_frequency 2: stop.
  const std::unordered_map<std::string, int64_t> counts = {{"ab", 5}, {"abc", 3}, {"bc", 1}};
  BpeOptions opt;
  opt.vocab_size = 1000;
  const BpeModel m = dmx::train::train_bpe(counts, opt);
  const int32_t a = 1 + 'a', b = 1 + 'b', c = 1 + 'c';
  ASSERT_EQ(m.merges.size(), 2u);
  EXPECT_EQ(m.merges[0], std::make_pair(a, b));
  EXPECT_EQ(m.merges[1], std::make_pair(257, c));
  ASSERT_EQ(m.vocab.size(), 259u);
  EXPECT_EQ(m.vocab[0], "<|endoftext|>");
  EXPECT_EQ(m.vocab[257], "ab");
  EXPECT_EQ(m.vocab[258], "abc");
  // Ties go to the smaller id pair: (a,b) and (c,d) both 4 -> (a,b) first.
  const BpeModel t = dmx::train::train_bpe({{"ab", 4}, {"cd", 4}}, opt);
  ASSERT_EQ(t.merges.size(), 2u);
  EXPECT_EQ(t.merges[0], std::make_pair(a, b));
  EXPECT_EQ(t.merges[1], std::make_pair(c, 1 + 'd'));
}

TEST(ZooBpe, ByteLevelForm) {
  EXPECT_EQ(dmx::train::byte_level_encode(" Hello\n"), "\xC4\xA0Hello\xC4\x8A");  // Ġ ... Ċ
  EXPECT_EQ(dmx::train::byte_level_encode("\xC3\xA9"), "\xC3\x83\xC2\xA9");       // é -> Ã©
}

TEST(ZooBpe, RuntimeReproducesTrainingSegmentation) {
  const std::string text = read_file(kRoot + "/data/wiki.valid.raw").substr(0, 300000);
  dmx::train::WordCounter counter;
  counter.add(text, "valid");
  BpeOptions opt;
  opt.vocab_size = 1200;
  const BpeModel m = dmx::train::train_bpe(counter.counts(), opt);
  ASSERT_EQ(m.vocab.size(), 1200u);
  const auto tok = dmx::quant::Tokenizer::from_json(dmx::train::tokenizer_json(m), "trained");
  EXPECT_EQ(tok.vocab_size(), 1200);
  size_t checked = 0;
  for (size_t w = 0; w < m.words.size(); ++w) {
    const std::vector<int32_t> ids = tok.encode(m.words[w]);
    ASSERT_EQ(ids, m.word_tokens[w]) << "word \"" << m.words[w] << "\"";
    ++checked;
  }
  EXPECT_GT(checked, 5000u);
  // The whole text: encode is the concatenation of its words, decode gives the bytes back.
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 2) << "BPE should compress English text";
}

TEST(ZooBpe, DeterministicOutput) {
  const std::string text = read_file(kRoot + "/data/wiki.test.raw").substr(0, 100000);
  BpeOptions opt;
  opt.vocab_size = 700;
  std::string first;
  for (int run = 0; run < 2; ++run) {
    dmx::train::WordCounter counter;
    // The second run adds the same text in two pieces, cut between a letter and " word" where
    // no pre-token spans the cut: same counts, so the same tokenizer.
    if (run == 0) {
      counter.add(text, "t");
    } else {
      size_t cut = text.size() / 2;
      while (!(std::isalpha(static_cast<unsigned char>(text[cut - 1])) && text[cut] == ' ' &&
               std::isalpha(static_cast<unsigned char>(text[cut + 1]))))
        ++cut;
      counter.add(text.substr(0, cut), "t");
      counter.add(text.substr(cut), "t");
    }
    const std::string json =
        dmx::train::tokenizer_json(dmx::train::train_bpe(counter.counts(), opt));
    if (run == 0)
      first = json;
    else
      EXPECT_EQ(json, first);
  }
}

TEST(ZooBpe, InvalidUtf8IsAnError) {
  dmx::train::WordCounter counter;
  EXPECT_THROW(counter.add("ok \xFF\xFE bad", "bad.txt"), std::runtime_error);
}

TEST(ZooBpe, ShippedTokenizerRoundTrips) {
  const auto tok = dmx::quant::Tokenizer::load(kRoot + "/models/tokenizer.json");
  EXPECT_EQ(tok.vocab_size(), 4096);
  EXPECT_EQ(tok.token_to_id("<|endoftext|>"), 0);
  const std::string text = read_file(kRoot + "/data/wiki.test.raw");
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  // Strings far from the corpus still round-trip (byte fallback through the 256 byte tokens).
  std::mt19937 rng(20261128);
  const std::vector<std::string> odd = {"",
                                        " ",
                                        "\n\n\t  x",
                                        "naïve café — 東京 🚀 \u00A0end",
                                        "<|endoftext|>between<|endoftext|>",
                                        "1234567890 3.14"};
  for (const std::string& s : odd) EXPECT_EQ(tok.decode(tok.encode(s)), s) << s;
  for (int i = 0; i < 200; ++i) {  // random printable ASCII + newlines
    std::string s;
    const int len = static_cast<int>(rng() % 64);
    for (int j = 0; j < len; ++j) s += static_cast<char>(rng() % 8 == 0 ? '\n' : 32 + rng() % 95);
    ASSERT_EQ(tok.decode(tok.encode(s)), s) << "seed 20261128, case " << i;
  }
}

}  // namespace
