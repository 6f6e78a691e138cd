// The conformance vector files' reader: strict tokens, counts and ranges, one error per line.
#include "dmx/vectors.h"

#include <charconv>
#include <sstream>

#include "dmx/util.h"

namespace dmx {
namespace {

struct LineReader {
  const std::string& origin;
  int64_t lineno;
  std::vector<std::string> tok;
  size_t pos = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw VectorFileError(origin + ":" + std::to_string(lineno) + ": " + what);
  }
  const std::string& next(const char* what) {
    if (pos >= tok.size()) fail(std::string("line ends before ") + what);
    return tok[pos++];
  }
  void expect(const char* word) {
    const std::string& t = next(word);
    if (t != word) fail(std::string("expected '") + word + "', got '" + t + "'");
  }
  uint32_t hex(const char* what, int digits) {
    const std::string& t = next(what);
    uint32_t v = 0;
    auto r = std::from_chars(t.data(), t.data() + t.size(), v, 16);
    if (int(t.size()) != digits || r.ec != std::errc() || r.ptr != t.data() + t.size())
      fail(std::string(what) + " '" + t + "' is not " + std::to_string(digits) +
           " lower-case hex digits");
    for (char c : t)
      if (c >= 'A' && c <= 'F') fail(std::string(what) + " '" + t + "' is not lower-case hex");
    return v;
  }
  MxFormat format(const char* what) {
    const std::string& t = next(what);
    for (MxFormat f : kAllFormats)
      if (t == format_name(f)) return f;
    fail(std::string(what) + " '" + t + "' is not a format name (E4M3 E5M2 E3M2 E2M3 E2M1 INT8)");
  }
  void done() const {
    if (pos != tok.size()) fail("trailing tokens after the vector");
  }
};

QuantizeVector parse_quantize(LineReader& r) {
  QuantizeVector q;
  q.format = r.format("FORMAT");
  const std::string& rule = r.next("RULE");
  if (rule != "FLOOR" && rule != "CEIL" && rule != "EVEN" && rule != "RCEIL")
    r.fail("RULE '" + rule + "' is not FLOOR, CEIL, EVEN or RCEIL");
  q.options.scale_rule = *parse_scale_rule(rule);
  const std::string& ov = r.next("OVERFLOW");
  if (ov != "SAT" && ov != "OVF") r.fail("OVERFLOW '" + ov + "' is not SAT or OVF");
  q.options.overflow = ov == "OVF" ? Overflow::OVF : Overflow::SAT;
  const std::string& nf = r.next("NONFINITE");
  if (nf != "NAN_SCALE" && nf != "ELEMENT")
    r.fail("NONFINITE '" + nf + "' is not NAN_SCALE or ELEMENT");
  q.options.non_finite = nf == "ELEMENT" ? NonFinitePolicy::ELEMENT : NonFinitePolicy::NAN_SCALE;
  const std::string& m = r.next("INT8_MIN128");
  if (m != "0" && m != "1") r.fail("INT8_MIN128 '" + m + "' is not 0 or 1");
  q.options.int8_allow_minus128 = m == "1";
  for (uint32_t& x : q.input_bits) x = r.hex("an FP32 input", 8);
  r.expect("->");
  q.scale = uint8_t(r.hex("SCALE", 2));
  for (uint8_t& c : q.codes) {
    const uint32_t v = r.hex("a code", 2);
    if (v >= (1u << format_bits(q.format)))
      r.fail("code " + std::to_string(v) + " does not fit " + format_name(q.format));
    c = uint8_t(v);
  }
  r.done();
  return q;
}

DotVector parse_dot(LineReader& r) {
  DotVector d;
  d.format_a = r.format("FA");
  d.format_b = r.format("FB");
  const std::string& nb = r.next("NBLOCKS");
  int n = 0;
  auto res = std::from_chars(nb.data(), nb.data() + nb.size(), n);
  if (res.ec != std::errc() || res.ptr != nb.data() + nb.size() || n < 1 || n > kMaxVectorBlocks)
    r.fail("NBLOCKS '" + nb + "' is not an integer in [1, " + std::to_string(kMaxVectorBlocks) +
           "]");
  // The line must hold the whole vector before anything is sized by NBLOCKS.
  const size_t need = 5 + 2 * (1 + size_t(n) * 33) + 1 + size_t(n) + 2;
  if (r.tok.size() != need)
    r.fail("NBLOCKS " + std::to_string(n) + " needs " + std::to_string(need) +
           " tokens, the line has " + std::to_string(r.tok.size()));
  d.blocks = n;
  d.acc_in_bits = r.hex("ACC_IN", 8);
  auto operand = [&](const char* tag, MxFormat f, std::vector<uint8_t>& s,
                     std::vector<uint8_t>& c) {
    r.expect(tag);
    s.resize(size_t(n));
    c.resize(size_t(n) * kBlockSize);
    for (auto& x : s) x = uint8_t(r.hex("a scale", 2));
    for (auto& x : c) {
      const uint32_t v = r.hex("a code", 2);
      if (v >= (1u << format_bits(f)))
        r.fail("code " + std::to_string(v) + " does not fit " + format_name(f));
      x = uint8_t(v);
    }
  };
  operand("A", d.format_a, d.scales_a, d.codes_a);
  operand("B", d.format_b, d.scales_b, d.codes_b);
  r.expect("->");
  d.block_results_bits.resize(size_t(n));
  for (auto& x : d.block_results_bits) x = r.hex("a block result", 8);
  d.blocked_bits = r.hex("BLOCKED", 8);
  d.exact_bits = r.hex("EXACT", 8);
  r.done();
  return d;
}

}  // namespace

VectorFile parse_vector_file(const std::string& text, const std::string& origin) {
  VectorFile out;
  std::istringstream in(text);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    LineReader r{origin, lineno, {}};
    if (line.find('\0') != std::string::npos) r.fail("a NUL byte");
    if (line.size() > (size_t(1) << 20)) r.fail("a line longer than 1 MiB");
    std::istringstream ls(line);
    std::string t;
    while (ls >> t) r.tok.push_back(t);
    if (r.tok.empty()) continue;
    const std::string tag = r.next("a tag");
    if (tag == "Q")
      out.quantize.push_back(parse_quantize(r));
    else if (tag == "D")
      out.dot.push_back(parse_dot(r));
    else
      r.fail("tag '" + tag + "' is neither Q (quantize) nor D (dot)");
  }
  return out;
}

VectorFile load_vector_file(const std::string& path) {
  std::string text;
  try {
    text = read_regular_file(path, "vector file", int64_t(64) << 20);
  } catch (const InputFileError& e) {
    throw VectorFileError(e.what());
  }
  return parse_vector_file(text, path);
}

}  // namespace dmx
