/**
 * @module
 * The CLIP tokenizer against openai's `SimpleTokenizer` ids in `shared/golden/clip_tokenizer`
 * (read in place), plus the Python edge cases the golden prompts do not reach.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { ClipTokenizer, PromptTooLongError, htmlUnescape } from '../../src/pipeline/tokenizer'

const GOLDEN = fileURLToPath(new URL('../../../shared/golden/', import.meta.url))
const read = (path: string) => readFileSync(GOLDEN + path, 'utf8')

interface GoldenCase {
  prompt: string
  cleaned_text: string
  words: string[]
  bpe_tokens: string[]
  ids: number[]
  n_ids: number
  truncated: boolean
  input_ids: number[]
  input_ids_unpadded: number[]
  attention_mask: number[]
  input_ids_pad0: number[]
}

const golden = JSON.parse(read('clip_tokenizer/golden.json')) as {
  max_length: number
  special_ids: Record<string, number>
  cases: GoldenCase[]
}
const vocabJson = read('clip_tokenizer/vocab.json')
const mergesTxt = read('clip_tokenizer/merges.txt')
const sdFolder = 'pipeline/tiny-sd-legacy/tokenizer/'

// SD 1.x: the Hugging Face folder as a model ships it.
const sd1 = ClipTokenizer.fromFiles({
  vocabJson,
  mergesTxt,
  tokenizerConfigJson: read(sdFolder + 'tokenizer_config.json'),
  specialTokensMapJson: read(sdFolder + 'special_tokens_map.json'),
})
// SD 2.x: same vocabulary, pad token `!` (an AddedToken object, as stabilityai ships it).
const sd2 = ClipTokenizer.fromFiles({
  vocabJson,
  mergesTxt,
  tokenizerConfigJson: JSON.stringify({ model_max_length: 77, pad_token: '<|endoftext|>' }),
  specialTokensMapJson: JSON.stringify({ pad_token: { content: '!', lstrip: false } }),
})

describe('ClipTokenizer against openai SimpleTokenizer (golden.json)', () => {
  it('holds the 79 prompts the README describes', () => {
    expect(golden.cases).toHaveLength(79)
    expect(golden.max_length).toBe(77)
  })

  it.each(golden.cases.map((c, i) => [i, JSON.stringify(c.prompt).slice(0, 60), c] as const))(
    'case %i %s',
    (_i, _name, c) => {
      const cleaned = sd1.cleanText(c.prompt)
      expect(cleaned).toBe(c.cleaned_text)
      expect(sd1.preTokenize(cleaned)).toEqual(c.words)
      expect(sd1.tokenize(c.prompt)).toEqual(c.bpe_tokens)
      expect(sd1.encode(c.prompt)).toEqual(c.ids)

      const sd1Enc = sd1.encodeForModel(c.prompt)
      expect(sd1Enc.inputIds).toEqual(c.input_ids)
      expect(sd1Enc.length).toBe(c.input_ids_unpadded.length)
      expect(sd1Enc.length).toBe(c.attention_mask.reduce((a, b) => a + b, 0))
      expect(sd1Enc.truncated).toBe(c.truncated)
      expect(sd1Enc.nTokens).toBe(c.n_ids)
      expect(sd2.encodeForModel(c.prompt).inputIds).toEqual(c.input_ids_pad0)
    },
  )
})

describe('ClipTokenizer construction', () => {
  it('reads model_max_length, specials and the pad id from the HF files', () => {
    expect(sd1.modelMaxLength).toBe(77)
    expect(sd1.windowTokens).toBe(75)
    expect(sd1.bosTokenId).toBe(golden.special_ids['<|startoftext|>'])
    expect(sd1.eosTokenId).toBe(golden.special_ids['<|endoftext|>'])
    expect(sd1.padTokenId).toBe(49407)
    expect(sd2.padTokenId).toBe(0)
  })

  it('defaults to CLIP values when only vocab and merges are given', () => {
    const bare = ClipTokenizer.fromFiles({ vocabJson, mergesTxt })
    expect(bare.modelMaxLength).toBe(77)
    expect(bare.padTokenId).toBe(49407)
    expect(bare.encodeForModel('a photo of a cat').inputIds.slice(0, 8)).toEqual([
      49406, 320, 1125, 539, 320, 2368, 49407, 49407,
    ])
  })

  it('the constructor takes parsed data and merge lines', () => {
    const lines = mergesTxt.split('\n')
    const tok = new ClipTokenizer({
      vocab: JSON.parse(vocabJson) as Record<string, number>,
      merges: lines,
      modelMaxLength: 10,
      padTokenId: 0,
    })
    expect(tok.windowTokens).toBe(8)
    const enc = tok.encodeForModel('a photo of a cat')
    expect(enc.inputIds).toEqual([49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0])
    expect(enc.length).toBe(7)
  })

  it('rejects unusable config', () => {
    expect(() =>
      ClipTokenizer.fromFiles({
        vocabJson,
        mergesTxt,
        tokenizerConfigJson: JSON.stringify({ model_max_length: 1e30 }),
      }),
    ).toThrow(RangeError)
    expect(() =>
      ClipTokenizer.fromFiles({
        vocabJson,
        mergesTxt,
        specialTokensMapJson: JSON.stringify({ pad_token: '<|nope|>' }),
      }),
    ).toThrow(/not in vocab/)
    expect(() =>
      ClipTokenizer.fromFiles({
        vocabJson,
        mergesTxt,
        specialTokensMapJson: JSON.stringify({ pad_token: 7 }),
      }),
    ).toThrow(TypeError)
  })
})

describe('decode', () => {
  it('gives back the words of every golden prompt that fits the window', () => {
    const fits = golden.cases.filter(
      (c) => !c.truncated && !c.ids.includes(49406) && !c.ids.includes(49407),
    )
    expect(fits.length).toBeGreaterThan(60)
    for (const c of fits) expect(sd1.decode(c.input_ids)).toBe(c.words.join(' '))
  })

  it('stops where truncation cut, for both pad tokens', () => {
    const long = 'a red circle and a '.repeat(20) + 'secret tail'
    const enc = sd1.encodeForModel(long)
    expect(enc.truncated).toBe(true)
    const seen = sd1.decode(enc.inputIds)
    expect(seen).not.toContain('secret')
    expect(sd1.encode(seen)).toEqual(enc.inputIds.slice(1, 76))
    expect(sd2.decode(sd2.encodeForModel(long).inputIds)).toBe(seen)
  })
})

describe('encodeForModel truncation', () => {
  it('cuts to 75 prompt tokens by default and throws when asked not to', () => {
    const long = 'cat '.repeat(80)
    const enc = sd1.encodeForModel(long)
    expect(enc).toMatchObject({ truncated: true, nTokens: 80, length: 77 })
    expect(enc.inputIds).toHaveLength(77)
    expect(enc.inputIds[76]).toBe(49407)
    expect(() => sd1.encodeForModel(long, { truncate: false })).toThrow(PromptTooLongError)
    expect(sd1.encodeForModel('cat '.repeat(75), { truncate: false }).truncated).toBe(false)
  })
})

// Expected values below come from CPython 3.11 `html.unescape` and openai's tokenizer code.
describe('Python semantics beyond the golden prompts', () => {
  it('html.unescape: legacy names without `;`, longest prefix, numeric edge cases', () => {
    expect(
      htmlUnescape(
        '&ampx &notit; &#0; &#128;&#150; &#xD800; &#1;|&#11;|&#65 &AMP &Copy; &unknown; &lang; &#99999999999;',
      ),
    ).toBe('&x \u00acit; \ufffd \u20ac\u2013 \ufffd ||A & &Copy; &unknown; \u27e8 \ufffd')
    expect(htmlUnescape('&amp;amp;lt; &#38;#39;')).toBe('&amp;lt; &#39;')
  })

  it('strip() drops U+001C..U+001F at the ends, the \\s collapse keeps them inside', () => {
    expect(sd1.cleanText('\x1c A\x1fb \x1c')).toBe('a\x1fb')
    expect(sd1.preTokenize('a\x1fb')).toEqual(['a', '\x1f', 'b'])
    expect(sd1.encode('\x1c A\x1fb \x1c')).toEqual([320, 475, 321])
  })

  it('U+0085 is whitespace, U+FEFF and U+200B are not', () => {
    const text = 'a\x1cb\x85c\ufeffd\u200be'
    expect(sd1.cleanText(text)).toBe('a\x1cb c\ufeffd\u200be')
    expect(sd1.encode(text)).toEqual([320, 472, 321, 322, 171, 119, 379, 323, 9844, 324])
  })

  it('U+0345 splits words like a space (Python regex IGNORECASE)', () => {
    expect(sd1.preTokenize("'d\u0345\u03b1\u03c2 x\u0345y")).toEqual(["'d", 'ας', 'x', 'y'])
    expect(sd1.encode("'D\u0345\u0391\u03a3 x\u0345y")).toEqual([
      1896, 138, 109, 139, 480, 343, 344,
    ])
  })

  it('IGNORECASE contractions fold long s, final sigma and dotted I lower like Python', () => {
    expect(sd1.preTokenize("it'\u017f a's")).toEqual(['it', "'ſ", 'a', "'s"])
    expect(sd1.encode("it'\u017f a'S")).toEqual([585, 6, 129, 379, 320, 568])
    expect(sd1.cleanText('\u039f\u0394\u039f\u03a3 \u0130stanbul')).toBe(
      '\u03bf\u03b4\u03bf\u03c2 i\u0307stanbul',
    )
    expect(sd1.encode('\u039f\u0394\u039f\u03a3 \u0130stanbul')).toEqual([
      138, 123, 138, 112, 138, 123, 139, 480, 328, 16384, 11231,
    ])
  })

  it('literal special tokens map to their ids', () => {
    expect(sd1.encode('<|endoftext|>x<|startoftext|>')).toEqual([49407, 343, 49406])
  })

  it('bpe caches and appends </w> to the last symbol', () => {
    expect(sd1.bpe('cat')).toBe('cat</w>')
    expect(sd1.bpe('cat')).toBe('cat</w>')
    expect(sd1.bpe('')).toBe('')
  })
})
