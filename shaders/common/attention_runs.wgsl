// The run loop of the attention kernels (attention.wgsl RUNS, attention_tiled.wgsl): runs of
// consecutive tokens of the block in one cache slot (a block straddling sequences). Each reads
// its own slot's keys, from the window start of its smallest position lo to its largest hi,
// and only its own rows see them; a row of another run gets probability 0 there, so its
// online softmax state carries through unchanged. It opens the loop over runs (run_first,
// run_last, slot, lo, hi): the includer writes the body and closes it.
  var run_last = first_token;
  for (var run_first = first_token; run_first <= last_token; run_first = run_last + 1u) {
    let slot = step.row[run_first].slot;
    var lo = step.row[run_first].position;
    var hi = lo;
    run_last = run_first;
    while (run_last < last_token && step.row[run_last + 1u].slot == slot) {
      run_last++;
      let p = step.row[run_last].position;
      lo = min(lo, p);
      hi = max(hi, p);
    }
