// JSON files for the dmx-* tools (nlohmann::json): parse with a one-line error that names the
// source, read a whole file, write atomically in the suite's layout (2-space indent, final
// newline). Header-only so that each part keeps its own error type (ConfigError, InputFileError,
// ...).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "dmx/util.h"

namespace dmx {

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
inline std::string json_error_detail(const nlohmann::json::exception& e) {
  const std::string msg = e.what();
  const size_t close = msg.find("] ");
  return close == std::string::npos ? msg : msg.substr(close + 2);
}

// Parses `text`; a syntax error (or a number out of double's range) throws
// Error("<source>: not valid JSON (<where and what>)").
template <class Error = InputFileError>
nlohmann::json parse_json(const std::string& text, const std::string& source) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(source + ": not valid JSON (" + json_error_detail(e) + ")");
  }
}

// read_regular_file, then parse_json (I/O errors are InputFileError, syntax errors Error).
template <class Error = InputFileError>
nlohmann::json read_json_file(const std::string& path, const char* what,
                              int64_t max_bytes = int64_t(64) << 20) {
  return parse_json<Error>(read_regular_file(path, what, max_bytes), path);
}

// The suite's JSON output layout: 2-space indent and a final newline.
inline std::string json_text(const nlohmann::json& j) { return j.dump(2) + "\n"; }
inline std::string json_text(const nlohmann::ordered_json& j) { return j.dump(2) + "\n"; }

// write_file_atomic of json_text(j): a reader never sees half a JSON file.
template <class Json>
void write_json_atomic(const std::string& path, const Json& j) {
  write_file_atomic(path, json_text(j));
}

}  // namespace dmx
