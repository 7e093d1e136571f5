/**
 * @module
 * The playground at `GET /`: one HTML page, inline CSS and JS, no framework, talking to the
 * public API exactly as any client does (`GET /v1/models`, `POST /v1/images` with
 * `Accept: text/event-stream`, whose step events drive the progress bar). The API key stays in
 * the browser's localStorage.
 *
 * Pictures (image-to-image, inpainting, ControlNet): an init image is uploaded or is the last
 * result, sent by its permanent URL so it costs no upload; a mask is drawn on a canvas over it,
 * shown scaled up but exported at the picture's own size; a control image is uploaded. Each
 * control is enabled by the model's `conditioning` in `GET /v1/models`, or disabled with its
 * reason. With a picture the request is multipart/form-data, else JSON, and the picture sets the
 * output size. `window.__playground.maskBlob()` gives the mask as it would be sent, for tests.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'
import { canonicalScheduler } from '../cache/cache-key'
import { SCHEDULER_NAMES } from '../pipeline/schedulers'

/**
 * Readable names of the schedulers, by the API value the page sends. Names that build the same
 * scheduler (`euler_a` and `EulerAncestralDiscreteScheduler`, `pndm` and `plms`: the cache key's
 * `canonicalScheduler` decides) are one entry; a class name whose alias sets overrides
 * (`PNDMScheduler` vs `pndm`) is a scheduler of its own.
 */
const SCHEDULER_LABELS: Readonly<Record<string, string>> = Object.freeze({
  ddim: 'DDIM',
  ddpm: 'DDPM',
  pndm: 'PNDM / PLMS',
  lcm: 'LCM',
  euler: 'Euler',
  euler_a: 'Euler ancestral',
  heun: 'Heun',
  lms: 'LMS',
  dpmpp_2m: 'DPM++ 2M',
  dpmpp_2m_karras: 'DPM++ 2M Karras',
  unipc: 'UniPC',
  PNDMScheduler: "PNDM with PRK steps (the model's config)",
  DPMSolverMultistepScheduler: "DPM-Solver multistep (the model's config)",
})

/** One select entry per distinct scheduler: the value sent, its label, every name that means it. */
export const SCHEDULER_CHOICES: readonly { value: string; label: string; names: string[] }[] =
  Object.freeze(
    Object.values(
      SCHEDULER_NAMES.reduce<Record<string, { value: string; label: string; names: string[] }>>(
        (groups, name) => {
          const key = JSON.stringify(canonicalScheduler(name))
          groups[key] ??= { value: name, label: SCHEDULER_LABELS[name] ?? name, names: [] }
          groups[key].names.push(name)
          return groups
        },
        {},
      ),
    ),
  )

const STYLE = `
:root { font-family: system-ui, sans-serif; color-scheme: light dark; }
body { max-width: 56rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .25rem; }
form { display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); gap: .75rem; }
label { display: flex; flex-direction: column; gap: .25rem; font-size: .85rem; }
.wide { grid-column: 1 / -1; }
input, select, textarea, button { font: inherit; padding: .4rem; }
button { cursor: pointer; }
#status { min-height: 1.5rem; margin: .75rem 0; }
#status.error { color: #c62828; }
progress { width: 12rem; vertical-align: middle; }
#result[hidden] { display: none; }
#result img { image-rendering: pixelated; width: 256px; height: auto; border: 1px solid #8884; }
#result code, #result input, #result textarea { width: 100%; box-sizing: border-box; font-family: ui-monospace, monospace; font-size: .8rem; }
.row { display: flex; gap: .5rem; align-items: center; }
fieldset { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: .75rem; border: 1px solid #8886; }
fieldset > div { display: flex; flex-direction: column; gap: .4rem; }
.why { font-size: .75rem; opacity: .75; }
.why:empty { display: none; }
#init-view { display: flex; flex-direction: column; gap: .4rem; }
#init-view[hidden] { display: none; }
.stack { position: relative; width: 256px; }
.stack img, .thumb { display: block; width: 256px; height: auto; image-rendering: pixelated; border: 1px solid #8884; }
#mask { position: absolute; inset: 1px; width: calc(100% - 2px); height: calc(100% - 2px); opacity: .6; cursor: crosshair; touch-action: none; image-rendering: pixelated; }
#mask.off { cursor: not-allowed; }
.thumb[hidden] { display: none; }
#result.stale img { opacity: .35; }
#stale[hidden] { display: none; }
#stale { color: #c62828; }
.hint { font-size: .75rem; opacity: .75; }
.hint code { font-size: .8rem; }
.check { flex-direction: column; }
`

