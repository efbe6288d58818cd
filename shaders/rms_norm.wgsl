// RMSNorm over the rows of an activation, as HF's LlamaRMSNorm computes it:
//   h = x.float(); h = h * rsqrt(mean(h²) + eps); y = weight * h.to(x.dtype)
// One workgroup per row: each invocation sums the squares of a strided slice of the row
// in f32, a workgroup tree reduces the partial sums, then each invocation scales its
// slice. Launcher: src/ops/rms-norm.ts. Variants: F16 (f16 storage, f32 reduction; the
// normalised value is rounded to f16 before the weight multiplies it, as HF does);
// ONE_PLUS_WEIGHT (Gemma's RMSNorm: y = (h · (1 + weight)) in f32, then rounded once —
//   transformers' GemmaRMSNorm: `output = self._norm(x.float())`,
//   `output = output * (1.0 + self.weight.float())`, `return output.type_as(x)`).
#include "common/dtype.wgsl"
#include "common/round_t.wgsl"

struct Params {
  rows: u32,   // T: rows to normalise
  hidden: u32, // elements per row
  eps: f32,    // rms_norm_eps
}

// A power of two (the tree reduction halves it): the launcher's RMS_NORM_WORKGROUP.
override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<T>;             // (rows, hidden)
@group(0) @binding(2) var<storage, read> weight: array<T>;        // (hidden,)
@group(0) @binding(3) var<storage, read_write> out: array<T>;     // (rows, hidden)

var<workgroup> partial: array<f32, WORKGROUP_SIZE>; // (WORKGROUP_SIZE,) sums of squares

#include "common/rms_norm_main.wgsl"

  var sum = 0.0;
  for (var i = lid; i < params.hidden; i += WORKGROUP_SIZE) {
    let v = f32(x[base + i]);
    sum += v * v;
  }
#include "common/rms_sum_tree.wgsl"
  // workgroupUniformLoad: every invocation reads the total, and the compiler knows it is uniform.
  let total = workgroupUniformLoad(&partial[0]);
  let scale = 1.0 / sqrt(total / f32(params.hidden) + params.eps);

  for (var i = lid; i < params.hidden; i += WORKGROUP_SIZE) {
#ifdef ONE_PLUS_WEIGHT
    // Gemma: h · (1 + weight) all in f32, one rounding at the end (h is not rounded).
    out[base + i] = T((f32(x[base + i]) * scale) * (1.0 + f32(weight[i])));
#else
    // HF: weight * h.to(input_dtype). An f16 × f16 product is exact in f32, so rounding it
    // once to f16 gives torch's f16 multiply bit for bit.
    let h = roundT(f32(x[base + i]) * scale);
    out[base + i] = T(f32(weight[i]) * h);
#endif
  }
}
