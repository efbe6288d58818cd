// The load progress bar: drawn on a terminal (bytes, rate, the tensor in flight), silent
// on a pipe or when disabled, and finished with a newline.

import { describe, expect, it, vi } from 'vitest';
import type { CliIo } from '../../src/cli/io.js';
import { loadProgressBar } from '../../src/cli/progress.js';
import type { LoadProgress } from '../../src/gpu/load-tensors.js';

function io(isTty: boolean): CliIo & { err: string } {
  const out = { err: '', isTty, stdout: () => {}, stderr: (t: string) => void (out.err += t) };
  return out;
}

const at = (phase: LoadProgress['phase'], bytesDone: number, tensor: string | null, tensorsDone = 0): LoadProgress => ({
  phase,
  bytesDone,
  bytesTotal: 4_000_000,
  tensor,
  tensorsDone,
  tensorsTotal: 2,
});

describe('loadProgressBar', () => {
  it('on a terminal: bytes, total, rate and the current tensor; a newline when done', () => {
    vi.useFakeTimers();
    try {
      const term = io(true);
      const onProgress = loadProgressBar(term, true);
      onProgress(at('compile', 0, null));
      vi.advanceTimersByTime(200);
      onProgress(at('upload', 1_000_000, 'model.layers.0.self_attn.q_proj.weight'));
      expect(term.err).toMatch(/\rloading \[#{8}-{22}\] 1\.00 MB \/ 4\.00 MB [\d.]+ \w?B\/s model\.layers\.0\.self_attn\.q_proj\.weight/);
      onProgress(at('done', 4_000_000, null, 2));
      expect(term.err).toMatch(/\[#{30}\] 4\.00 MB \/ 4\.00 MB .* 2 tensors\x1b\[K\n$/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('long tensor names are cut from the left, keeping the end that tells them apart', () => {
    vi.useFakeTimers();
    try {
      const term = io(true);
      const onProgress = loadProgressBar(term, true);
      vi.advanceTimersByTime(200);
      onProgress(at('upload', 10, `model.${'x'.repeat(80)}.layers.31.mlp.down_proj.weight`));
      expect(term.err).toMatch(/…[x.]*layers\.31\.mlp\.down_proj\.weight\x1b\[K$/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('prints nothing on a pipe or when disabled (--json)', () => {
    for (const [tty, enabled] of [[false, true], [true, false]]) {
      const sink = io(tty);
      const onProgress = loadProgressBar(sink, enabled);
      onProgress(at('compile', 0, null));
      onProgress(at('upload', 10, 'a'));
      onProgress(at('done', 4_000_000, null, 2));
      expect(sink.err).toBe('');
    }
  });
});
