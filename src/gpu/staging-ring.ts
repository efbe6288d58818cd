// A small ring of mappable staging buffers: the host writes a piece into a mapped slot
// while the GPU copies earlier slots out, so reading, copying and converting overlap and
// host memory stays at slots × slotBytes whatever the model size.
//
// Why not queue.writeBuffer: measured on Dawn + lavapipe, 1 GiB in 8 MiB writes took
// 460–560 ms against 80–100 ms through this ring (into already touched buffers), and
// Dawn's internal staging grew peak RSS by 1 GiB, since nothing bounds it until the
// queue drains.

import { quietWait } from './quiet-wait.js';

export interface StagingSlot {
  readonly index: number;
  readonly buffer: GPUBuffer; // (slotBytes,) bytes, MAP_WRITE | COPY_SRC
}

export class StagingRing {
  private readonly slots: StagingSlot[] = [];
  /** Per slot: settles when the slot is mapped again (its last piece's GPU work is done). */
  private readonly ready: Promise<void>[] = [];
  private next = 0;

  constructor(
    private readonly device: GPUDevice,
    readonly slotCount: number,
    readonly slotBytes: number,
    label: string,
  ) {
    for (let index = 0; index < slotCount; index++) {
      const buffer = device.createBuffer({
        label: `${label}.staging${index}`,
        size: slotBytes,
        usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
      });
      this.slots.push({ index, buffer });
      this.ready.push(Promise.resolve());
    }
  }

  /** The next slot in turn, once it is mapped and free (rethrows its last piece's error). */
  async acquire(): Promise<StagingSlot> {
    const index = this.next;
    this.next = (this.next + 1) % this.slotCount;
    await this.ready[index];
    return this.slots[index];
  }

  /**
   * Runs `fill` (which writes the mapped slot, unmaps it and submits the copy out) and
   * then maps the slot again; the slot is free when both are done. Does not wait.
   */
  use(slot: StagingSlot, fill: (mapped: ArrayBuffer) => Promise<void>): void {
    const done = (async () => {
      await fill(slot.buffer.getMappedRange());
      await quietWait(this.device, () => slot.buffer.mapAsync(GPUMapMode.WRITE));
    })();
    // Marked handled now: a failure is rethrown by the next acquire() or drain(), and
    // must not count as an unhandled rejection (fatal in Node) while nobody awaits it yet.
    done.catch(() => {});
    this.ready[slot.index] = done;
  }

  /** Waits for every slot's work; the first failure is rethrown after all have settled. */
  async drain(): Promise<void> {
    const results = await Promise.allSettled(this.ready);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Settles every slot, ignoring failures (used when already failing), then frees the buffers. Idempotent. */
  async destroy(): Promise<void> {
    await Promise.allSettled(this.ready);
    for (const { buffer } of this.slots) buffer.destroy();
  }
}
