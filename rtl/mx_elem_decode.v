// Decodes one MX element code of a selectable format into sign, integer mantissa and a left shift
// relative to the unit's anchor: value = (-1)^sign * mant * 2^(shift + MINQ). Only the formats
// enabled in FORMATS are built; a disabled or unknown select reports fmt_ok = 0.
// Float codes: mant = e ? (1 << MBITS) | m : m, shift = max(e, 1) - 1 + QEXP - MINQ, with
// QEXP = 1 - BIAS - MBITS; INT8: mant = |code|, shift = QEXP - MINQ. Inf/NaN codes give mant 0.
module mx_elem_decode #(
    parameter [5:0] FORMATS = 6'b111111,
    parameter integer MINQ = -16,   // smallest quantum exponent among FORMATS
    parameter integer MANTW = 8,    // mantissa bits
    parameter integer SHW = 5       // shift bits
) (
    input [2:0] fmt,
    input [7:0] code,
    output reg fmt_ok,
    output reg sign,
    output reg [MANTW-1:0] mant,
    output reg [SHW-1:0] shift,
    output reg is_nan,
    output reg is_inf
);
`include "mx_formats.vh"
  localparam integer DW = 1 + MANTW + SHW + 2;  // {sign, mant, shift, nan, inf}
  wire [DW-1:0] decoded[0:MX_NUM_FORMATS-1];

  genvar f;
  generate
    for (f = 0; f < MX_NUM_FORMATS; f = f + 1) begin : g_fmt
      localparam integer EB = mx_fmt_ebits(f);
      localparam integer MB = mx_fmt_mbits(f);
      localparam integer QSH = mx_fmt_qexp(f) - MINQ;  // shift of the format's quantum
      if (!FORMATS[f]) begin : g_off
        assign decoded[f] = {DW{1'b0}};
      end else if (mx_fmt_is_int(f) != 0) begin : g_int
        // Two's complement code in units of the quantum; 0x80 decodes to -128.
        wire neg = code[7];
        wire [7:0] magnitude = neg ? (~code + 8'd1) : code;
        /* verilator lint_off UNUSEDSIGNAL */
        wire [MANTW+7:0] m_wide = {{MANTW{1'b0}}, magnitude};
        /* verilator lint_on UNUSEDSIGNAL */
        wire [MANTW-1:0] m_ext = m_wide[MANTW-1:0];
        wire [SHW-1:0] sh = QSH[SHW-1:0];
        assign decoded[f] = {neg, m_ext, sh, 2'b00};
      end else begin : g_float
        wire neg = code[EB+MB];
        wire [EB-1:0] e = code[EB+MB-1:MB];
        wire [MB-1:0] m = code[MB-1:0];
        wire e_ones = &e;
        // IEEE-like formats (E5M2) reserve the top exponent; E4M3 only its all-ones mantissa.
        wire nan_code = (mx_fmt_has_inf(f) != 0) ? (e_ones && m != 0) :
                        (mx_fmt_has_nan(f) != 0) ? (e_ones && &m) : 1'b0;
        wire inf_code = (mx_fmt_has_inf(f) != 0) ? (e_ones && m == 0) : 1'b0;
        wire special = nan_code || inf_code;
        wire [MB:0] full = {e != 0, m};
        /* verilator lint_off UNUSEDSIGNAL */
        wire [MANTW+MB:0] m_wide = {{MANTW{1'b0}}, full};
        /* verilator lint_on UNUSEDSIGNAL */
        wire [MANTW-1:0] m_ext = special ? {MANTW{1'b0}} : m_wide[MANTW-1:0];
        wire [EB-1:0] e_minus1 = (e == 0) ? {EB{1'b0}} : e - 1'b1;
        /* verilator lint_off UNUSEDSIGNAL */
        wire [SHW+EB-1:0] e_wide = {{SHW{1'b0}}, e_minus1};
        /* verilator lint_on UNUSEDSIGNAL */
        wire [SHW-1:0] sh = e_wide[SHW-1:0] + QSH[SHW-1:0];
        assign decoded[f] = {neg, m_ext, sh, nan_code, inf_code};
      end
    end
  endgenerate

  always @* begin
    {sign, mant, shift, is_nan, is_inf} = {DW{1'b0}};
    fmt_ok = 1'b0;
    if (fmt < 3'd6 && FORMATS[fmt]) begin
      fmt_ok = 1'b1;
      {sign, mant, shift, is_nan, is_inf} = decoded[fmt];
    end
  end
endmodule
