/**
 * @module
 * CLIP byte-level BPE tokenizer: a port of openai/CLIP `clip/simple_tokenizer.py`, the tokenizer
 * Stable Diffusion's text encoder was trained with. Ids must match it exactly, or the same prompt
 * gives a different image here than in diffusers.
 *
 * Written here, not imported: @huggingface/transformers is too big for an edge bundle, and the small
 * ports (clip-bpe-js) miss Python's html.unescape, whitespace and `regex` semantics.
 *
 * The steps, each as Python does them (see `shared/golden/README.md` section 3):
 * 1. `ftfy.fix_text` is NOT applied (the reference ids were made without it).
 * 2. `html.unescape` twice, 3. `str.strip()`, 4. `regex.sub(r'\s+', ' ')` and strip, 5. `lower()`.
 * 6. Split with the pre-tokenizer regex, 7. UTF-8 bytes to GPT-2 byte symbols, BPE, vocab ids.
 *
 * NOTE: two whitespace sets are in play. `str.strip()` uses `str.isspace()` (which includes
 * U+001C..U+001F), while the `regex` module's `\s` is Unicode White_Space (which does not). JS `\s`
 * is neither (it adds U+FEFF, drops U+0085), so both sets are spelled out below.
 *
 * NOTE: the HTML decoder knows the HTML 4 entity names (all that html5 also accepts without `;`,
 * plus Greek, arrows, math and typographic names) and every numeric form. A `;`-terminated html5
 * name outside that list (e.g. `&bigstar;`) is left as written, where Python would decode it.
 *
 * NOTE: `\p{L}`, `\p{N}` and `toLowerCase()` use the engine's Unicode tables; the reference used
 * Unicode 15.0 (regex) and 14.0 (lower), so only code points assigned later can split differently.
 *
 * @example
 * const tokenizer = ClipTokenizer.fromFiles({ vocabJson, mergesTxt, tokenizerConfigJson })
 * tokenizer.encodeForModel('a photo of a cat').inputIds // [49406, 320, 1125, 539, 320, 2368, 49407, ...]
 */

/** Options for {@link ClipTokenizer}: the parsed vocabulary and merges plus the special tokens. */
export interface ClipTokenizerOptions {
  /** `vocab.json`: token string (byte-level symbols) to id. */
  vocab: Record<string, number>
  /** `merges.txt` as text, or its merge lines (`'a b'`); a `#version` header line is skipped. */
  merges: string[] | string
  /** Sequence length the text encoder takes, specials included (77 for CLIP). */
  modelMaxLength: number
  /** Id used for padding; defaults to the eos id (SD 1.x). SD 2.x pads with `!` = 0. */
  padTokenId?: number
  /** Start-of-text token; defaults to `<|startoftext|>`. */
  bosToken?: string
  /** End-of-text token; defaults to `<|endoftext|>`. */
  eosToken?: string
}

/** The Hugging Face tokenizer folder files, as text, for {@link ClipTokenizer.fromFiles}. */
export interface ClipTokenizerFiles {
  /** `vocab.json`. */
  vocabJson: string
  /** `merges.txt`. */
  mergesTxt: string
  /** `tokenizer_config.json` (model_max_length, special tokens). */
  tokenizerConfigJson?: string
  /** `special_tokens_map.json`; its entries win over `tokenizer_config.json`, as in transformers. */
  specialTokensMapJson?: string
}

/** Options for {@link ClipTokenizer.encodeForModel}. */
export interface EncodeForModelOptions {
  /** Cut prompts longer than `windowTokens` (default `true`); when `false` they throw. */
  truncate?: boolean
}

/** One prompt ready for the text encoder. */
export interface EncodedPrompt {
  /** `[bos] + ids[:windowTokens] + [eos]`, padded with the pad id to `modelMaxLength`. */
  inputIds: number[]
  /** Unpadded length, specials included. */
  length: number
  /** Whether prompt tokens were dropped. */
  truncated: boolean
  /** Prompt tokens before truncation, specials excluded. */
  nTokens: number
}

