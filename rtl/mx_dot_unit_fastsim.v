// Simulation-only wrapper of mx_dot_unit for the fast Verilated testbench (FastUnit); not synthesized.
//
// Every input is registered at the rising edge before it reaches the unit, so the unit's
// combinational logic depends on state only. Verilator re-evaluates logic that depends on top-level
// inputs on every eval() call, i.e. twice per clock period (falling and rising edge); logic behind
// registers runs once, after the rising edge. The unit itself is unchanged; the wrapper adds one
// cycle of latency. out_ready passes straight through (the unit's in_ready still depends on it).
module mx_dot_unit_fastsim #(
    parameter integer STAGES = 4,
    parameter [5:0] FORMATS = 6'b111111
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
  reg in_valid_q;
  reg [2:0] fmt_a_q, fmt_b_q;
  reg [7:0] scale_a_q, scale_b_q;
  reg [255:0] codes_a_q, codes_b_q;
  reg [31:0] acc_in_q;
  reg [15:0] tag_in_q;
  always @(posedge clk or negedge rst_n) begin
    if (!rst_n) in_valid_q <= 1'b0;
    else in_valid_q <= in_valid;
  end
  always @(posedge clk) begin
    fmt_a_q <= fmt_a;
    fmt_b_q <= fmt_b;
    scale_a_q <= scale_a;
    scale_b_q <= scale_b;
    codes_a_q <= codes_a;
    codes_b_q <= codes_b;
    acc_in_q <= acc_in;
    tag_in_q <= tag_in;
  end
  mx_dot_unit #(
      .STAGES (STAGES),
      .FORMATS(FORMATS)
  ) u_unit (
      .clk(clk),
      .rst_n(rst_n),
      .in_valid(in_valid_q),
      .in_ready(in_ready),
      .fmt_a(fmt_a_q),
      .fmt_b(fmt_b_q),
      .scale_a(scale_a_q),
      .scale_b(scale_b_q),
      .codes_a(codes_a_q),
      .codes_b(codes_b_q),
      .acc_in(acc_in_q),
      .tag_in(tag_in_q),
      .out_valid(out_valid),
      .out_ready(out_ready),
      .acc_out(acc_out),
      .tag_out(tag_out)
  );
endmodule
