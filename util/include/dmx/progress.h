// Progress of a long-running tool on stderr: "<tool>: <what> <done>/<total> (<elapsed>, ETA ..)".
// On a terminal the line is rewritten in place (\r) at most 10 times a second; into a file or
// pipe a line is printed at most every `log_interval_s` seconds (and at the end), so logs stay
// readable instead of holding one line per step.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace dmx {

class ProgressLine {
 public:
  // quiet: print nothing. log_interval_s: the spacing of lines when stderr is not a terminal.
  ProgressLine(std::string tool, std::string what, bool quiet, double log_interval_s = 10.0);
  ~ProgressLine();  // ends a line left open on a terminal
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  // Reports `done` of `total` units (total <= 0: unknown, no ETA); `extra` is appended as is.
  // The last update (done == total) is always printed.
  void update(int64_t done, int64_t total, const std::string& extra = "");
  double elapsed_s() const;

 private:
  std::string tool_, what_;
  bool quiet_, tty_, open_line_ = false;
  double log_interval_s_, last_print_s_ = -1e300;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace dmx
