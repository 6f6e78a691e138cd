// Rounds (neg ? -1 : 1) * mag * 2^exp to FP32 with one round-to-nearest-even step: subnormals
// kept, overflow to Inf; mag == 0 gives a zero with the given sign (callers choose IEEE's zero
// sign themselves). Combinational; shared by the block rounding and the FP32 adder.
module mx_round_fp32 #(
    parameter integer MAGW = 69,  // magnitude bits
    parameter integer EW = 11     // exponent bits (two's complement)
) (
    input neg,
    input [MAGW-1:0] mag,
    input signed [EW-1:0] exp,
    output [31:0] result
);
  localparam integer LW = $clog2(MAGW + 1);  // bits of the leading-one position (1..MAGW)
  localparam integer IW = EW + LW + 4;       // internal signed width for exponent arithmetic
  localparam integer XW = MAGW + 24;         // mag followed by 24 zero bits
  localparam integer SW = $clog2(XW + 1);    // right-shift amount bits

  // L = position of the leading one plus one (0 when mag == 0).
  reg [LW-1:0] lead;
  integer i;
  always @* begin
    lead = {LW{1'b0}};
    for (i = 0; i < MAGW; i = i + 1) if (mag[i]) lead = i[LW-1:0] + 1'b1;
  end

  wire signed [IW-1:0] exp_w = {{(IW - EW) {exp[EW-1]}}, exp};
  wire signed [IW-1:0] lead_w = {{(IW - LW) {1'b0}}, lead};
  // Result LSB exponent: 2^(leading - 23) for normal results, 2^-149 for subnormal ones. The
  // right shift of mag that puts it there is rs = max(L - 24, -149 - exp), in [-23, ...).
  wire signed [IW-1:0] rs_normal = lead_w - 24;
  wire signed [IW-1:0] rs_sub = -149 - exp_w;
  wire signed [IW-1:0] rs_raw = (rs_normal > rs_sub) ? rs_normal : rs_sub;
  // Shifting {mag, 24'b0} right by rs + 23 leaves floor(mag * 2^(1 - rs)): q and the round bit.
  // Clamp at XW (everything shifted out, only the sticky bit remains).
  wire signed [IW-1:0] sh_raw = rs_raw + 23;
  localparam signed [IW-1:0] XW_S = XW[IW-1:0];
  wire [SW-1:0] sh = (sh_raw > XW_S) ? XW[SW-1:0] : sh_raw[SW-1:0];
  wire [XW-1:0] ext = {mag, 24'b0};
  wire [XW-1:0] shifted = ext >> sh;
  wire [XW-1:0] lost_mask = ~({XW{1'b1}} << sh);
  wire sticky = |(ext & lost_mask);
  wire round_bit = shifted[0];
  wire [24:0] q = shifted[25:1];  // < 2^24 by construction
  wire round_up = round_bit && (sticky || q[0]);
  wire [24:0] q_rounded = q + {24'b0, round_up};
  // Biased exponent of the leading bit; the packing (efield << 23) + q lets the hidden bit and
  // a rounding carry step the exponent field (subnormal -> normal, 2^24 -> next binade).
  wire signed [IW-1:0] biased = exp_w + lead_w + 126;
  wire signed [IW-1:0] efield = (biased > 0) ? biased - 1 : {IW{1'b0}};
  wire [IW+23:0] packed_bits = {efield, 23'b0} + {{(IW - 1) {1'b0}}, q_rounded};
  wire overflow = packed_bits >= {{(IW - 7) {1'b0}}, 8'hFF, 23'b0};
  wire [30:0] magnitude_bits = (mag == {MAGW{1'b0}}) ? 31'b0 :
                               overflow ? {8'hFF, 23'b0} : packed_bits[30:0];
  assign result = {neg, magnitude_bits};
  wire unused_ok = &{1'b0, shifted[XW-1:26], packed_bits[IW+23:31]};
endmodule