const SCRIPT = `
const $ = (id) => document.getElementById(id)
const SCHEDULERS = ${JSON.stringify(SCHEDULER_CHOICES)}
const KEY_STORE = 'tti.apiKey'
const PICTURE_FIELDS = ['image', 'mask', 'control_image']
let models = []
// Per picture field: true, or why the chosen model cannot take it (its conditioning).
let can = {}
// The last image generated ({ url, width, height }): "Use as init image" sends its URL.
let last = null
// The pictures set: { value: a File or a stored image's URL, src: what the thumbnail shows }.
const pictures = { image: null, control_image: null }
let maskDrawn = false

function headers(extra = {}) {
  return { Authorization: 'Bearer ' + $('api-key').value.trim(), ...extra }
}

function say(text, isError = false) {
  $('status-text').textContent = text
  $('status').classList.toggle('error', isError)
}

async function problemText(res) {
  try {
    return problemMessage(await res.json())
  } catch {
    return res.status + ' ' + res.statusText
  }
}

// A problem in this page's words: a prompt over the window points at the page's own checkbox
// (the API's detail advises the JSON field), from the problem's data, not its text.
function problemMessage(p) {
  if (String(p.type).endsWith('/prompt-too-long') && p.tokens !== undefined) {
    const what = p.field === 'negative_prompt' ? 'the negative prompt' : 'the prompt'
    return p.title + ': ' + what + ' has ' + p.tokens + ' tokens; this model reads ' + p.limit +
      '. Tick "Cut a long prompt to fit" to drop the rest, or shorten it.'
  }
  return p.detail ? p.title + ': ' + p.detail : p.title
}

function option(select, value, selected, label = value) {
  const o = document.createElement('option')
  o.value = value
  o.textContent = label
  o.selected = selected
  select.append(o)
}

// One entry per distinct scheduler the model accepts, labelled with its name and the API value
// it sends; a name this page does not know (a hosted model's "default") as it is.
function fillSchedulers(m) {
  const known = new Set()
  $('scheduler').replaceChildren()
  for (const s of SCHEDULERS) {
    const names = s.names.filter((n) => m.schedulers.includes(n))
    if (!names.length) continue
    for (const n of s.names) known.add(n)
    const value = names.includes(s.value) ? s.value : names[0]
    option($('scheduler'), value, s.names.includes(m.defaults.scheduler), s.label + ' (' + value + ')')
  }
  for (const n of m.schedulers) if (!known.has(n)) option($('scheduler'), n, n === m.defaults.scheduler)
}

function fillModel() {
  const m = models.find((x) => x.id === $('model').value) || models[0]
  if (!m) return
  const d = m.defaults, l = m.limits
  fillSchedulers(m)
  $('size').replaceChildren()
  for (let w = l.size_multiple; w <= l.max_width; w += l.size_multiple) {
    for (let h = l.size_multiple; h <= l.max_height; h += l.size_multiple) {
      option($('size'), w + 'x' + h, w === d.width && h === d.height)
    }
  }
  Object.assign($('steps'), { min: l.min_steps, max: l.max_steps, placeholder: d.steps })
  Object.assign($('guidance'), {
    min: l.min_guidance_scale, max: l.max_guidance_scale, placeholder: d.guidance_scale,
  })
  const c = m.conditioning || {}
  can = {}
  for (const f of PICTURE_FIELDS) {
    can[f] = c[f] === true || (typeof c[f] === 'string' ? c[f] : 'this server does not say')
  }
  // A picture the new model cannot take is dropped, not sent to be refused.
  if (can.image !== true) setInit(null)
  if (can.control_image !== true) setControl(null)
  $('image-why').textContent =
    can.image === true ? (c.text === true ? '' : 'Required: ' + c.text) : can.image
  $('control-why').textContent = can.control_image === true ? '' : can.control_image
  refresh()
}

// Enables each picture control from the model's conditioning and the pictures set; a disabled
// control carries the reason as its title (the hint beside it says it too).
function refresh() {
  const why = (f) => (can[f] === true ? '' : can[f] || 'Enter your API key to begin.')
  const gate = (ids, reason) => {
    for (const id of ids) {
      $(id).disabled = !!reason
      $(id).title = reason
    }
  }
  gate(['init-file'], why('image'))
  gate(['use-result'], why('image') || (last ? '' : 'Generate an image first.'))
  gate(['strength'], why('image') || (pictures.image ? '' : 'Set an init image first.'))
  const maskWhy = why('mask') || (pictures.image ? '' : 'Set an init image first.')
  gate(['brush', 'mask-clear'], maskWhy)
  $('mask').classList.toggle('off', !!maskWhy)
  $('mask').title = maskWhy || 'Draw where the picture is repainted.'
  $('mask-why').textContent = can.mask === true ? '' : can.mask || ''
  gate(['control-file'], why('control_image'))
  gate(['control-scale'], why('control_image') || (pictures.control_image ? '' : 'Upload a control image first.'))
  const sized = !!(pictures.image || pictures.control_image)
  $('size').disabled = sized
  $('size').title = sized ? 'The picture sets the size.' : ''
}

async function loadModels() {
  if (!$('api-key').value.trim()) return say('Enter your API key to begin.')
  const res = await fetch('/v1/models', { headers: headers() })
  if (!res.ok) return say('Could not load models: ' + (await problemText(res)), true)
  models = (await res.json()).models
  $('model').replaceChildren()
  for (const m of models) option($('model'), m.id, m === models[0])
  fillModel()
  $('generate').disabled = false
  say('Ready.')
}

// Shows a picture in its thumbnail; resolves to its pixel size, or null (and says so) if the
// browser cannot decode it.
async function show(img, picture) {
  if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src)
  img.hidden = !picture
  if (!picture) return img.removeAttribute('src'), null
  img.src = picture.src
  try {
    await img.decode()
    return { width: img.naturalWidth, height: img.naturalHeight }
  } catch {
    say('That file is not a picture this browser can read; send PNG or JPEG.', true)
    return null
  }
}

const picked = (file) => file && { value: file, src: URL.createObjectURL(file) }

// Sets (or with null, removes) the init image, and a blank mask canvas of its pixel size.
async function setInit(picture) {
  pictures.image = picture
  $('init-clear').hidden = !picture
  $('init-view').hidden = !picture
  clearMask()
  refresh()
  const size = await show($('init-thumb'), picture)
  if (pictures.image !== picture) return
  if (!size) return picture && setInit(null)
  // The canvas holds the picture's own pixels; CSS scales it up over the thumbnail.
  Object.assign($('mask'), size)
  $('brush').max = Math.max(8, Math.round(Math.max(size.width, size.height) / 2))
}

async function setControl(picture) {
  pictures.control_image = picture
  $('control-clear').hidden = !picture
  refresh()
  const size = await show($('control-thumb'), picture)
  if (picture && !size && pictures.control_image === picture) setControl(null)
}

function clearMask() {
  const c = $('mask')
  c.getContext('2d').clearRect(0, 0, c.width, c.height)
  maskDrawn = false
}

// Strokes in the canvas's own pixels: a pointer position is scaled from its displayed size.
let drawing = false
function point(e) {
  const c = $('mask'), r = c.getBoundingClientRect()
  return [((e.clientX - r.left) * c.width) / r.width, ((e.clientY - r.top) * c.height) / r.height]
}
function strokeTo(e, start) {
  const ctx = $('mask').getContext('2d')
  const [x, y] = point(e)
  Object.assign(ctx, { strokeStyle: '#fff', lineWidth: Number($('brush').value), lineCap: 'round', lineJoin: 'round' })
  if (start) {
    ctx.beginPath()
    ctx.moveTo(x, y)
  }
  ctx.lineTo(x, y)
  ctx.stroke()
  maskDrawn = true
}

// The mask as sent: the strokes in white on black, at the init image's size; null if none.
function maskBlob() {
  if (!maskDrawn || !pictures.image) return Promise.resolve(null)
  const src = $('mask'), out = document.createElement('canvas')
  Object.assign(out, { width: src.width, height: src.height })
  const ctx = out.getContext('2d')
  ctx.fillStyle = '#000'
  ctx.fillRect(0, 0, out.width, out.height)
  ctx.drawImage(src, 0, 0)
  return new Promise((resolve) => out.toBlob(resolve, 'image/png'))
}

function fields() {
  const b = { prompt: $('prompt').value }
  Object.assign(b, { scheduler: $('scheduler').value, model: $('model').value })
  if (!pictures.image && !pictures.control_image) {
    const [width, height] = $('size').value.split('x').map(Number)
    Object.assign(b, { width, height })
  }
  if ($('negative').value) b.negative_prompt = $('negative').value
  if ($('truncate').checked) b.truncate = true
  for (const [id, field] of [['seed', 'seed'], ['steps', 'steps'], ['guidance', 'guidance_scale']]) {
    if ($(id).value !== '') b[field] = Number($(id).value)
  }
  if (pictures.image) b.strength = Number($('strength').value)
  if (pictures.control_image) b.control_scale = Number($('control-scale').value)
  return b
}

// JSON without pictures; multipart/form-data with them (files as parts, a stored image by URL).
async function request() {
  const b = fields()
  const accept = { Accept: 'text/event-stream' }
  if (!pictures.image && !pictures.control_image) {
    return { headers: headers({ 'Content-Type': 'application/json', ...accept }), body: JSON.stringify(b) }
  }
  const form = new FormData()
  for (const [k, v] of Object.entries(b)) form.append(k, String(v))
  if (pictures.image) form.append('image', pictures.image.value)
  const mask = await maskBlob()
  if (mask) form.append('mask', mask, 'mask.png')
  if (pictures.control_image) form.append('control_image', pictures.control_image.value)
  return { headers: headers(accept), body: form }
}

// POST with Accept: text/event-stream (EventSource cannot POST): yields each { event, data }.
async function* events(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return
    buffer += value.replace(/\\r\\n?/g, '\\n')
    let end
    while ((end = buffer.indexOf('\\n\\n')) >= 0) {
      const frame = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      let event = 'message', data = ''
      for (const line of frame.split('\\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data += (data ? '\\n' : '') + line.slice(5).replace(/^ /, '')
      }
      if (data) yield { event, data: JSON.parse(data) }
    }
  }
}

function showProgress(p) {
  // Determinate from the first step on: steps done out of the total.
  $('progress').max = p.total_steps
  $('progress').value = p.step
  $('progress').textContent = p.step + '/' + p.total_steps
}

function showResult(out, started) {
  const img = out.images[0]
  last = { url: img.url, width: img.width, height: img.height }
  $('image').src = img.url
  $('image').alt = $('prompt').value
  $('permalink').value = img.url
  $('open').href = img.url
  const alt = $('prompt').value.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')
  $('embed').value =
    '<img src="' + img.url + '" width="' + img.width + '" height="' + img.height + '" alt="' + alt + '">'
  $('meta').textContent =
    'seed ' + img.seed + ' · ' + img.width + '×' + img.height + ' · ' + out.model + (out.cached ? ' · cached' : '')
  $('result').hidden = false
  refresh()
  say('Done in ' + ((performance.now() - started) / 1000).toFixed(1) + ' s.')
}

// While a request runs, the previous image stays, dimmed and marked as the previous one.
function stale(isStale) {
  $('result').classList.toggle('stale', isStale)
  $('stale').hidden = !isStale
}

// A failed request leaves no image on screen: nothing the page shows passes for its result.
// ("Use the last result" still offers the last image that was made.)
function clearResult() {
  stale(false)
  $('result').hidden = true
  $('image').removeAttribute('src')
  $('image').alt = ''
  for (const id of ['permalink', 'embed']) $(id).value = ''
  $('open').removeAttribute('href')
  $('meta').textContent = ''
}

async function generate(event) {
  event.preventDefault()
  const started = performance.now()
  let step = ''
  $('generate').disabled = true
  stale(true)
  $('progress').removeAttribute('value') // indeterminate until the first step arrives
  $('progress').hidden = false
  const tick = setInterval(() => {
    say('Generating… ' + step + ((performance.now() - started) / 1000).toFixed(1) + ' s')
  }, 100)
  try {
    const res = await fetch('/v1/images', { method: 'POST', ...(await request()) })
    if (!res.ok) throw new Error(await problemText(res))
    let out
    for await (const { event, data } of events(res)) {
      if (event === 'progress') {
        showProgress(data)
        step = 'step ' + data.step + '/' + data.total_steps + ' · '
      } else if (event === 'error') {
        throw new Error(problemMessage(data))
      } else if (event === 'done') {
        out = data
      }
    }
    if (!out) throw new Error('The connection closed before the image was ready; try again.')
    clearInterval(tick)
    stale(false)
    showResult(out, started)
  } catch (e) {
    clearInterval(tick)
    clearResult()
    say(e.message, true)
  } finally {
    $('progress').hidden = true
    $('generate').disabled = false
  }
}

function copy(id) {
  navigator.clipboard?.writeText($(id).value).then(() => say('Copied.'), () => $(id).select())
}

function slider(id, digits) {
  const show = () => ($(id + '-out').value = Number($(id).value).toFixed(digits))
  $(id).addEventListener('input', show)
  show()
}

$('api-key').value = localStorage.getItem(KEY_STORE) || ''
$('api-key').addEventListener('change', () => {
  localStorage.setItem(KEY_STORE, $('api-key').value.trim())
  loadModels()
})
$('model').addEventListener('change', fillModel)
$('form').addEventListener('submit', generate)
$('copy-url').addEventListener('click', () => copy('permalink'))
$('copy-embed').addEventListener('click', () => copy('embed'))
$('init-file').addEventListener('change', (e) => setInit(picked(e.target.files[0])))
$('use-result').addEventListener('click', () => last && setInit({ value: last.url, src: last.url }))
$('init-clear').addEventListener('click', () => {
  $('init-file').value = ''
  setInit(null)
})
$('control-file').addEventListener('change', (e) => setControl(picked(e.target.files[0])))
$('control-clear').addEventListener('click', () => {
  $('control-file').value = ''
  setControl(null)
})
$('mask-clear').addEventListener('click', clearMask)
$('mask').addEventListener('pointerdown', (e) => {
  if ($('mask').classList.contains('off')) return
  drawing = true
  $('mask').setPointerCapture(e.pointerId)
  strokeTo(e, true)
})
$('mask').addEventListener('pointermove', (e) => drawing && strokeTo(e, false))
for (const end of ['pointerup', 'pointercancel']) $('mask').addEventListener(end, () => (drawing = false))
slider('strength', 2)
slider('brush', 0)
slider('control-scale', 2)
window.__playground = { maskBlob }
refresh()
loadModels()
`

