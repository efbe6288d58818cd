// The sum of the workgroup's partial sums of squares in partial[0], by the tree rms_norm.wgsl
// and norm_add_norm.wgsl share (one copy: the tree's shape decides the sum's bits, and the
// fused norm must match rms_norm bit for bit). Every invocation stores its `sum` first;
// WORKGROUP_SIZE is a power of two.
  partial[lid] = sum;
  workgroupBarrier();
  for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride /= 2u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
