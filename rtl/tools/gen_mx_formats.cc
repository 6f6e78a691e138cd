// dmx-rtl-gen-formats: prints rtl/mx_formats.vh, the RTL's format constants, from golden.
// Usage: dmx-rtl-gen-formats [OUTPUT]   (no argument: standard output)
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "dmx/util.h"
#include "mx_formats_vh.h"

int main(int argc, char** argv) {
  if (argc > 2 || (argc == 2 && (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")))) {
    std::cout
        << "usage: dmx-rtl-gen-formats [OUTPUT]\n"
           "Writes rtl/mx_formats.vh (format constants from golden's format_info) to OUTPUT,\n"
           "or to standard output when OUTPUT is omitted.\n";
    return argc > 2 ? 2 : 0;
  }
  const std::string text = dmx::rtl::render_mx_formats_vh();
  if (argc == 1) {
    std::cout << text;
    return 0;
  }
  return dmx::run_tool("dmx-rtl-gen-formats", [&] {
    dmx::write_file_atomic(argv[1], text);
    return 0;
  });
}
