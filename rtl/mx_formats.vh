// MX element-format constants for the RTL, generated from golden's dmx::format_info() by
// `dmx-rtl-gen-formats > rtl/mx_formats.vh`; the ctest test rtl_formats_vh_matches_golden
// fails when this file and golden disagree. Include it inside a module body. Do not edit.
/* verilator lint_off UNUSEDPARAM */
localparam integer MX_NUM_FORMATS = 6;
localparam integer MX_BLOCK_SIZE = 32;
localparam integer MX_SCALE_BIAS = 127;
localparam integer MX_SCALE_NAN = 255;
// FP8 E4M3 (MxFormat 0)
localparam integer MX_E4M3 = 0;
localparam integer MX_E4M3_BITS = 8;
localparam integer MX_E4M3_EBITS = 4;
localparam integer MX_E4M3_MBITS = 3;
localparam integer MX_E4M3_BIAS = 7;
localparam integer MX_E4M3_EMAX = 8;
localparam integer MX_E4M3_QEXP = -9;
localparam integer MX_E4M3_HAS_INF = 0;
localparam integer MX_E4M3_HAS_NAN = 1;
localparam integer MX_E4M3_IS_INT = 0;
// FP8 E5M2 (MxFormat 1)
localparam integer MX_E5M2 = 1;
localparam integer MX_E5M2_BITS = 8;
localparam integer MX_E5M2_EBITS = 5;
localparam integer MX_E5M2_MBITS = 2;
localparam integer MX_E5M2_BIAS = 15;
localparam integer MX_E5M2_EMAX = 15;
localparam integer MX_E5M2_QEXP = -16;
localparam integer MX_E5M2_HAS_INF = 1;
localparam integer MX_E5M2_HAS_NAN = 1;
localparam integer MX_E5M2_IS_INT = 0;
// FP6 E3M2 (MxFormat 2)
localparam integer MX_E3M2 = 2;
localparam integer MX_E3M2_BITS = 6;
localparam integer MX_E3M2_EBITS = 3;
localparam integer MX_E3M2_MBITS = 2;
localparam integer MX_E3M2_BIAS = 3;
localparam integer MX_E3M2_EMAX = 4;
localparam integer MX_E3M2_QEXP = -4;
localparam integer MX_E3M2_HAS_INF = 0;
localparam integer MX_E3M2_HAS_NAN = 0;
localparam integer MX_E3M2_IS_INT = 0;
// FP6 E2M3 (MxFormat 3)
localparam integer MX_E2M3 = 3;
localparam integer MX_E2M3_BITS = 6;
localparam integer MX_E2M3_EBITS = 2;
localparam integer MX_E2M3_MBITS = 3;
localparam integer MX_E2M3_BIAS = 1;
localparam integer MX_E2M3_EMAX = 2;
localparam integer MX_E2M3_QEXP = -3;
localparam integer MX_E2M3_HAS_INF = 0;
localparam integer MX_E2M3_HAS_NAN = 0;
localparam integer MX_E2M3_IS_INT = 0;
// FP4 E2M1 (MxFormat 4)
localparam integer MX_E2M1 = 4;
localparam integer MX_E2M1_BITS = 4;
localparam integer MX_E2M1_EBITS = 2;
localparam integer MX_E2M1_MBITS = 1;
localparam integer MX_E2M1_BIAS = 1;
localparam integer MX_E2M1_EMAX = 2;
localparam integer MX_E2M1_QEXP = -1;
localparam integer MX_E2M1_HAS_INF = 0;
localparam integer MX_E2M1_HAS_NAN = 0;
localparam integer MX_E2M1_IS_INT = 0;
// INT8 (MxFormat 5)
localparam integer MX_INT8 = 5;
localparam integer MX_INT8_BITS = 8;
localparam integer MX_INT8_EBITS = 0;
localparam integer MX_INT8_MBITS = 6;
localparam integer MX_INT8_BIAS = 0;
localparam integer MX_INT8_EMAX = 0;
localparam integer MX_INT8_QEXP = -6;
localparam integer MX_INT8_HAS_INF = 0;
localparam integer MX_INT8_HAS_NAN = 0;
localparam integer MX_INT8_IS_INT = 1;
/* verilator lint_on UNUSEDPARAM */
function automatic integer mx_fmt_bits(input integer f);
  case (f)
    0: mx_fmt_bits = MX_E4M3_BITS;
    1: mx_fmt_bits = MX_E5M2_BITS;
    2: mx_fmt_bits = MX_E3M2_BITS;
    3: mx_fmt_bits = MX_E2M3_BITS;
    4: mx_fmt_bits = MX_E2M1_BITS;
    5: mx_fmt_bits = MX_INT8_BITS;
    default: mx_fmt_bits = 0;
  endcase