/** Thrown by `encodeForModel(text, { truncate: false })` when the prompt does not fit. */
export class PromptTooLongError extends RangeError {
  /** Builds the error from the token count and the limit. */
  constructor(
    readonly nTokens: number,
    readonly limit: number,
  ) {
    super(`prompt has ${nTokens} tokens, the text encoder takes at most ${limit}`)
    this.name = 'PromptTooLongError'
  }
}

const DEFAULT_BOS = '<|startoftext|>'
const DEFAULT_EOS = '<|endoftext|>'
const DEFAULT_MODEL_MAX_LENGTH = 77
// transformers writes int(1e30) when a checkpoint sets no limit; anything this big is not a length.
const MAX_SANE_MODEL_MAX_LENGTH = 1 << 16
// Bounds memory in a long-lived isolate fed arbitrary prompts; dropped wholesale when full.
const BPE_CACHE_LIMIT = 20_000

// `regex` module `\s` (Unicode White_Space): the set the pre-tokenizer and whitespace collapse use.
const WHITE_SPACE =
  '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000'
const WHITE_SPACE_RUN_RE = new RegExp(`[${WHITE_SPACE}]+`, 'gu')
// openai's pattern, `\s` spelled out; `i` as in Python (folds e.g. `'ſ` onto `'s`).
const PRE_TOKENIZE_RE = new RegExp(
  "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|" +
    `[^${WHITE_SPACE}\\p{L}\\p{N}]+`,
  'giu',
)

/** Python `str.isspace()` for one UTF-16 unit (every such code point is in the BMP). */
function isPySpace(c: number): boolean {
  return (
    (c >= 0x09 && c <= 0x0d) ||
    (c >= 0x1c && c <= 0x20) ||
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  )
}

/** Python `str.strip()` with no argument; a scan, so long whitespace runs stay linear. */
function pyStrip(s: string): string {
  let start = 0
  let end = s.length
  while (start < end && isPySpace(s.charCodeAt(start))) start++
  while (end > start && isPySpace(s.charCodeAt(end - 1))) end--
  return s.slice(start, end)
}

