// Renders rtl/mx_formats.vh (the RTL's format constants) from golden's format_info().
#pragma once

#include <string>

namespace dmx::rtl {

// The exact text of rtl/mx_formats.vh; the file in the repository must equal it byte for byte.
std::string render_mx_formats_vh();

}  // namespace dmx::rtl
