// dMX util: the plumbing every part and CLI shares: reading inputs safely, writing outputs
// atomically, and the command-line tools' error and exit-code convention. No dependencies beyond
// the C++ standard library and POSIX (dmx/cli.h adds the CLI11 front end).
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dmx {

// A bad input file: the message is one line and starts with the file's path.
class InputFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Opens `path` for reading only if it is a regular file (a FIFO, socket or device would block or
// never end), without blocking on the open itself. Returns the descriptor; the caller closes it.
// `what` names the file's role in errors ("model config", "tokenizer.json", ...).
int open_regular_file(const std::string& path, const char* what);

// Reads a whole regular file of at most `max_bytes`; larger files are refused before reading.
std::string read_regular_file(const std::string& path, const char* what,
                              int64_t max_bytes = int64_t(256) << 20);

// Writes `text` to `path` through a temporary file in the same directory (named with the process
// id, so concurrent writers never share one) and a rename, so that a reader never sees a
// half-written file and a failed write leaves no file behind. Throws std::runtime_error.
void write_file_atomic(const std::string& path, std::string_view text);

// A folder written in place of `path`: files go into a temporary sibling (path + ".tmp.<pid>",
// created empty), and commit() replaces whatever is at `path` with it (remove, then one rename);
// destroyed without commit(), it removes the temporary, so a failed run leaves no partial folder.
class StagedDirectory {
 public:
  explicit StagedDirectory(std::string path);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  const std::string& dir() const { return tmp_; }  // where the files are written
  void commit();

 private:
  std::string path_, tmp_;
  bool committed_ = false;
};

// ---- command-line tools ------------------------------------------------------------------------
// Every dmx-* tool exits 0 on success, 2 on a usage error (a bad flag, a flag combination, an
// input the tool cannot take) and 1 on any other failure, after one line on stderr:
// "<tool>: error: <what>".

// A usage error: exit code 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The first line of an exception's message (library messages may carry traces).
std::string first_line(const char* what);

// Runs a tool's body and maps what escapes it to the convention above (UsageError: 2; any other
// exception: 1). stdout is flushed either way; a failed write to it is an error (exit 1).
int run_tool(const char* tool, const std::function<int()>& body);

}  // namespace dmx