/** The playground page. */
export const PLAYGROUND_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-tti playground</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1>edge-tti playground</h1>
<p>Text to image on the edge. Every image gets a permanent URL you can embed anywhere.</p>
<form id="form">
  <label class="wide">API key <input id="api-key" type="password" autocomplete="off" placeholder="tti_…" required aria-describedby="key-hint"></label>
  <small id="key-hint" class="wide hint">No key yet? Keys are made by whoever runs this server, with its admin token: on that machine, <code>npm run keys -- create --key-only</code> prints one (a local <code>npm start</code> writes the token to <code>.dev.vars</code>). The key stays in this browser.</small>
  <label class="wide">Prompt <textarea id="prompt" rows="2" required placeholder="a red circle on a white background"></textarea></label>
  <label class="wide">Negative prompt <input id="negative" placeholder="optional"></label>
  <label class="wide check"><span><input id="truncate" type="checkbox"> Cut a long prompt to fit</span><small class="hint">Sends <code>truncate: true</code>: words past the model's token window are dropped instead of refused.</small></label>
  <label>Model <select id="model"></select></label>
  <label>Size <select id="size"></select></label>
  <label>Scheduler <select id="scheduler"></select></label>
  <label>Steps <input id="steps" type="number" step="1"></label>
  <label>Guidance scale <input id="guidance" type="number" step="0.5"></label>
  <label>Seed <input id="seed" type="number" min="0" step="1" placeholder="random"></label>
  <fieldset class="wide">
    <legend>Pictures (optional; a picture sets the size)</legend>
    <div>
      <label>Init image <input id="init-file" type="file" accept="image/png,image/jpeg" aria-describedby="image-why"></label>
      <span class="row"><button id="use-result" type="button" aria-describedby="image-why">Use the last result</button> <button id="init-clear" type="button" hidden>Remove</button></span>
      <small id="image-why" class="why"></small>
      <label>Strength <span class="row"><input id="strength" type="range" min="0.05" max="1" step="0.05" value="0.8" aria-describedby="image-why"> <output id="strength-out" for="strength"></output></span></label>
      <div id="init-view" hidden>
        <div class="stack">
          <img id="init-thumb" alt="Init image">
          <canvas id="mask" role="img" aria-label="Mask: white strokes mark what is repainted" aria-describedby="mask-why"></canvas>
        </div>
        <label>Mask brush (pixels of the picture) <span class="row"><input id="brush" type="range" min="1" max="32" step="1" value="8" aria-describedby="mask-why"> <output id="brush-out" for="brush"></output></span></label>
        <span class="row"><button id="mask-clear" type="button" aria-describedby="mask-why">Clear mask</button></span>
        <small id="mask-why" class="why"></small>
      </div>
    </div>
    <div>
      <label>Control image (a silhouette) <input id="control-file" type="file" accept="image/png,image/jpeg" aria-describedby="control-why"></label>
      <span class="row"><button id="control-clear" type="button" hidden>Remove</button></span>
      <small id="control-why" class="why"></small>
      <img id="control-thumb" class="thumb" alt="Control image" hidden>
      <label>Control scale <span class="row"><input id="control-scale" type="range" min="0" max="2" step="0.05" value="1" aria-describedby="control-why"> <output id="control-scale-out" for="control-scale"></output></span></label>
    </div>
  </fieldset>
  <div class="wide row"><button id="generate" type="submit" disabled>Generate</button></div>
