import type { ModelProgress } from '../model/progress.js';
import { formatBytes } from './format.js';
import type { CliIo } from './io.js';

/**
 * A one-line byte progress bar on stderr (bytes, rate, and what is being worked on),
 * redrawn at most every 100 ms; silent when stdout is not a terminal or the caller asked
 * for machine output.
 */
export class Progress {
  private done_ = 0;
  private detail = '';
  private lastDraw = 0;
  private readonly started = Date.now();

  constructor(
    private readonly io: CliIo,
    private label: string,
    private total: number,
    private readonly enabled: boolean,
  ) {
    this.enabled = enabled && io.isTty;
  }

  add(bytes: number): void {
    this.set(this.done_ + bytes);
  }

  /** Sets the bytes done so far and, optionally, what is being worked on now. */
  set(bytesDone: number, detail = this.detail, label = this.label): void {
    this.done_ = bytesDone;
    this.detail = detail;
    this.label = label;
    const now = Date.now();
    if (this.enabled && now - this.lastDraw > 100) {
      this.lastDraw = now;
      this.draw();
    }
  }

  done(): void {
    if (this.enabled) {
      this.draw();
      this.io.stderr('\n');
    }
  }

  private draw(): void {
    const fraction = this.total ? this.done_ / this.total : 1;
    const width = 30;
    const filled = Math.round(fraction * width);
    const seconds = Math.max((Date.now() - this.started) / 1000, 1e-3);
    const rate = `${formatBytes(this.done_ / seconds)}/s`;
    const detail = this.detail.length > 40 ? `…${this.detail.slice(-39)}` : this.detail;
    this.io.stderr(
      `\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${formatBytes(this.done_)} / ${formatBytes(this.total)} ${rate} ${detail}\x1b[K`,
    );
  }
}

/**
 * An onProgress for loadTensors (and model loads) that draws a Progress bar: bytes, rate,
 * current tensor. A model's kernel compilation overlaps the upload and is not drawn.
 */
export function loadProgressBar(io: CliIo, enabled: boolean): (p: ModelProgress) => void {
  let bar: Progress | undefined;
  return (p) => {
    if (p.phase === 'kernels' || p.phase === 'download') return;
    bar ??= new Progress(io, 'loading', p.bytesTotal, enabled);
    if (p.phase === 'compile') bar.set(0, 'compiling shaders');
    else if (p.phase === 'upload') bar.set(p.bytesDone, p.tensor ?? '');
    else {
      bar.set(p.bytesDone, `${p.tensorsDone} tensors`);
      bar.done();
    }
  };
}
