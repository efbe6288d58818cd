// Lines that Dawn and Mesa print from native code straight to file descriptor 2, where no
// in-process hook can reach them. bin/sluice.js runs GPU commands in a child process and
// passes its stderr through createNoiseFilter, which drops these and forwards the rest.
// No Node imports: the launcher loads this from dist/ before anything else.

/** Whole lines (without their line ending) that are noise. */
export const DAWN_NOISE: readonly RegExp[] = [
  // Dawn, on every device with Vulkan: a limit it lowers for itself, not one we asked for.
  /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/,
  // Dawn, when it probes a Vulkan loader that is not installed (it then tries other
  // backends; if none works, sluice reports NO_ADAPTER with the fix).
  /^Warning: Couldn't load Vulkan: /,
  // Mesa, on headless machines: it looks for a display it does not need for compute.
  /XDG_RUNTIME_DIR/,
];

/**
 * What Dawn appends to some warnings: a source location, e.g.
 * `    at operator() (/…/dawn/native/vulkan/BackendVk.cpp:368)`, then an empty line.
 * Dropped only right after a dropped line, so warnings we do show keep theirs.
 */
export const DAWN_TRAILER = /^(?:\s+at .*\(.*\.(?:cpp|cc|h|mm):\d+\)|\s*)$/;

// How noise lines begin. A partial line (no line ending yet) that may still become noise is
// held back; anything else is forwarded at once, so `\r` progress bars stay live.
const NOISE_STARTS = ['Warning: ', 'error: ', 'MESA'];

/** Whether one line (without its line ending) is known Dawn/Mesa noise. */
export function isDawnNoise(line: string): boolean {
  return DAWN_NOISE.some((pattern) => pattern.test(line));
}

export interface NoiseFilter {
  /** Feeds a chunk of stderr text; arbitrary boundaries, lines may span chunks. */
  write(chunk: string): void;
  /** Flushes a last unterminated line. */
  end(): void;
}

/** A line filter over stderr text that passes everything but Dawn/Mesa noise to `out`. */
export function createNoiseFilter(out: (text: string) => void): NoiseFilter {
  let held = ''; // the start of a line that may turn out to be noise
  let midLine = false; // the start of the current line was already forwarded
  let afterDropped = false; // the previous line was dropped (its trailer goes too)

  const completeLine = (piece: string, ending: string): void => {
    if (midLine) {
      midLine = false;
      out(piece + ending);
      return;
    }
    if (isDawnNoise(piece) || (afterDropped && DAWN_TRAILER.test(piece))) {
      afterDropped = true;
      return;
    }
    afterDropped = false;
    out(piece + ending);
  };

  const mayBecomeNoise = (partial: string): boolean =>
    NOISE_STARTS.some((start) => start.startsWith(partial) || partial.startsWith(start)) ||
    (afterDropped && /^\s*(?:a|at\b.*)?$/.test(partial)); // the start of a trailer

  return {
    write(chunk) {
      let text = held + chunk;
      held = '';
      for (;;) {
        const match = /\r\n|\n|\r/.exec(text);
        if (!match) break;
        completeLine(text.slice(0, match.index), match[0]);
        text = text.slice(match.index + match[0].length);
      }
      if (!text) return;
      if (midLine) out(text);
      else if (mayBecomeNoise(text)) held = text;
      else {
        midLine = true;
        out(text);
      }
    },
    end() {
      if (held && !isDawnNoise(held) && !(afterDropped && DAWN_TRAILER.test(held))) out(held);
      held = '';
    },
  };
}
