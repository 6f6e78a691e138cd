// dmx-rtl-gen-formats: prints rtl/mx_formats.vh, the RTL's format constants, from golden.
// Usage: dmx-rtl-gen-formats [OUTPUT]   (no argument: standard output)
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>

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
  const std::string out = argv[1], tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary);
    if (!(f << text) || !f.flush()) {
      std::cerr << "dmx-rtl-gen-formats: cannot write " << tmp << "\n";
      return 1;
    }
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    std::cerr << "dmx-rtl-gen-formats: cannot rename " << tmp << " to " << out << "\n";
    std::remove(tmp.c_str());
    return 1;
  }
  return 0;
}