endfunction
function automatic integer mx_fmt_ebits(input integer f);
  case (f)
    0: mx_fmt_ebits = MX_E4M3_EBITS;
    1: mx_fmt_ebits = MX_E5M2_EBITS;
    2: mx_fmt_ebits = MX_E3M2_EBITS;
    3: mx_fmt_ebits = MX_E2M3_EBITS;
    4: mx_fmt_ebits = MX_E2M1_EBITS;
    5: mx_fmt_ebits = MX_INT8_EBITS;
    default: mx_fmt_ebits = 0;
  endcase
endfunction
function automatic integer mx_fmt_mbits(input integer f);
  case (f)
    0: mx_fmt_mbits = MX_E4M3_MBITS;
    1: mx_fmt_mbits = MX_E5M2_MBITS;
    2: mx_fmt_mbits = MX_E3M2_MBITS;
    3: mx_fmt_mbits = MX_E2M3_MBITS;
    4: mx_fmt_mbits = MX_E2M1_MBITS;
    5: mx_fmt_mbits = MX_INT8_MBITS;
    default: mx_fmt_mbits = 0;
  endcase
endfunction
function automatic integer mx_fmt_bias(input integer f);
  case (f)
    0: mx_fmt_bias = MX_E4M3_BIAS;
    1: mx_fmt_bias = MX_E5M2_BIAS;
    2: mx_fmt_bias = MX_E3M2_BIAS;
    3: mx_fmt_bias = MX_E2M3_BIAS;
    4: mx_fmt_bias = MX_E2M1_BIAS;
    5: mx_fmt_bias = MX_INT8_BIAS;
    default: mx_fmt_bias = 0;
  endcase
endfunction
function automatic integer mx_fmt_emax(input integer f);
  case (f)
    0: mx_fmt_emax = MX_E4M3_EMAX;
    1: mx_fmt_emax = MX_E5M2_EMAX;
    2: mx_fmt_emax = MX_E3M2_EMAX;
    3: mx_fmt_emax = MX_E2M3_EMAX;
    4: mx_fmt_emax = MX_E2M1_EMAX;
    5: mx_fmt_emax = MX_INT8_EMAX;
    default: mx_fmt_emax = 0;
  endcase
endfunction
function automatic integer mx_fmt_qexp(input integer f);
  case (f)
    0: mx_fmt_qexp = MX_E4M3_QEXP;
    1: mx_fmt_qexp = MX_E5M2_QEXP;
    2: mx_fmt_qexp = MX_E3M2_QEXP;
    3: mx_fmt_qexp = MX_E2M3_QEXP;
    4: mx_fmt_qexp = MX_E2M1_QEXP;
    5: mx_fmt_qexp = MX_INT8_QEXP;
    default: mx_fmt_qexp = 0;
  endcase
endfunction
function automatic integer mx_fmt_has_inf(input integer f);
  case (f)
    0: mx_fmt_has_inf = MX_E4M3_HAS_INF;
    1: mx_fmt_has_inf = MX_E5M2_HAS_INF;
    2: mx_fmt_has_inf = MX_E3M2_HAS_INF;
    3: mx_fmt_has_inf = MX_E2M3_HAS_INF;
    4: mx_fmt_has_inf = MX_E2M1_HAS_INF;
    5: mx_fmt_has_inf = MX_INT8_HAS_INF;
    default: mx_fmt_has_inf = 0;
  endcase
endfunction
function automatic integer mx_fmt_has_nan(input integer f);
  case (f)
    0: mx_fmt_has_nan = MX_E4M3_HAS_NAN;
    1: mx_fmt_has_nan = MX_E5M2_HAS_NAN;
    2: mx_fmt_has_nan = MX_E3M2_HAS_NAN;
    3: mx_fmt_has_nan = MX_E2M3_HAS_NAN;
    4: mx_fmt_has_nan = MX_E2M1_HAS_NAN;
    5: mx_fmt_has_nan = MX_INT8_HAS_NAN;
    default: mx_fmt_has_nan = 0;
  endcase
endfunction
function automatic integer mx_fmt_is_int(input integer f);
  case (f)
    0: mx_fmt_is_int = MX_E4M3_IS_INT;
    1: mx_fmt_is_int = MX_E5M2_IS_INT;
    2: mx_fmt_is_int = MX_E3M2_IS_INT;
    3: mx_fmt_is_int = MX_E2M3_IS_INT;
    4: mx_fmt_is_int = MX_E2M1_IS_INT;
    5: mx_fmt_is_int = MX_INT8_IS_INT;
    default: mx_fmt_is_int = 0;
  endcase
endfunction