</form>
<div id="status" role="status" aria-live="polite"><progress id="progress" hidden aria-label="Generation progress"></progress> <span id="status-text"></span></div>
<section id="result" hidden>
  <p id="stale" hidden>The previous image, until the new one is ready.</p>
  <p><img id="image" alt=""></p>
  <p id="meta"></p>
  <label>Permanent URL
    <span class="row"><input id="permalink" readonly> <button id="copy-url" type="button">Copy</button> <a id="open" target="_blank" rel="noopener">Open</a></span>
  </label>
  <label>Embed
    <span class="row"><textarea id="embed" rows="3" readonly></textarea> <button id="copy-embed" type="button">Copy</button></span>
  </label>
</section>
<script>${SCRIPT}</script>
</body>
</html>
`

let scriptHash: Promise<string> | undefined

/** `'sha256-…'` of the inline script, so the CSP can allow exactly it (CSP3 hash source). */
function inlineScriptSource(): Promise<string> {
  scriptHash ??= crypto.subtle
    .digest('SHA-256', new TextEncoder().encode(SCRIPT))
    .then((d) => `'sha256-${btoa(String.fromCharCode(...new Uint8Array(d)))}'`)
  return scriptHash
}

/** The playground route, mounted at `/`. */
export function playgroundRoutes() {
  return new Hono<AppEnv>().get('/', async (c) =>
    c.html(PLAYGROUND_HTML, 200, {
      'Content-Security-Policy': [
        "default-src 'self'",
        `script-src ${await inlineScriptSource()}`,
        "style-src 'unsafe-inline'",
        // blob: for the thumbnails of picked files.
        "img-src 'self' data: blob:",
        "frame-ancestors 'none'",
      ].join('; '),
      'Cache-Control': 'no-cache',
    }),
  )
}
