// dmx-mx's help examples. Each is a real session: tests/conformance runs every "$ dmx-mx ..." line
// and compares the output with the lines below it.
#include "dmx_mx_text.h"

namespace dmx::mx_cli {

const char* const kFormatsExamples = R"(Examples:
  $ dmx-mx formats
  name  long      bits ebits mbits bias    emax  max_normal min_subnormal inf nan
  E4M3  FP8 E4M3     8     4     3    7       8         448          2^-9 no  yes
  E5M2  FP8 E5M2     8     5     2   15      15       57344         2^-16 yes yes
  E3M2  FP6 E3M2     6     3     2    3       4          28          2^-4 no  no 
  E2M3  FP6 E2M3     6     2     3    1       2         7.5          2^-3 no  no 
  E2M1  FP4 E2M1     4     2     1    1       2           6          2^-1 no  no 
  INT8  INT8         8     0     6    0       0    1.984375          2^-6 no  no 
  scale: E8M0, code e = 2^(e-127) for e in 0x00..0xfe, 0xff = NaN; block size 32
)";

const char* const kQuantizeExamples =
    R"(Values: arguments or stdin, separated by whitespace or commas; decimal, hex-float
(0x1.8p+3), inf, nan; negative ones (-inf, -.5) are fine as arguments. Each is rounded to FP32
(RNE) first; a finite literal beyond the FP32 range is an error. The count must be a multiple
of 32 unless --pad zero-fills the last block (the zeros are quantized too, and their codes are
printed). Several blocks are quantized in order, each with its own scale. In the examples below, 500 saturates to 448 under FLOOR
(floor(log2 500) - emax = 0) while RCEIL picks 2^1 so that 500/2 = 250 rounds to 256.

Examples:
  $ dmx-mx quantize -f e2m1 --pad 1 2 3 4 5 6 -0.5 0.25
  FP4 E2M1, scale rule FLOOR, 1 block(s) of 32 (8 values + 24 zero padding)
  block 0: scale 0x7f = 2^0
    codes: 0x02 0x04 0x05 0x06 0x06 0x07 0x09 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ echo "0x1.8p+3, 100, -0.1" | dmx-mx quantize -f e4m3 --pad
  FP8 E4M3, scale rule FLOOR, 1 block(s) of 32 (3 values + 29 zero padding)
  block 0: scale 0x7d = 2^-2
    codes: 0x64 0x7c 0xad 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ dmx-mx quantize -f e4m3 --pad 500
  FP8 E4M3, scale rule FLOOR, 1 block(s) of 32 (1 values + 31 zero padding)
  block 0: scale 0x7f = 2^0
    codes: 0x7e 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ dmx-mx quantize -f e4m3 --pad --scale-rule rceil 500
  FP8 E4M3, scale rule RCEIL, 1 block(s) of 32 (1 values + 31 zero padding)
  block 0: scale 0x80 = 2^1
    codes: 0x78 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

--json prints {format, scale_rule, overflow, nan_policy, int8_min128, n_given, n, input[],
blocks[{scale, scale_exp, codes[], dequantized[]}]} with values as hex-floats.
)";

const char* const kDequantizeExamples =
    R"(Scales: --scale, repeatable, each holding one or more E8M0 codes separated by whitespace,
commas or colons (0x7f:0x80). Codes: --codes, repeatable (or stdin when absent), hex (0x3c)
or decimal, separated by whitespace or commas; 32 codes per scale, block after block. A colon
(or a new --codes) starts the next block, and then each block must hold exactly 32 codes.
--pad zero-fills the last block; only the values of the given codes are printed.
Output: one value per line, shortest decimal that reads back as the same FP32; --json adds
hex-floats.

Examples:
  $ dmx-mx dequantize -f e4m3 --pad --scale 0x7d --codes "0x64 0x7c 0xad"
  12
  96
  -0.1015625

  $ dmx-mx dequantize -f e2m1 --pad --scale 0x7f:0x81 --codes "0x2 0x7 0xf 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0" --codes "0x1"
  1
  6
  -6
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  2
)";

const char* const kDotExamples =
    R"(Operands: each is either --X-values (quantized first with --X-format and the policy
options; "-" reads stdin) or --X-scale + --X-codes (as in dequantize), for X = a, b.
--format sets both formats; --a-format/--b-format override it (operands may differ).
dot_exact: the whole dot product exactly, one RNE rounding to FP32. dot_blocked: per block
r_j = RNE_fp32(2^(sa+sb-254) * exact sum), then ((r_0 + r_1) + r_2) + ... in FP32.

Examples:
  $ dmx-mx dot --pad --a-format e4m3 --a-values "1.1 2.2 3.3" --b-format e2m1 --b-values "1 -0.5 6"
  a: E4M3, b: E2M1, 32 element(s), 1 block(s)
  block 0: a scale 0x78, b scale 0x7f, r = 0x1.38p+4 = 19.5
  dot_exact   = 0x1.38p+4 = 19.5 (fp32 bits 0x419c0000)
  dot_blocked = 0x1.38p+4 = 19.5 (fp32 bits 0x419c0000)

(a quantizes at scale 2^-7 to 1.125, 2.25, 3.25; 1.125 - 1.125 + 19.5 = 19.5.)
)";

const char* const kEncodeExamples =
    R"(Encodes each FP32 value as one element code, RNE, no shared scale (scale 2^0).

Examples:
  $ dmx-mx encode -f e5m2 --overflow ovf 1.5 1e6 0x1p-17
  0x3e
  0x7c
  0x00
)";

const char* const kDecodeExamples =
    R"(Decodes element codes (hex or decimal) to their FP32 values, no shared scale.

Examples:
  $ dmx-mx decode -f e2m3 0x0f 0x2f 1
  1.875
  -1.875
  0.125
)";

}  // namespace dmx::mx_cli
