// Workgroup counts for 1-D work that may exceed a dimension's limit (65535 workgroups
// in WebGPU's defaults and on most GPUs): spill into a second dimension. Shaders then
// index with `gid.x + gid.y * groups.x * WORKGROUP_SIZE` and bounds-check.

export function workgroups1d(threads: number, workgroupSize: number, maxPerDimension: number): [number, number] {
  const groups = Math.ceil(threads / workgroupSize);
  if (groups <= maxPerDimension) return [Math.max(groups, 1), 1];
  const y = Math.ceil(groups / maxPerDimension);
  return [Math.ceil(groups / y), y];
}