// HTML 4 entity names with their html5 code points (`name:hex`). Python's `html.unescape` also
// accepts the Latin-1 ones and amp/lt/gt/quot (+ upper-case AMP, LT, GT, QUOT, COPY, REG) without
// the `;`, and then takes the longest such prefix (`&ampx` is `&x`).
const ENTITY_TABLE =
  'QUOT:22 quot:22 AMP:26 amp:26 apos:27 LT:3c lt:3c GT:3e gt:3e nbsp:a0 iexcl:a1 cent:a2 ' +
  'pound:a3 curren:a4 yen:a5 brvbar:a6 sect:a7 uml:a8 COPY:a9 copy:a9 ordf:aa laquo:ab ' +
  'not:ac shy:ad REG:ae reg:ae macr:af deg:b0 plusmn:b1 sup2:b2 sup3:b3 acute:b4 micro:b5 ' +
  'para:b6 middot:b7 cedil:b8 sup1:b9 ordm:ba raquo:bb frac14:bc frac12:bd frac34:be ' +
  'iquest:bf Agrave:c0 Aacute:c1 Acirc:c2 Atilde:c3 Auml:c4 Aring:c5 AElig:c6 Ccedil:c7 ' +
  'Egrave:c8 Eacute:c9 Ecirc:ca Euml:cb Igrave:cc Iacute:cd Icirc:ce Iuml:cf ETH:d0 ' +
  'Ntilde:d1 Ograve:d2 Oacute:d3 Ocirc:d4 Otilde:d5 Ouml:d6 times:d7 Oslash:d8 Ugrave:d9 ' +
  'Uacute:da Ucirc:db Uuml:dc Yacute:dd THORN:de szlig:df agrave:e0 aacute:e1 acirc:e2 ' +
  'atilde:e3 auml:e4 aring:e5 aelig:e6 ccedil:e7 egrave:e8 eacute:e9 ecirc:ea euml:eb ' +
  'igrave:ec iacute:ed icirc:ee iuml:ef eth:f0 ntilde:f1 ograve:f2 oacute:f3 ocirc:f4 ' +
  'otilde:f5 ouml:f6 divide:f7 oslash:f8 ugrave:f9 uacute:fa ucirc:fb uuml:fc yacute:fd ' +
  'thorn:fe yuml:ff OElig:152 oelig:153 Scaron:160 scaron:161 Yuml:178 fnof:192 circ:2c6 ' +
  'tilde:2dc Alpha:391 Beta:392 Gamma:393 Delta:394 Epsilon:395 Zeta:396 Eta:397 Theta:398 ' +
  'Iota:399 Kappa:39a Lambda:39b Mu:39c Nu:39d Xi:39e Omicron:39f Pi:3a0 Rho:3a1 Sigma:3a3 ' +
  'Tau:3a4 Upsilon:3a5 Phi:3a6 Chi:3a7 Psi:3a8 Omega:3a9 alpha:3b1 beta:3b2 gamma:3b3 ' +
  'delta:3b4 epsilon:3b5 zeta:3b6 eta:3b7 theta:3b8 iota:3b9 kappa:3ba lambda:3bb mu:3bc ' +
  'nu:3bd xi:3be omicron:3bf pi:3c0 rho:3c1 sigmaf:3c2 sigma:3c3 tau:3c4 upsilon:3c5 ' +
  'phi:3c6 chi:3c7 psi:3c8 omega:3c9 thetasym:3d1 upsih:3d2 piv:3d6 ensp:2002 emsp:2003 ' +
  'thinsp:2009 zwnj:200c zwj:200d lrm:200e rlm:200f ndash:2013 mdash:2014 lsquo:2018 ' +
  'rsquo:2019 sbquo:201a ldquo:201c rdquo:201d bdquo:201e dagger:2020 Dagger:2021 bull:2022 ' +
  'hellip:2026 permil:2030 prime:2032 Prime:2033 lsaquo:2039 rsaquo:203a oline:203e ' +
  'frasl:2044 euro:20ac image:2111 weierp:2118 real:211c trade:2122 alefsym:2135 larr:2190 ' +
  'uarr:2191 rarr:2192 darr:2193 harr:2194 crarr:21b5 lArr:21d0 uArr:21d1 rArr:21d2 ' +
  'dArr:21d3 hArr:21d4 forall:2200 part:2202 exist:2203 empty:2205 nabla:2207 isin:2208 ' +
  'notin:2209 ni:220b prod:220f sum:2211 minus:2212 lowast:2217 radic:221a prop:221d ' +
  'infin:221e ang:2220 and:2227 or:2228 cap:2229 cup:222a int:222b there4:2234 sim:223c ' +
  'cong:2245 asymp:2248 ne:2260 equiv:2261 le:2264 ge:2265 sub:2282 sup:2283 nsub:2284 ' +
  'sube:2286 supe:2287 oplus:2295 otimes:2297 perp:22a5 sdot:22c5 lceil:2308 rceil:2309 ' +
  'lfloor:230a rfloor:230b loz:25ca spades:2660 clubs:2663 hearts:2665 diams:2666 lang:27e8 ' +
  'rang:27e9'

const LEGACY_ENTITY_NAMES = new Set([
  'amp',
  'lt',
  'gt',
  'quot',
  'AMP',
  'LT',
  'GT',
  'QUOT',
  'COPY',
  'REG',
])

/** Entity name (with `;`, and without it for the legacy names) to its text. */
const HTML_ENTITIES: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>()
  for (const entry of ENTITY_TABLE.split(' ')) {
    const [name, hex] = entry.split(':')
    const cp = parseInt(hex, 16)
    const text = String.fromCodePoint(cp)
    map.set(`${name};`, text)
    if ((cp >= 0xa0 && cp <= 0xff) || LEGACY_ENTITY_NAMES.has(name)) map.set(name, text)
  }
  return map
})()

// Python's `_invalid_charrefs` for 0x80..0x9f: numeric references read as windows-1252.
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178'

