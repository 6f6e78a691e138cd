// Byte-level BPE training (GPT-2 style) that writes a Hugging Face `tokenizer.json`.
// Independent of LibTorch: pre-tokenization is the GPT-2 regex run by PCRE2, the same pattern the
// ByteLevel pre-tokenizer of the runtime (dmx/quant/tokenizer.h) uses.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dmx::train {

// GPT-2's bytes_to_unicode form of raw bytes (printable bytes as themselves, others U+0100+).
std::string byte_level_encode(std::string_view bytes);

// Splits UTF-8 `text` into GPT-2 pre-tokens, adding each to `counts`. Throws std::runtime_error
// on invalid UTF-8 (the message names `source`).
class WordCounter {
 public:
  WordCounter();
  ~WordCounter();
  WordCounter(const WordCounter&) = delete;
  WordCounter& operator=(const WordCounter&) = delete;
  void add(std::string_view text, const std::string& source);
  const std::unordered_map<std::string, int64_t>& counts() const { return counts_; }

 private:
  struct Regex;
  Regex* re_;
  std::unordered_map<std::string, int64_t> counts_;
};

struct BpeOptions {
  int64_t vocab_size = 4096;  // special tokens + 256 bytes + merges
  int64_t min_frequency = 2;  // a pair seen fewer times is never merged
  std::vector<std::string> special_tokens = {"<|endoftext|>"};
  std::function<void(int64_t merges_done, int64_t merges_wanted)> progress;
};

struct BpeModel {
  // id -> token in byte-level form. Ids: special tokens first, then the 256 bytes in byte order,
  // then one token per merge in rank order.
  std::vector<std::string> vocab;
  int64_t num_special = 0;
  std::vector<std::pair<int32_t, int32_t>> merges;  // rank order
  // The training words (raw bytes), their counts, and the token ids training left them as.
  std::vector<std::string> words;
  std::vector<int64_t> word_counts;
  std::vector<std::vector<int32_t>> word_tokens;
};

// Trains on word counts. Ties between equally frequent pairs go to the smaller (left, right) id
// pair, so the result depends only on the counts.
BpeModel train_bpe(const std::unordered_map<std::string, int64_t>& counts, const BpeOptions& opt);

// The tokenizer.json text: ByteLevel pre-tokenizer (GPT-2 regex, no prefix space), BPE model,
// ByteLevel decoder, special tokens as added tokens.
std::string tokenizer_json(const BpeModel& model);

}  // namespace dmx::train
