// Memory-bandwidth probes for `sluice bench kernels`: the read limit any memory-bound
// kernel (gemv above all) is measured against. Launcher: src/ops/bandwidth.ts.
// Default: a read-only streaming reduction (every vec4 read once, one partial sum per
// invocation written, so the compiler cannot drop the reads), grid-strided: neighbouring
// invocations read neighbouring vec4s, what coalesces on a real GPU. SEGMENTED: each
// invocation sums its own contiguous segment instead, what a CPU "GPU" (lavapipe) reads
// fastest (1.5–2× the strided form there). The read limit is the faster of the two.
// COPY: dst = src, for reference.

struct Params {
  count: u32,   // vec4<f32> elements in src (and dst)
  threads: u32, // invocations in the dispatch: the grid stride
}

override WORKGROUP_SIZE: u32;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4f>;        // (count,) vec4
#ifdef COPY
@group(0) @binding(2) var<storage, read_write> dst: array<vec4f>;  // (count,) vec4
#else
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;   // (threads,) partial sums
#endif

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  // Grid-stride: neighbouring invocations read neighbouring vec4s on every pass, which is
  // what coalesces on a real GPU (and what lavapipe's SIMD lanes like too).
#ifdef COPY
  for (var i = gid.x; i < params.count; i += params.threads) { dst[i] = src[i]; }
#else
  var acc = vec4f(0.0);
#ifdef SEGMENTED
  let per = (params.count + params.threads - 1u) / params.threads;
  let end = min(params.count, (gid.x + 1u) * per);
  for (var i = gid.x * per; i < end; i++) { acc += src[i]; }
#else
  for (var i = gid.x; i < params.count; i += params.threads) { acc += src[i]; }
#endif
  sums[gid.x] = acc.x + acc.y + acc.z + acc.w;
#endif
}