// Python's `html._charref` (counts code points, hence `u`).
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu

/** Python `html._replace_charref`: one reference (without its `&`) to its text. */
function replaceCharref(ref: string): string {
  if (ref[0] === '#') {
    const hex = ref[1] === 'x' || ref[1] === 'X'
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '')
    // Long digit runs parse to huge numbers or Infinity; both land in the > 0x10ffff branch.
    const num = parseInt(digits, hex ? 16 : 10)
    if (num === 0x00) return '\ufffd'
    if (num === 0x0d) return '\r'
    if (num >= 0x80 && num <= 0x9f) return CP1252_C1[num - 0x80]
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd'
    if (
      (num >= 0x01 && num <= 0x08) ||
      num === 0x0b ||
      (num >= 0x0e && num <= 0x1f) ||
      num === 0x7f ||
      (num >= 0xfdd0 && num <= 0xfdef) ||
      (num & 0xfffe) === 0xfffe
    ) {
      return ''
    }
    return String.fromCodePoint(num)
  }
  const whole = HTML_ENTITIES.get(ref)
  if (whole !== undefined) return whole
  // Entity names are ASCII, so code-unit prefixes here are code-point prefixes in Python.
  for (let x = ref.length - 1; x > 1; x--) {
    const prefix = HTML_ENTITIES.get(ref.slice(0, x))
    if (prefix !== undefined) return prefix + ref.slice(x)
  }
  return `&${ref}`
}

/** Python `html.unescape`. */
export function htmlUnescape(text: string): string {
  if (!text.includes('&')) return text
  return text.replace(CHARREF_RE, (_match, ref: string) => replaceCharref(ref))
}

/** GPT-2 `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onwards. */
const BYTE_ENCODER: readonly string[] = (() => {
  const table = new Array<string>(256)
  let n = 0
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae
    table[b] = String.fromCharCode(printable ? b : 256 + n++)
  }
  return table
})()

/** The inverse of `BYTE_ENCODER`, for `decode`. */
const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_ENCODER.map((ch, b) => [ch, b]))

function invert(vocab: Readonly<Record<string, number>>): Map<number, string> {
  const out = new Map<number, string>()
  for (const [token, id] of Object.entries(vocab)) out.set(id, token)
  return out
}

const UTF8 = new TextEncoder()

/** Merge ranks from `merges.txt` text (or its lines): `'a b'` to line number, header skipped. */
function mergeRanks(merges: string[] | string): Map<string, number> {
  const lines = typeof merges === 'string' ? merges.split('\n') : merges
  const ranks = new Map<string, number>()
  // A plain loop: this runs once per isolate over ~49k lines, on the cold-start path.
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i]
    if (line.trim() === '' || (i === 0 && line.startsWith('#version'))) continue
    ranks.set(line, ranks.size)
  }
  return ranks
}

/** A special token in HF JSON: a plain string or an AddedToken object `{ content }`. */
function tokenContent(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value === 'string') return value
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content
  }
  throw new TypeError(`tokenizer files: ${field} must be a string or {content: string}`)
}

