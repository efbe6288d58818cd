// cos and sin of the reduced angle r, in f32 (rope.wgsl, qkv_rope_store.wgsl); SCALED:
// both times attention_factor (transformers' `cos = emb.cos() * self.attention_scaling`).
#ifdef SCALED
  let c = cos(r) * params.attention_factor;
  let s = sin(r) * params.attention_factor;
#else
  let c = cos(r);
  let s = sin(r);
#endif
