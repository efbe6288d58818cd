// The build-time table of WGSL sources `{ add: "<text of shaders/add.wgsl>", ... }` that
// scripts/build-browser.mjs provides to src/browser.ts.
declare module 'sluice:shaders' {
  const table: Record<string, string>;
  export default table;
}
