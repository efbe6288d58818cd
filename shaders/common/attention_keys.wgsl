// An attention run's keys in this split (attention.wgsl, attention_tiled.wgsl): positions
// [key_begin, split_end), maybe none (split_end ≤ split_begin), from the window start of the
// run's smallest position lo (WINDOW) to its largest hi; cache_base is the run's slot and kv
// head in the cache.
    let split_end = min(split_begin + params.split_keys, hi + 1u); // ≤ split_begin: none
#ifdef WINDOW
    let key_begin = max(split_begin, window_first(lo));
#else
    let key_begin = split_begin;
#endif
    let cache_base = (slot * params.n_kv_heads + wg.y) * params.max_seq * hv;