/** Parses an optional JSON object file, naming it in the error. */
function parseJsonObject(text: string | undefined, file: string): Record<string, unknown> {
  if (text === undefined) return {}
  const value: unknown = JSON.parse(text)
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${file} must hold a JSON object`)
  }
  return value as Record<string, unknown>
}

/** CLIP byte-level BPE tokenizer, matching openai's `SimpleTokenizer.encode` id for id. */
export class ClipTokenizer {
  /** Sequence length fed to the text encoder, specials included. */
  readonly modelMaxLength: number
  /** Prompt tokens that fit: `modelMaxLength - 2` (bos and eos take the other two). */
  readonly windowTokens: number
  /** Id of the start-of-text token. */
  readonly bosTokenId: number
  /** Id of the end-of-text token. */
  readonly eosTokenId: number
  /** Id used to pad `inputIds`. */
  readonly padTokenId: number

  readonly #vocab: Readonly<Record<string, number>>
  readonly #ranks: ReadonlyMap<string, number>
  readonly #cache = new Map<string, string>()
  readonly #specials: ReadonlyMap<string, string>
  /** id → token, built on the first `decode`. */
  #tokens: Map<number, string> | undefined

  /** Builds a tokenizer from a parsed vocabulary and merges. */
  constructor(options: ClipTokenizerOptions) {
    const { vocab, merges, modelMaxLength } = options
    if (!Number.isInteger(modelMaxLength) || modelMaxLength < 2) {
      throw new RangeError(`modelMaxLength must be an integer >= 2, got ${modelMaxLength}`)
    }
    this.modelMaxLength = modelMaxLength
    this.windowTokens = modelMaxLength - 2
    // Used as is (copying 49k entries into a Map costs ~100 ms of cold start); see #idOf.
    this.#vocab = vocab
    this.#ranks = mergeRanks(merges)
    const bos = options.bosToken ?? DEFAULT_BOS
    const eos = options.eosToken ?? DEFAULT_EOS
    this.bosTokenId = this.#idOf(bos)
    this.eosTokenId = this.#idOf(eos)
    this.padTokenId = options.padTokenId ?? this.eosTokenId
    if (!Number.isInteger(this.padTokenId) || this.padTokenId < 0) {
      throw new RangeError(`padTokenId must be a non-negative integer, got ${this.padTokenId}`)
    }
    // openai seeds its BPE cache with the specials, so a literal `<|endoftext|>` in a prompt
    // becomes that one id (no `</w>`).
    this.#specials = new Map([
      [bos, bos],
      [eos, eos],
    ])
  }

  /** Builds a tokenizer from the Hugging Face tokenizer folder files (SD 1.x and 2.x). */
  static fromFiles(files: ClipTokenizerFiles): ClipTokenizer {
    const vocab = parseJsonObject(files.vocabJson, 'vocab.json') as Record<string, number>
    const config = parseJsonObject(files.tokenizerConfigJson, 'tokenizer_config.json')
    const map = parseJsonObject(files.specialTokensMapJson, 'special_tokens_map.json')
    const special = (key: string) =>
      tokenContent(map[key], `special_tokens_map.json ${key}`) ??
      tokenContent(config[key], `tokenizer_config.json ${key}`)
    const rawMax = config.model_max_length ?? DEFAULT_MODEL_MAX_LENGTH
    if (typeof rawMax !== 'number' || rawMax > MAX_SANE_MODEL_MAX_LENGTH) {
      throw new RangeError(`tokenizer_config.json model_max_length is not usable: ${rawMax}`)
    }
    const bosToken = special('bos_token') ?? DEFAULT_BOS
    const eosToken = special('eos_token') ?? DEFAULT_EOS
    // CLIPTokenizer's default pad token is `<|endoftext|>`.
    const padToken = special('pad_token') ?? DEFAULT_EOS
    const padTokenId = vocab[padToken]
    if (!Object.hasOwn(vocab, padToken) || typeof padTokenId !== 'number') {
      throw new RangeError(`pad token ${JSON.stringify(padToken)} is not in vocab.json`)
    }
    return new ClipTokenizer({
      vocab,
      merges: files.mergesTxt,
      modelMaxLength: rawMax,
      padTokenId,
      bosToken,
      eosToken,
    })
  }

  /** Steps 2-5 of `SimpleTokenizer.encode`: html unescape twice, strip, collapse spaces, lower. */
  cleanText(text: string): string {
    const unescaped = pyStrip(htmlUnescape(htmlUnescape(text)))
    return pyStrip(unescaped.replace(WHITE_SPACE_RUN_RE, ' ')).toLowerCase()
  }

  /** Splits cleaned text into the pre-tokenizer's words. */
  preTokenize(cleanedText: string): string[] {
    // U+0345 is a mark whose case fold (iota) is a letter: under IGNORECASE Python's `regex`
    // matches it with neither `[\p{L}]+` nor `[^\s\p{L}\p{N}]+`, so it splits words like a space.
    // JS `iu` counts it as a letter. It is the only code point where the two engines disagree.
    const text = cleanedText.includes('\u0345') ? cleanedText.replace(/\u0345/g, ' ') : cleanedText
    return text.match(PRE_TOKENIZE_RE) ?? []
  }

  /** BPE of one word given as byte-level symbols; returns space-separated tokens, last with `</w>`. */
  bpe(token: string): string {
    const special = this.#specials.get(token)
    if (special !== undefined) return special
    const cached = this.#cache.get(token)
    if (cached !== undefined) return cached
    if (token === '') return ''
    let word = Array.from(token)
    word[word.length - 1] += '</w>'
    while (word.length > 1) {
      let best = Infinity
      let first = ''
      let second = ''
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.#ranks.get(`${word[i]} ${word[i + 1]}`)
        if (rank !== undefined && rank < best) {
          best = rank
          first = word[i]
          second = word[i + 1]
        }
      }
      if (best === Infinity) break
      const merged: string[] = []
      for (let i = 0; i < word.length; i++) {
        if (word[i] === first && i < word.length - 1 && word[i + 1] === second) {
          merged.push(first + second)
          i++
        } else {
          merged.push(word[i])
        }
      }
      word = merged
    }
    const result = word.join(' ')
    if (this.#cache.size >= BPE_CACHE_LIMIT) this.#cache.clear()
    this.#cache.set(token, result)
    return result
  }

  /** BPE token strings (byte-level symbols) of a prompt, specials excluded. */
  tokenize(text: string): string[] {
    const tokens: string[] = []
    for (const word of this.preTokenize(this.cleanText(text))) {
      let symbols = ''
      for (const byte of UTF8.encode(word)) symbols += BYTE_ENCODER[byte]
      for (const piece of this.bpe(symbols).split(' ')) tokens.push(piece)
    }
    return tokens
  }

  /** Token ids of a prompt without bos/eos, not truncated. */
  encode(text: string): number[] {
    return this.tokenize(text).map((token) => this.#idOf(token))
  }

  /** `[bos] + ids[:windowTokens] + [eos]`, padded with the pad id to `modelMaxLength`. */
  encodeForModel(text: string, options: EncodeForModelOptions = {}): EncodedPrompt {
    const ids = this.encode(text)
    const truncated = ids.length > this.windowTokens
    if (truncated && options.truncate === false) {
      throw new PromptTooLongError(ids.length, this.windowTokens)
    }
    const inputIds = [this.bosTokenId, ...ids.slice(0, this.windowTokens), this.eosTokenId]
    const length = inputIds.length
    while (inputIds.length < this.modelMaxLength) inputIds.push(this.padTokenId)
    return { inputIds, length, truncated, nTokens: ids.length }
  }

  /**
   * The text of token ids, as openai's `SimpleTokenizer.decode`: the tokens' bytes joined, `</w>`
   * as a space, specials (bos, eos, padding) left out. For a prompt's window this is the text the
   * model saw: cleaned, lower-cased, and cut where truncation cut it.
   */
  decode(ids: readonly number[]): string {
    this.#tokens ??= invert(this.#vocab)
    const skip = new Set([this.bosTokenId, this.eosTokenId, this.padTokenId])
    const bytes: number[] = []
    for (const id of ids) {
      if (skip.has(id)) continue
      const token = this.#tokens.get(id)
      if (token === undefined) throw new RangeError(`id ${id} is not in the vocab`)
      for (const ch of token.replace(/<\/w>$/, ' '))
        bytes.push(ch === ' ' ? 0x20 : BYTE_DECODER.get(ch)!)
    }
    return new TextDecoder().decode(new Uint8Array(bytes)).trim()
  }

  /** Vocabulary id of a token string; a miss means the vocab and merges do not belong together. */
  #idOf(token: string): number {
    // hasOwn: a symbol like 'constructor' must not find Object.prototype's.
    const id = Object.hasOwn(this.#vocab, token) ? this.#vocab[token] : undefined
    if (typeof id !== 'number')
      throw new RangeError(`token ${JSON.stringify(token)} is not in the vocab`)
    return id
  }
}
