// The CLI11 front end of the dmx-* tools: parsing with the suite's exit codes (dmx/util.h).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdio>
#include <optional>

#include "dmx/util.h"

namespace dmx {

// Parses the command line. Returns nullopt when the tool should go on; otherwise the exit code:
// 0 after --help (printed), 2 after a parse error (one line: "<tool>: error: command line: ...").
inline std::optional<int> parse_cli(CLI::App& app, const char* tool, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: error: command line: %s\n", tool, first_line(e.what()).c_str());
    return 2;
  }
  return std::nullopt;
}

}  // namespace dmx
