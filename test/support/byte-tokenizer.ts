// A chat-ready copy of a tiny reference model (test/fixtures/models/<name>, vocab 256):
// a byte-level tokenizer whose 256 ids are the bytes, except ids 1 and 2, which are the
// ChatML specials <|im_start|> and <|im_end|> (eos), plus a ChatML chat template. The
// model is random, so replies are noise; what the tests check is the machinery.

import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** GPT-2's byte → printable-character map that ByteLevel BPE vocabularies use. */
function bytesToUnicode(): string[] {
  const printable = new Set<number>();
  for (const [lo, hi] of [[33, 126], [161, 172], [174, 255]]) for (let b = lo; b <= hi; b++) printable.add(b);
  const out: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(printable.has(b) ? b : 256 + extra++));
  return out;
}

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export function writeChatModel(from: string, dir: string): void {
  for (const file of ['config.json', 'model.safetensors']) copyFileSync(join(from, file), join(dir, file));
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, id) => {
    if (id !== 1 && id !== 2) vocab[ch] = id;
  });
  const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(1, '<|im_start|>'), special(2, '<|im_end|>')],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [] },
  }));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: null,
    chat_template: CHATML_TEMPLATE,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: { 1: special(1, '<|im_start|>'), 2: special(2, '<|im_end|>') },
  }));
  writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ do_sample: false, eos_token_id: 2, max_new_tokens: 12 }));
}
