// Hugging Face `tokenizer.json` byte-level BPE (GPT-2, Llama 3, Qwen2/3, SmolLM2 families).
// Independent of LibTorch. Supported pieces: added/special tokens (split first), normalizers
// NFC / Sequence / none, pre-tokenizers Split (regex, Isolated), ByteLevel (with or without the
// GPT-2 regex), Digits (individual or grouped), Sequence; model BPE with merges written as
// "a b" strings or ["a", "b"] pairs, ignore_merges; decoder ByteLevel.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dmx::quant {

class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Tokenizer {
 public:
  // Loads a tokenizer.json file (or a model directory holding one).
  static Tokenizer load(const std::string& path);
  static Tokenizer from_json(const std::string& json_text, const std::string& source);
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Token ids of UTF-8 `text` (no BOS/EOS added: add_special_tokens = false). Added tokens in the
  // text are recognised as such. Throws TokenizerError on invalid UTF-8.
  std::vector<int32_t> encode(std::string_view text) const;
  // Bytes of the tokens (ByteLevel decoding; added tokens as their content unless skipped).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int64_t vocab_size() const;  // largest id + 1, added tokens included
  // The id of a token string (byte-level form for the BPE vocabulary), -1 when absent.
  int32_t token_to_id(const std::string& token) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dmx::quant
