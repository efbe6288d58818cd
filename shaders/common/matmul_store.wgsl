// The store of a matmul's register tile (matmul.wgsl, qmatmul.wgsl), inside main: thread
// columns c0 .. c0 + 3 of the chunk, rows m0 .. mEnd of y, acc[m − m0][j] + bias, rounded once
// to Y (RESIDUAL: rounded to T first, then added in T: bit for bit the unfused projection +
// add.wgsl). Columns past the chunk (c > last) are not written.
  for (var j = 0u; j < 4u; j++) {
    let c = c0 + j;
    if (c > last) { break; }
    let n = params.colOffset + c;
#ifdef BIAS
    let b = f32(bias[n]);
#else
    let b = 0.0;
#endif
#ifdef RESIDUAL
    // Rounded to T first, then added in T: bit for bit the unfused projection + add.wgsl.
    for (var m = m0; m < mEnd; m++) { y[m * params.N + n] = y[m * params.N + n] + Y(acc[m - m0][j] + b); }
#else
    for (var m = m0; m < mEnd; m++) { y[m * params.N + n] = Y(acc[m - m0][j] + b); }
#endif
  }
