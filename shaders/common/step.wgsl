// The pass's step (src/gpu/step.ts, which writes it): this call's row count T and each row's
// (cache slot, position).
struct StepRow { slot: u32, position: u32 }
struct Step { rows: u32, row: array<StepRow> }
