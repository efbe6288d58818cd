import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Detokenizer } from '../../src/text/detokenizer.js';
import { eosTokenIds, loadEosTokenIds, StopMatcher } from '../../src/text/stop.js';
import type { Tokenizer } from '../../src/text/tokenizer.js';
import { root } from '../support/build.js';
import { fixtureDir, loadFixtureTokenizer, readerFor } from './fixtures.js';

/** Pushes each delta; returns what each push showed, and what the end showed. */
function run(stops: string[], deltas: string[]) {
  const m = new StopMatcher(stops);
  const shown = deltas.map((d) => m.push(d));
  return { shown: shown.map((r) => r.text), stop: shown.at(-1)?.stop ?? null, rest: m.flush(), stopped: m.stopped };
}

describe('StopMatcher', () => {
  it('matches a stop string split over three deltas, showing only the text before it', () => {
    expect(run(['<END>'], ['Hello <', 'EN', 'D> and more'])).toEqual({ shown: ['Hello ', '', ''], stop: '<END>', rest: '', stopped: true });
  });

  it('lets go of a held tail that turns out not to be a stop string', () => {
    expect(run(['###'], ['a #', '#', ' b'])).toEqual({ shown: ['a ', '', '## b'], stop: null, rest: '', stopped: false });
    // held at the very end: the flush gives it back
    expect(run(['###'], ['a #', '#'])).toEqual({ shown: ['a ', ''], stop: null, rest: '##', stopped: false });
  });

  it('holds a tail that overlaps itself correctly ("aab" after "aa" + "ab")', () => {
    expect(run(['aab'], ['xaa', 'ab'])).toEqual({ shown: ['x', 'a'], stop: 'aab', rest: '', stopped: true });
  });

  it('with several stop strings, stops at the earliest', () => {
    const stops = ['\nUser:', '###', '</answer>'];
    expect(run(stops, ['42 ### then\nUser: x'])).toEqual({ shown: ['42 '], stop: '###', rest: '', stopped: true });
    expect(run(stops, ['42</ans', 'wer>\nUser:'])).toEqual({ shown: ['42', ''], stop: '</answer>', rest: '', stopped: true });
    // "<" could start "</answer>", "\nU" could start "\nUser:": both held, then released
    expect(run(stops, ['a<', 'b\nU', 'nix'])).toEqual({ shown: ['a', '<b', '\nUnix'], stop: null, rest: '', stopped: false });
  });

  it('at one place prefers the longer stop string', () => {
    expect(run(['##', '###'], ['a ### b']).stop).toBe('###');
  });

  it('shows nothing after a match', () => {
    const m = new StopMatcher(['STOP']);
    expect(m.push('go STOP go')).toEqual({ text: 'go ', stop: 'STOP' });
    expect(m.push('more')).toEqual({ text: '', stop: 'STOP' });
    expect(m.flush()).toBe('');
  });

  it('passes text straight through without stop strings (empty ones are ignored)', () => {
    expect(run([], ['a', 'b'])).toEqual({ shown: ['a', 'b'], stop: null, rest: '', stopped: false });
    expect(run([''], ['a', 'b']).shown).toEqual(['a', 'b']);
  });

  it('works on the detokenizer\'s output, a stop string inside a token and one split inside an emoji', async () => {
    const tokenizer = await loadFixtureTokenizer('bytelevel');
    const generate = (text: string, stops: string[]) => {
      const d = new Detokenizer(tokenizer);
      const m = new StopMatcher(stops);
      let shown = '';
      for (const id of tokenizer.encode(text)) {
        const r = m.push(d.push(id));
        shown += r.text;
        if (r.stop) return { shown, stop: r.stop };
      }
      return { shown: shown + m.push(d.flush()).text + m.flush(), stop: null };
    };
    expect(generate('Hello world! The river.', ['world!'])).toEqual({ shown: 'Hello ', stop: 'world!' });
    expect(generate('the gate 😀🎉 opens', ['😀🎉'])).toEqual({ shown: 'the gate ', stop: '😀🎉' });
    expect(generate('the gate 😀🎉 opens', ['😀🚀'])).toEqual({ shown: 'the gate 😀🎉 opens', stop: null });
  });
});

describe('end-of-sequence ids', () => {
  let tokenizer: Tokenizer;
  beforeAll(async () => {
    tokenizer = await loadFixtureTokenizer('bytelevel'); // eos <|im_end|> = 558
  });
  const realConfig = (name: string) => readFile(join(root, 'test/fixtures/configs', `${name}.json`), 'utf8');

  it("merges the tokenizer's eos with config.json's and generation_config.json's, a number or a list", async () => {
    expect(eosTokenIds({ tokenizer })).toEqual([558]);
    // Llama 3.2 Instruct's config.json lists three ids
    expect(eosTokenIds({ tokenizer, modelConfig: await realConfig('llama-3.2-1b-instruct') })).toEqual([558, 128001, 128008, 128009]);
    expect(eosTokenIds({ modelConfig: await realConfig('qwen2-0.5b-instruct'), generationConfig: { eos_token_id: [151645, 151643] } })).toEqual([151643, 151645]);
    expect(eosTokenIds({ tokenizer, modelConfig: { eos_token_id: null }, generationConfig: {} })).toEqual([558]);
  });

  it('reads config.json and generation_config.json through readFile, either may be missing', async () => {
    const dir = fixtureDir('bytelevel');
    const read = readerFor(dir, { 'config.json': '{"eos_token_id": 556}', 'generation_config.json': '{"eos_token_id": [556, 558, 3]}' });
    expect(await loadEosTokenIds(read, tokenizer)).toEqual([3, 556, 558]);
    expect(await loadEosTokenIds(readerFor(dir), tokenizer)).toEqual([558]);
    expect(await loadEosTokenIds(readerFor(dir), null)).toEqual([]);
  });

  it('names the file with a malformed eos_token_id', async () => {
    const where = '/models/m';
    expect(() => eosTokenIds({ generationConfig: { eos_token_id: '2' }, where })).toThrow(
      expect.objectContaining({ code: 'INVALID_JSON', message: '/models/m/generation_config.json: eos_token_id must be a token id or a list of them, not "2"' }),
    );
    expect(() => eosTokenIds({ modelConfig: { eos_token_id: [1, -2] }, where })).toThrow('/models/m/config.json: eos_token_id must be a token id or a list of them, not [1,-2]');
    await expect(loadEosTokenIds(readerFor(fixtureDir('bytelevel'), { 'config.json': '{"eos_token_id": 2,' }), tokenizer)).rejects.toMatchObject({
      code: 'INVALID_JSON',
      message: expect.stringMatching(/\/bytelevel\/config\.json: not valid JSON/),
    });
  });
});
