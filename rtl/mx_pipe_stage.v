// One optional register slice of a valid/ready pipeline.
// REG = 1: a full-throughput slice (accepts a new beat every cycle the downstream side is ready or
// the slice is empty; the ready path is combinational from out_ready, which keeps the unit at one
// block per cycle without a skid buffer). REG = 0: wires, so a pipeline depth parameter can drop
// slices without changing the datapath.
module mx_pipe_stage #(
    parameter integer W = 1,
    parameter integer REG = 1
) (
    input clk,
    input rst_n,
    input in_valid,
    output in_ready,
    input [W-1:0] in_data,
    output out_valid,
    input out_ready,
    output [W-1:0] out_data
);
  generate
    if (REG != 0) begin : g_reg
      reg valid_q;
      reg [W-1:0] data_q;
      assign in_ready = !valid_q || out_ready;
      always @(posedge clk or negedge rst_n) begin
        if (!rst_n) valid_q <= 1'b0;
        else if (in_ready) valid_q <= in_valid;
      end
      // Data needs no reset: it is only looked at while valid_q is set.
      always @(posedge clk) begin
        if (in_ready && in_valid) data_q <= in_data;
      end
      assign out_valid = valid_q;
      assign out_data = data_q;
    end else begin : g_wire
      assign in_ready = out_ready;
      assign out_valid = in_valid;
      assign out_data = in_data;
      wire unused_clk = &{1'b0, clk, rst_n};
    end
  endgenerate
endmodule
