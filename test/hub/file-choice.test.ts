// Which files a pull fetches: safetensors over PyTorch, shards through the index, config
// and tokenizer files always, other formats and subfolders never; --include/--exclude.

import { describe, expect, it } from 'vitest';
import { chooseFiles, globToRegExp, type RepoFile, shardFiles } from '../../src/hub/file-choice.js';
import { isSluiceError } from '../../src/errors.js';

const listing = (...paths: string[]): RepoFile[] => paths.map((path) => ({ path, size: 1, oid: '0'.repeat(40) }));
const chosen = (files: RepoFile[], filter = {}) => chooseFiles('org/m', files, filter).files.map((f) => f.path).sort();

const CONFIG = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja'];
const NOISE = ['README.md', '.gitattributes', 'model.gguf', 'model.onnx', 'onnx/model.onnx', 'flax_model.msgpack', 'tf_model.h5', 'original/consolidated.00.pth', 'original/params.json'];

describe('chooseFiles', () => {
  it('both formats: only the safetensors, plus every config, tokenizer and template file', () => {
    const files = listing(...CONFIG, ...NOISE, 'model.safetensors', 'pytorch_model.bin', 'training_args.bin');
    expect(chosen(files)).toEqual([...CONFIG, 'model.safetensors'].sort());
    expect(chooseFiles('org/m', files).format).toBe('safetensors');
  });

  it('the safetensors index wins over loose *.safetensors (a consolidated copy is skipped)', () => {
    const c = chooseFiles('org/m', listing('config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'consolidated.safetensors'));
    expect(c.index).toBe('model.safetensors.index.json');
    expect(c.files.map((f) => f.path).sort()).toEqual(['config.json', 'model.safetensors.index.json']);
  });

  it('several *.safetensors without an index or model.safetensors: all of them', () => {
    expect(chosen(listing('config.json', 'a.safetensors', 'b.safetensors', 'pytorch_model.bin'))).toEqual(['a.safetensors', 'b.safetensors', 'config.json']);
  });

  it('no safetensors: pytorch_model.bin, or the index, or the *.pth; never training state', () => {
    expect(chosen(listing('config.json', 'pytorch_model.bin', 'training_args.bin', 'tf_model.h5'))).toEqual(['config.json', 'pytorch_model.bin']);
    const sharded = chooseFiles('org/m', listing('config.json', 'pytorch_model.bin.index.json', 'pytorch_model-00001-of-00002.bin', 'optimizer.pt'));
    expect([sharded.format, sharded.index, sharded.files.length]).toEqual(['pytorch', 'pytorch_model.bin.index.json', 2]);
    expect(chosen(listing('config.json', 'consolidated.00.pth', 'rng_state_0.pth'))).toEqual(['config.json', 'consolidated.00.pth']);
  });

  it('--exclude applies first (excluding safetensors falls back to .bin); --include adds anything', () => {
    const files = listing('config.json', 'model.safetensors', 'pytorch_model.bin', 'original/params.json', 'original/consolidated.00.pth');
    expect(chosen(files, { exclude: ['*.safetensors'] })).toEqual(['config.json', 'pytorch_model.bin']);
    expect(chosen(files, { include: ['original/*'] })).toEqual(['config.json', 'model.safetensors', 'original/consolidated.00.pth', 'original/params.json']);
    expect(chosen(files, { exclude: ['config.json'] })).toEqual(['model.safetensors']);
  });

  it('a repo with no weights sluice reads: one error naming what it has; --include still fetches by hand', () => {
    const files = listing('README.md', 'config.json', 'model-q4.gguf');
    let err: unknown;
    try {
      chooseFiles('org/m', files);
    } catch (e) {
      err = e;
    }
    expect(isSluiceError(err, 'UNSUPPORTED_FORMAT')).toBe(true);
    expect((err as Error).message).toBe('org/m: no .safetensors, .bin or .pth weights at the top of the repo (it has model-q4.gguf); --include GLOB fetches files by hand');
    expect(chosen(files, { include: ['*.gguf'] })).toEqual(['config.json', 'model-q4.gguf']);
  });
});

describe('shardFiles', () => {
  it('maps shard names to listed files, and names a shard the repo lacks', () => {
    const files = listing('model-00001-of-00002.safetensors');
    expect(shardFiles('org/m', 'model.safetensors.index.json', ['model-00001-of-00002.safetensors'], files)).toHaveLength(1);
    expect(() => shardFiles('org/m', 'model.safetensors.index.json', ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'], files)).toThrow(
      'org/m: shard model-00002-of-00002.safetensors is named in model.safetensors.index.json but is not in the repo',
    );
  });
});

describe('globToRegExp (fnmatch rules)', () => {
  it.each([
    ['*.json', 'config.json', true],
    ['*.json', 'sub/x.json', true], // * crosses / as in huggingface-cli
    ['model-?????-of-*.safetensors', 'model-00001-of-00002.safetensors', true],
    ['[ab].bin', 'a.bin', true],
    ['[!ab].bin', 'a.bin', false],
    ['a+b(c).json', 'a+b(c).json', true],
    ['*.json', 'config.jsonx', false],
  ])('%s ~ %s: %s', (glob, path, match) => {
    expect(globToRegExp(glob).test(path)).toBe(match);
  });
});
