  // ROPE_STORE (common/rope_store.wgsl reads these names): qkv_rope_store.wgsl's shape, after
  // the kernel's own fields; W's rows are (n_heads + 2·n_kv_heads)·head_dim.
  // The launcher side: src/ops/rope-store-epilogue.ts (ROPE_STORE_FIELDS, in this order).
  n_heads: u32,
  n_kv_heads: u32,
  head_dim: u32,
  rot_half: u32,   // rotary_dim / 2: pairs rotated per head; 0: NoPE
  attention_factor: f32, // SCALED: cos and sin are multiplied by it
  max_seq: u32,    // positions per head in the cache
  slots: u32,      // sequences the cache holds
