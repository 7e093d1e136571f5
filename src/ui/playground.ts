/**
 * @module
 * The playground at `GET /`: one HTML page, inline CSS and JS, no framework, talking to the
 * public API exactly as any client does (`GET /v1/models`, `POST /v1/images` with
 * `Accept: text/event-stream`, whose step events drive the progress bar). The API key stays in
 * the browser's localStorage.
 */
import { Hono } from 'hono'
import type { AppEnv } from '../app-env'

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
`

const SCRIPT = `
const $ = (id) => document.getElementById(id)
const KEY_STORE = 'tti.apiKey'
let models = []

function headers(extra = {}) {
  return { Authorization: 'Bearer ' + $('api-key').value.trim(), ...extra }
}

function say(text, isError = false) {
  $('status-text').textContent = text
  $('status').classList.toggle('error', isError)
}

async function problemText(res) {
  try {
    const p = await res.json()
    return p.detail ? p.title + ': ' + p.detail : p.title || res.statusText
  } catch {
    return res.status + ' ' + res.statusText
  }
}

function option(select, value, selected) {
  const o = document.createElement('option')
  o.value = o.textContent = value
  o.selected = selected
  select.append(o)
}

function fillModel() {
  const m = models.find((x) => x.id === $('model').value) || models[0]
  if (!m) return
  const d = m.defaults, l = m.limits
  $('scheduler').replaceChildren()
  for (const s of m.schedulers) option($('scheduler'), s, s === d.scheduler)
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

function body() {
  const b = { prompt: $('prompt').value }
  const [width, height] = $('size').value.split('x').map(Number)
  Object.assign(b, { width, height, scheduler: $('scheduler').value, model: $('model').value })
  if ($('negative').value) b.negative_prompt = $('negative').value
  for (const [id, field] of [['seed', 'seed'], ['steps', 'steps'], ['guidance', 'guidance_scale']]) {
    if ($(id).value !== '') b[field] = Number($(id).value)
  }
  return b
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
  say('Done in ' + ((performance.now() - started) / 1000).toFixed(1) + ' s.')
}

async function generate(event) {
  event.preventDefault()
  const started = performance.now()
  let step = ''
  $('generate').disabled = true
  $('progress').removeAttribute('value') // indeterminate until the first step arrives
  $('progress').hidden = false
  const tick = setInterval(() => {
    say('Generating… ' + step + ((performance.now() - started) / 1000).toFixed(1) + ' s')
  }, 100)
  try {
    const res = await fetch('/v1/images', {
      method: 'POST',
      headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(body()),
    })
    if (!res.ok) throw new Error(await problemText(res))
    let out
    for await (const { event, data } of events(res)) {
      if (event === 'progress') {
        showProgress(data)
        step = 'step ' + data.step + '/' + data.total_steps + ' · '
      } else if (event === 'error') {
        throw new Error(data.detail ? data.title + ': ' + data.detail : data.title)
      } else if (event === 'done') {
        out = data
      }
    }
    if (!out) throw new Error('The connection closed before the image was ready; try again.')
    clearInterval(tick)
    showResult(out, started)
  } catch (e) {
    clearInterval(tick)
    say(e.message, true)
  } finally {
    $('progress').hidden = true
    $('generate').disabled = false
  }
}

function copy(id) {
  navigator.clipboard?.writeText($(id).value).then(() => say('Copied.'), () => $(id).select())
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
  <label class="wide">API key <input id="api-key" type="password" autocomplete="off" placeholder="tti_…" required></label>
  <label class="wide">Prompt <textarea id="prompt" rows="2" required placeholder="a red circle on a white background"></textarea></label>
  <label class="wide">Negative prompt <input id="negative" placeholder="optional"></label>
  <label>Model <select id="model"></select></label>
  <label>Size <select id="size"></select></label>
  <label>Scheduler <select id="scheduler"></select></label>
  <label>Steps <input id="steps" type="number" step="1"></label>
  <label>Guidance scale <input id="guidance" type="number" step="0.5"></label>
  <label>Seed <input id="seed" type="number" min="0" step="1" placeholder="random"></label>
  <div class="wide row"><button id="generate" type="submit" disabled>Generate</button></div>
</form>
<div id="status" role="status" aria-live="polite"><progress id="progress" hidden aria-label="Generation progress"></progress> <span id="status-text"></span></div>
<section id="result" hidden>
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
        "img-src 'self' data:",
        "frame-ancestors 'none'",
      ].join('; '),
      'Cache-Control': 'no-cache',
    }),
  )
}
