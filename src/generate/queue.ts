// One generation at a time per model: requests wait in FIFO order, a bounded number of
// them; a waiting request whose signal aborts leaves the queue; beyond the bound the
// request is refused at once (BUSY, which a server answers with 429).
//
// hold() is how a streaming request takes its turn: the turn lasts as long as its
// generator and is released however that ends — finished, thrown, or abandoned early by a
// consumer that breaks or throws (for await … calls return(), which yield* passes on).

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

  /**
   * Waits for a turn, then runs `body` in it, step by step: every next(), return() and
   * throw() of the returned generator reaches `body`'s (yield*), and the turn is released
   * when `body` ends, throws, or is stopped early by its consumer.
   */
  async *hold<T, R>(signal: AbortSignal | undefined, body: () => AsyncGenerator<T, R>): AsyncGenerator<T, R> {
    const release = await this.acquire(signal);
    try {
      return yield* body();
    } finally {
      release();
    }
  }
}

function aborted(signal: AbortSignal): SluiceError {
  return new SluiceError('ABORTED', 'the request was cancelled while waiting for the model', { cause: signal.reason });
}
