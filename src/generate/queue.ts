// One generation at a time per model: requests wait in FIFO order, a bounded number of
// them; a waiting request whose signal aborts leaves the queue; beyond the bound the
// request is refused at once (BUSY, which a server answers with 429).

import { SluiceError } from '../errors.js';

export class RequestQueue {
  private busy = false;
  private readonly waiting: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  /** `limit`: requests that may wait while one runs. */
  constructor(readonly limit: number) {}

  /** Requests running or waiting. */
  get size(): number {
    return this.waiting.length + (this.busy ? 1 : 0);
  }

  /** Resolves with a release function once this request's turn comes. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw aborted(signal);
    if (this.busy) {
      if (this.waiting.length >= this.limit) {
        throw new SluiceError('BUSY', `the model is busy: ${this.waiting.length} requests already waiting (limit ${this.limit})`);
      }
      await new Promise<void>((resolve, reject) => {
        const entry: (typeof this.waiting)[number] = { resolve, reject, signal };
        if (signal) {
          entry.onAbort = () => {
            const i = this.waiting.indexOf(entry);
            if (i >= 0) this.waiting.splice(i, 1);
            reject(aborted(signal));
          };
          signal.addEventListener('abort', entry.onAbort, { once: true });
        }
        this.waiting.push(entry);
      });
    }
    this.busy = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) {
        if (next.onAbort) next.signal?.removeEventListener('abort', next.onAbort);
        next.resolve(); // stays busy: the turn passes straight on
      } else this.busy = false;
    };
  }
}

function aborted(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'the request was cancelled while waiting for the model', { cause: signal.reason });
}
