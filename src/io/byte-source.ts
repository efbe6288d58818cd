// The one interface between where bytes live and the formats that parse them.
// Implementations: file-source.ts (Node), url-source.ts (HTTP Range), blob-source.ts
// (browser File/Blob), memory-source.ts (tests, in-memory data).

export interface ByteSource {
  /** What the errors call this source: a path, a URL or a File name. */
  readonly name: string;
  /** Total size in bytes (known once the source is open). */
  readonly size: number;
  /**
   * Exactly `length` bytes starting at `offset`. Requests past `size` are a bug of the
   * caller and throw; a source that returns fewer bytes than it promised throws
   * `SOURCE_CHANGED`.
   *
   * With `into` (at least `length` bytes), the bytes land there and the result is a view
   * of it: the loader reads straight into mapped GPU staging memory, with no buffer in
   * between. Sources that cannot read in place copy.
   */
  read(offset: number, length: number, into?: Uint8Array): Promise<Uint8Array>;
  /** Releases file handles or connections; reads after close throw. */
  close(): Promise<void>;
}

/** Opens the named sibling of a source (a shard next to its index), same kind of source. */
export type SourceOpener = (relativeName: string) => Promise<ByteSource>;
