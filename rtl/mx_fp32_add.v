// IEEE-754 binary32 addition a + b, round to nearest even, subnormals kept (no flush), overflow
// to Inf. NaN handling follows x86 SSE (addss a, b): a NaN operand comes out quieted with its
// payload, the first operand winning; Inf - Inf gives the quiet NaN 0x7FC00000.
// Combinational. Uses the textbook guard/round/sticky alignment: 3 extra bits and the bits shifted
// out of the smaller operand jammed into the lowest one, which rounds exactly as the exact sum.
module mx_fp32_add (
    input [31:0] a,
    input [31:0] b,
    output [31:0] y
);
  wire a_sign = a[31], b_sign = b[31];
  wire [7:0] a_exp = a[30:23], b_exp = b[30:23];
  wire [22:0] a_frac = a[22:0], b_frac = b[22:0];
  wire a_nan = (a_exp == 8'hFF) && (a_frac != 0);
  wire b_nan = (b_exp == 8'hFF) && (b_frac != 0);
  wire a_inf = (a_exp == 8'hFF) && (a_frac == 0);
  wire b_inf = (b_exp == 8'hFF) && (b_frac == 0);

  // Order by magnitude (the bit patterns of finite magnitudes sort like the values).
  wire a_bigger = a[30:0] >= b[30:0];
  wire [31:0] op_big = a_bigger ? a : b;
  wire [30:0] op_small = a_bigger ? b[30:0] : a[30:0];
  wire [7:0] big_eff = (op_big[30:23] == 0) ? 8'd1 : op_big[30:23];
  wire [7:0] small_eff = (op_small[30:23] == 0) ? 8'd1 : op_small[30:23];
  wire [23:0] big_mant = {op_big[30:23] != 0, op_big[22:0]};
  wire [23:0] small_mant = {op_small[30:23] != 0, op_small[22:0]};
  wire [7:0] diff = big_eff - small_eff;
  wire [4:0] align = (diff > 8'd27) ? 5'd27 : diff[4:0];
  wire [26:0] small_ext = {small_mant, 3'b000};
  wire [26:0] small_shifted = small_ext >> align;
  wire [26:0] lost_mask = ~(27'h7FFFFFF << align);
  wire small_sticky = |(small_ext & lost_mask);
  wire [27:0] big_al = {1'b0, big_mant, 3'b000};
  wire [27:0] small_al = {1'b0, small_shifted[26:1], small_shifted[0] | small_sticky};
  wire subtract = a_sign ^ b_sign;
  wire [27:0] sum = subtract ? big_al - small_al : big_al + small_al;
  // Exact zero: -0 only for (-0) + (-0); x + (-x) is +0 in round-to-nearest.
  wire sum_sign = (sum == 0) ? (a_sign & b_sign) : op_big[31];
  // value = sum * 2^(big_eff - 127 - 23 - 3)
  wire signed [9:0] sum_exp = $signed({2'b00, big_eff}) - 10'sd153;
  wire [31:0] rounded;
  mx_round_fp32 #(
      .MAGW(28),
      .EW  (10)
  ) u_round (
      .neg(sum_sign),
      .mag(sum),
      .exp(sum_exp),
      .result(rounded)
  );
  assign y = a_nan ? (a | 32'h0040_0000) :
             b_nan ? (b | 32'h0040_0000) :
             (a_inf && b_inf && subtract) ? 32'h7FC0_0000 :
             a_inf ? a :
             b_inf ? b : rounded;
endmodule
