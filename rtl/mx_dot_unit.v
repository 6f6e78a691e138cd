// mx_dot_unit: a pipelined MX block dot-product step, bit-exact to golden's dot_blocked.
//
//   acc_out = acc_in + RNE_fp32( 2^(sa+sb-254) * sum_{i<32} Pa_i * Pb_i )       (two FP32 roundings)
//
// The 32 products are formed as small integer mantissa products, shifted to a common fixed-point
// anchor 2^(2*MINQ) (MINQ = the smallest element quantum among the enabled formats) and summed
// exactly in SUMW bits; the block sum is rounded once to FP32 (RNE, subnormals, overflow to Inf),
// then added to the accumulator with an IEEE FP32 adder (RNE).
// Specials as golden: a NaN scale (0xFF) or NaN element makes the block NaN; Inf * 0 = NaN;
// +Inf and -Inf products give NaN; an exact zero sum is -0 only when every product is -0.
// A format select that is not enabled in FORMATS (or is 6, 7) yields the quiet NaN 0x7FC00000.
//
// Pipeline: four phases, A (decode + mantissa multiply), B (align + exact adder tree), C (round
// the block to FP32), D (FP32 accumulate); STAGES (1..4) register slices sit after
//   STAGES=1: D   2: B, D   3: B, C, D   4: A, B, C, D.
// Latency is STAGES cycles (a beat accepted at clock edge t is on the outputs after edge
// t + STAGES - 1, i.e. out_valid is seen in the cycle that ends with edge t + STAGES); one block is
// accepted per cycle while out_ready stays high; out_* hold while out_valid && !out_ready.
module mx_dot_unit #(
    parameter integer STAGES = 4,
    parameter [5:0] FORMATS = 6'b111111  // bit i = MxFormat i: 0 E4M3 1 E5M2 2 E3M2 3 E2M3 4 E2M1 5 INT8
) (
    input clk,
    input rst_n,
    input in_valid,
    output in_ready,
    input [2:0] fmt_a,
    input [2:0] fmt_b,
    input [7:0] scale_a,
    input [7:0] scale_b,
    input [255:0] codes_a,
    input [255:0] codes_b,
    input [31:0] acc_in,
    input [15:0] tag_in,
    output out_valid,
    input out_ready,
    output [31:0] acc_out,
    output [15:0] tag_out
);
`include "mx_formats.vh"

  // ---- Datapath widths, derived from the enabled formats' constants ----------------------------
  function automatic integer max2(input integer x, input integer y);
    max2 = (x > y) ? x : y;
  endfunction
  // Smallest quantum exponent of the enabled formats: the element anchor.
  function automatic integer calc_minq(input [5:0] fm);
    integer f;
    begin
      calc_minq = 1000;
      for (f = 0; f < MX_NUM_FORMATS; f = f + 1)
        if (fm[f] && mx_fmt_qexp(f) < calc_minq) calc_minq = mx_fmt_qexp(f);
    end
  endfunction
  // Bits of an element's integer mantissa (INT8: |code| up to 128).
  function automatic integer fmt_mant_bits(input integer f);
    fmt_mant_bits = (mx_fmt_is_int(f) != 0) ? mx_fmt_bits(f) : mx_fmt_mbits(f) + 1;
  endfunction
  // Largest shift of a mantissa above its own quantum (largest exponent field - 1).
  function automatic integer fmt_max_xoff(input integer f);
    fmt_max_xoff = (mx_fmt_is_int(f) != 0) ? 0 : mx_fmt_emax(f) + mx_fmt_bias(f) - 1;
  endfunction
  function automatic integer calc_mantw(input [5:0] fm);
    integer f;
    begin
      calc_mantw = 1;
      for (f = 0; f < MX_NUM_FORMATS; f = f + 1)
        if (fm[f]) calc_mantw = max2(calc_mantw, fmt_mant_bits(f));
    end
  endfunction
  // Largest element shift above the anchor.
  function automatic integer calc_shmax(input [5:0] fm, input integer minq);
    integer f;
    begin
      calc_shmax = 0;
      for (f = 0; f < MX_NUM_FORMATS; f = f + 1)
        if (fm[f]) calc_shmax = max2(calc_shmax, fmt_max_xoff(f) + mx_fmt_qexp(f) - minq);
    end
  endfunction
  // Bits of the largest element magnitude in anchor units.
  function automatic integer calc_topbits(input [5:0] fm, input integer minq);
    integer f;
    begin
      calc_topbits = 1;
      for (f = 0; f < MX_NUM_FORMATS; f = f + 1)
        if (fm[f])
          calc_topbits =
              max2(calc_topbits, fmt_mant_bits(f) + fmt_max_xoff(f) + mx_fmt_qexp(f) - minq);
    end
  endfunction

  localparam integer N = MX_BLOCK_SIZE;
  localparam integer MINQ = calc_minq(FORMATS);
  localparam integer MANTW = calc_mantw(FORMATS);
  localparam integer SHMAX = calc_shmax(FORMATS, MINQ);
  localparam integer SHW = (SHMAX > 0) ? $clog2(SHMAX + 1) : 1;
  localparam integer PW = 2 * MANTW;   // mantissa product bits
  localparam integer PSW = SHW + 1;    // product shift bits
  // Exact block sum: each product < 2^(2*TOPBITS); 32 of them add 5 bits; plus a sign bit.
  localparam integer SUMW = 2 * calc_topbits(FORMATS, MINQ) + 6;
  // Block exponent E = 2*MINQ + sa + sb - 254, two's complement.
  localparam integer EW = $clog2(2 * 255 + 2 * (MINQ < 0 ? -MINQ : MINQ) + 1) + 1;
  localparam integer LANEW = 1 + PW + PSW;  // {sign, product, shift}

  generate
    if (STAGES < 1 || STAGES > 4 || FORMATS == 6'b0) begin : g_bad_params
      mx_dot_unit_invalid_parameters_STAGES_must_be_1_to_4_and_FORMATS_nonzero u_error ();
    end
  endgenerate

  // ---- Phase A: decode and multiply ----------------------------------------------------------
  wire fmt_a_ok = (fmt_a < 3'd6) && FORMATS[fmt_a];
  wire fmt_b_ok = (fmt_b < 3'd6) && FORMATS[fmt_b];
  wire [N*LANEW-1:0] a_lanes;
  wire [N-1:0] lane_nan, lane_pinf, lane_ninf, lane_negzero;

  genvar i;
  generate
    for (i = 0; i < N; i = i + 1) begin : g_lane
      wire sa_sign, sb_sign, a_nan, b_nan, a_inf, b_inf;
      wire [MANTW-1:0] a_mant, b_mant;
      wire [SHW-1:0] a_sh, b_sh;
      /* verilator lint_off PINCONNECTEMPTY */
      mx_elem_decode #(
          .FORMATS(FORMATS),
          .MINQ(MINQ),
          .MANTW(MANTW),
          .SHW(SHW)
      ) u_dec_a (
          .fmt(fmt_a),
          .code(codes_a[8*i+7:8*i]),
          .fmt_ok(),
          .sign(sa_sign),
          .mant(a_mant),
          .shift(a_sh),
          .is_nan(a_nan),
          .is_inf(a_inf)
      );
      mx_elem_decode #(
          .FORMATS(FORMATS),
          .MINQ(MINQ),
          .MANTW(MANTW),
          .SHW(SHW)
      ) u_dec_b (
          .fmt(fmt_b),
          .code(codes_b[8*i+7:8*i]),
          .fmt_ok(),
          .sign(sb_sign),
          .mant(b_mant),
          .shift(b_sh),
          .is_nan(b_nan),
          .is_inf(b_inf)
      );
      /* verilator lint_on PINCONNECTEMPTY */
      wire p_sign = sa_sign ^ sb_sign;
      wire a_zero = (a_mant == 0) && !a_inf && !a_nan;
      wire b_zero = (b_mant == 0) && !b_inf && !b_nan;
      wire p_nan = a_nan || b_nan || (a_inf && b_zero) || (b_inf && a_zero);
      wire p_inf = (a_inf || b_inf) && !p_nan;
      wire [PW-1:0] product = a_mant * b_mant;
      wire [PSW-1:0] p_shift = {1'b0, a_sh} + {1'b0, b_sh};
      assign a_lanes[LANEW*i+:LANEW] = {p_sign, product, p_shift};
      assign lane_nan[i] = p_nan;
      assign lane_pinf[i] = p_inf && !p_sign;
      assign lane_ninf[i] = p_inf && p_sign;
      assign lane_negzero[i] = (a_zero || b_zero) && p_sign;
    end
  endgenerate

  wire a_blk_nan = !fmt_a_ok || !fmt_b_ok || scale_a == MX_SCALE_NAN[7:0] ||
                   scale_b == MX_SCALE_NAN[7:0] || (|lane_nan) || ((|lane_pinf) && (|lane_ninf));
  wire a_blk_inf = (|lane_pinf) || (|lane_ninf);
  wire a_blk_inf_neg = |lane_ninf;
  wire a_all_negzero = &lane_negzero;
  localparam integer EXP_OFFSET_I = 2 * MINQ - 2 * MX_SCALE_BIAS;
  localparam signed [EW-1:0] EXP_OFFSET = EXP_OFFSET_I[EW-1:0];
  wire [EW-1:0] scale_sum = {{(EW - 9) {1'b0}}, {1'b0, scale_a} + {1'b0, scale_b}};
  wire signed [EW-1:0] a_exp = $signed(scale_sum) + EXP_OFFSET;
  localparam integer FLAGW = 4 + EW;
  wire [FLAGW-1:0] a_flags = {a_blk_nan, a_blk_inf, a_blk_inf_neg, a_all_negzero, a_exp};

  localparam integer AW = N * LANEW + FLAGW + 48;
  wire b_valid, b_ready;
  wire [AW-1:0] b_data;
  mx_pipe_stage #(
      .W  (AW),
      .REG(STAGES >= 4 ? 1 : 0)
  ) u_stage_a (
      .clk(clk),
      .rst_n(rst_n),
      .in_valid(in_valid),
      .in_ready(in_ready),
      .in_data({a_lanes, a_flags, acc_in, tag_in}),
      .out_valid(b_valid),
      .out_ready(b_ready),
      .out_data(b_data)
  );

  // ---- Phase B: align every product to the anchor and add them exactly -------------------------
  wire [N*LANEW-1:0] b_lanes = b_data[AW-1-:N*LANEW];
  wire [FLAGW+47:0] b_pass = b_data[FLAGW+47:0];
  reg signed [SUMW-1:0] b_sum;
  integer k;
  always @* begin : sum_products
    reg [LANEW-1:0] lane;
    /* verilator lint_off UNUSEDSIGNAL */
    reg [SUMW+PW-1:0] wide;  // only the low SUMW bits are used
    /* verilator lint_on UNUSEDSIGNAL */
    reg [SUMW-1:0] aligned;
    b_sum = {SUMW{1'b0}};
    for (k = 0; k < N; k = k + 1) begin
      lane = b_lanes[LANEW*k+:LANEW];
      wide = {{SUMW{1'b0}}, lane[PSW+:PW]};
      aligned = wide[SUMW-1:0] << lane[PSW-1:0];
      b_sum = lane[LANEW-1] ? b_sum - aligned : b_sum + aligned;
    end
  end

  localparam integer BW = SUMW + FLAGW + 48;
  wire c_valid, c_ready;
  wire [BW-1:0] c_data;
  mx_pipe_stage #(
      .W  (BW),
      .REG(STAGES >= 2 ? 1 : 0)
  ) u_stage_b (
      .clk(clk),
      .rst_n(rst_n),
      .in_valid(b_valid),
      .in_ready(b_ready),
      .in_data({b_sum, b_pass}),
      .out_valid(c_valid),
      .out_ready(c_ready),
      .out_data(c_data)
  );

  // ---- Phase C: round the block result once to FP32 ------------------------------------------
  wire signed [SUMW-1:0] c_sum = c_data[BW-1-:SUMW];
  wire [FLAGW-1:0] c_flags = c_data[FLAGW+47:48];
  wire c_nan = c_flags[FLAGW-1];
  wire c_inf = c_flags[FLAGW-2];
  wire c_inf_neg = c_flags[FLAGW-3];
  wire c_all_negzero = c_flags[FLAGW-4];
  wire signed [EW-1:0] c_exp = c_flags[EW-1:0];
  wire c_neg = c_sum[SUMW-1];
  wire [SUMW-1:0] c_abs = c_neg ? -c_sum : c_sum;
  wire [31:0] c_rounded;
  mx_round_fp32 #(
      .MAGW(SUMW - 1),
      .EW  (EW)
  ) u_round_block (
      .neg(c_neg),
      .mag(c_abs[SUMW-2:0]),
      .exp(c_exp),
      .result(c_rounded)
  );
  wire [31:0] c_block = c_nan ? 32'h7FC0_0000 :
                        c_inf ? {c_inf_neg, 8'hFF, 23'b0} :
                        (c_sum == 0) ? {c_all_negzero, 31'b0} : c_rounded;

  wire d_valid, d_ready;
  wire [79:0] d_data;
  mx_pipe_stage #(
      .W  (80),
      .REG(STAGES >= 3 ? 1 : 0)
  ) u_stage_c (
      .clk(clk),
      .rst_n(rst_n),
      .in_valid(c_valid),
      .in_ready(c_ready),
      .in_data({c_block, c_data[47:0]}),
      .out_valid(d_valid),
      .out_ready(d_ready),
      .out_data(d_data)
  );

  // ---- Phase D: accumulate in FP32 -----------------------------------------------------------
  wire [31:0] d_sum;
  // acc_in first: NaN payload propagation as C++ `acc + r` compiles on x86.
  mx_fp32_add u_acc_add (
      .a(d_data[47:16]),
      .b(d_data[79:48]),
      .y(d_sum)
  );
  wire [47:0] out_data;
  mx_pipe_stage #(
      .W  (48),
      .REG(1)
  ) u_stage_d (
      .clk(clk),
      .rst_n(rst_n),
      .in_valid(d_valid),
      .in_ready(d_ready),
      .in_data({d_sum, d_data[15:0]}),
      .out_valid(out_valid),
      .out_ready(out_ready),
      .out_data(out_data)
  );
  assign acc_out = out_data[47:16];
  assign tag_out = out_data[15:0];
  wire unused_ok = &{1'b0, c_abs[SUMW-1]};
endmodule
