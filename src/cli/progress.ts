import { formatBytes } from './format.js';
import type { CliIo } from './io.js';

/**
 * A one-line byte progress bar on stderr, redrawn at most every 100 ms; silent when
 * stdout is not a terminal or the caller asked for machine output.
 */
export class Progress {
  private done_ = 0;
  private lastDraw = 0;
  private readonly started = Date.now();

  constructor(
    private readonly io: CliIo,
    private readonly label: string,
    private readonly total: number,
    private readonly enabled: boolean,
  ) {
    this.enabled = enabled && io.isTty;
  }

  add(bytes: number): void {
    this.done_ += bytes;
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
    this.io.stderr(
      `\r${this.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${formatBytes(this.done_)} / ${formatBytes(this.total)} ${rate}   `,
    );
  }
}
