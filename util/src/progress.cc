// ProgressLine: the one progress printer of the dmx-* tools (see dmx/progress.h).
#include "dmx/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dmx {

namespace {

std::string seconds_text(double s) {
  char buf[32];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%d min %02d s", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%d h %02d min", int(s) / 3600, int(s) / 60 % 60);
  return buf;
}

}  // namespace

ProgressLine::ProgressLine(std::string tool, std::string what, bool quiet, double log_interval_s)
    : tool_(std::move(tool)),
      what_(std::move(what)),
      quiet_(quiet),
      tty_(::isatty(2) != 0),
      log_interval_s_(log_interval_s),
      t0_(std::chrono::steady_clock::now()) {}

ProgressLine::~ProgressLine() {
  if (open_line_) std::fputc('\n', stderr);
}

double ProgressLine::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void ProgressLine::update(int64_t done, int64_t total, const std::string& extra) {
  if (quiet_) return;
  const double t = elapsed_s();
  const bool last = total > 0 && done >= total;
  if (!last && t - last_print_s_ < (tty_ ? 0.1 : log_interval_s_)) return;
  last_print_s_ = t;
  std::string line = tool_ + ": " + what_ + " " + std::to_string(done);
  if (total > 0) line += "/" + std::to_string(total);
  line += " (" + seconds_text(t);
  if (total > 0 && done > 0 && !last)
    line += ", ETA " + seconds_text(t * double(total - done) / double(done));
  line += ")";
  if (!extra.empty()) line += " " + extra;
  if (tty_) {
    // \033[K clears what a longer earlier line left on the right.
    std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), last ? "\n" : "");
    open_line_ = !last;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

}  // namespace dmx
