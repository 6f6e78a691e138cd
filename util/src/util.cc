// Plumbing shared by every part: safe reads of input files, atomic writes of outputs, and the
// tools' exit-code convention.
#include "dmx/util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace dmx {

int open_regular_file(const std::string& path, const char* what) {
  if (path.find('\0') != std::string::npos)
    throw InputFileError(std::string("a ") + what + " path contains a NUL byte");
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0)
    throw InputFileError(path + ": cannot open the " + what + " (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputFileError(path + ": the " + what + " is not a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

std::string read_regular_file(const std::string& path, const char* what, int64_t max_bytes) {
  const int fd = open_regular_file(path, what);
  struct stat st {};
  ::fstat(fd, &st);
  if (st.st_size > max_bytes) {
    ::close(fd);
    throw InputFileError(path + ": the " + what + " is " + std::to_string(st.st_size) +
                         " bytes, more than the " + std::to_string(max_bytes) + " accepted");
  }
  std::string text(size_t(st.st_size), '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, &text[got], text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      throw InputFileError(path + ": cannot read the " + what +
                           (n < 0 ? std::string(" (") + std::strerror(err) + ")"
                                  : std::string(" (it shrank while being read)")));
    }
    got += size_t(n);
  }
  ::close(fd);
  return text;
}

void write_file_atomic(const std::string& path, std::string_view text) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw std::runtime_error(path + ": cannot write (" + std::strerror(errno) + ")");
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot rename " + tmp + " into place");
  }
}

StagedDirectory::StagedDirectory(std::string path)
    : path_(std::move(path)), tmp_(path_ + ".tmp." + std::to_string(::getpid())) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  fs::create_directories(tmp_, ec);
  if (ec || !fs::is_directory(tmp_))
    throw std::runtime_error(tmp_ + ": cannot create the directory (" + ec.message() + ")");
}

StagedDirectory::~StagedDirectory() {
  if (committed_) return;
  std::error_code ec;
  std::filesystem::remove_all(tmp_, ec);
}

void StagedDirectory::commit() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(path_, ec)) {
    fs::remove_all(path_, ec);
    if (ec) throw std::runtime_error(path_ + ": cannot replace (" + ec.message() + ")");
  }
  fs::rename(tmp_, path_, ec);
  if (ec)
    throw std::runtime_error(path_ + ": cannot rename the temporary directory (" + ec.message() +
                             ")");
  committed_ = true;
}

std::string first_line(const char* what) {
  const std::string s = what ? what : "unknown error";
  return s.substr(0, s.find('\n'));
}

int run_tool(const char* tool, const std::function<int()>& body) {
  int rc = 1;
  try {
    rc = body();
  } catch (const UsageError& e) {
    std::cout.flush();
    std::fprintf(stderr, "%s: error: %s\n", tool, first_line(e.what()).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::fprintf(stderr, "%s: error: %s\n", tool, first_line(e.what()).c_str());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "%s: error: internal: unknown exception\n", tool);
    return 1;
  }
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout) {
    std::fprintf(stderr, "%s: error: stdout: write failed\n", tool);
    return 1;
  }
  return rc;
}

}  // namespace dmx
