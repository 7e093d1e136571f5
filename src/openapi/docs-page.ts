/**
 * @module
 * The interactive API reference at `GET /docs`: one self-contained HTML page (inline CSS and
 * JS, nothing fetched from elsewhere, so it works offline and under a strict CSP) that reads
 * `/openapi.json`, lists every operation with its parameters, body and responses (schemas
 * resolved from `$ref`s), and has a "Try it" form per operation that sends the request with
 * your key and shows the status, headers and body (images rendered).
 */

const STYLE = `
:root { font-family: system-ui, sans-serif; color-scheme: light dark; --line: #8884; }
body { max-width: 64rem; margin: 1.5rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin-bottom: .25rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: .95rem; margin: 1rem 0 .35rem; }
code, pre, textarea { font-family: ui-monospace, monospace; font-size: .8rem; }
pre { background: #8881; padding: .5rem; overflow: auto; max-height: 24rem; white-space: pre-wrap; }
#auth { display: flex; gap: 1rem; flex-wrap: wrap; padding: .75rem; border: 1px solid var(--line); }
#auth label { display: flex; flex-direction: column; font-size: .85rem; gap: .2rem; }
input, select, textarea, button { font: inherit; padding: .3rem; }
details.op { border: 1px solid var(--line); border-radius: .3rem; margin: .4rem 0; }
details.op > summary { cursor: pointer; padding: .45rem .6rem; display: flex; gap: .6rem; align-items: baseline; }
details.op > div { padding: 0 .8rem .8rem; }
.method { font-weight: 700; min-width: 4rem; text-transform: uppercase; font-size: .8rem; }
.get { color: #1565c0; } .post { color: #2e7d32; } .delete { color: #c62828; }
table { border-collapse: collapse; width: 100%; font-size: .85rem; }
td, th { border-top: 1px solid var(--line); padding: .3rem; text-align: left; vertical-align: top; }
ul.schema { list-style: none; padding-left: 1rem; margin: .2rem 0; border-left: 1px solid var(--line); }
ul.schema div, td div { font-size: .85rem; }
.req { color: #c62828; }
.muted { opacity: .7; font-size: .8rem; }
.try label { display: block; margin: .3rem 0; font-size: .85rem; }
.try textarea { width: 100%; box-sizing: border-box; }
.result img { image-rendering: pixelated; width: 192px; border: 1px solid var(--line); }
`

const SCRIPT = `
const $ = (sel, root = document) => root.querySelector(sel)
let spec

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else if (v !== undefined && v !== false) e.setAttribute(k, v === true ? '' : v)
  }
  for (const c of children.flat(Infinity)) if (c != null) e.append(c)
  return e
}

// Markdown-lite: backticks become <code>; everything else stays text (no HTML is injected).
function prose(text, tag = 'p') {
  const e = el(tag)
  String(text || '').split('\`').forEach((part, i) => e.append(i % 2 ? el('code', {}, part) : part))
  return e
}

function resolve(schema) {
  const seen = new Set()
  while (schema && schema.$ref && !seen.has(schema.$ref)) {
    seen.add(schema.$ref)
    schema = schema.$ref.split('/').slice(1).reduce((o, k) => o && o[k], spec)
  }
  if (schema && schema.allOf) {
    return schema.allOf.map(resolve).reduce(merge, { ...schema, allOf: undefined })
  }
  return schema || {}
}

// allOf parts narrow each other (e.g. a problem's type per status): merge them, nested too.
function merge(a, b) {
  const out = { ...a }
  for (const [k, v] of Object.entries(b)) {
    if (k === 'properties') {
      out.properties = { ...a.properties }
      for (const [p, s] of Object.entries(v)) {
        out.properties[p] = a.properties && a.properties[p] ? merge(resolve(a.properties[p]), s) : s
      }
    } else if (k === 'required') out.required = [...(a.required || []), ...v]
    else out[k] = v
  }
  return out
}

function typeLabel(s) {
  const name = s.$ref ? s.$ref.split('/').pop() + ' ' : ''
  const r = resolve(s)
  let t = r.type || (r.anyOf ? r.anyOf.map((x) => typeLabel(x)).join(' | ') : r.enum ? 'enum' : 'any')
  if (Array.isArray(t)) t = t.join(' | ')
  if (r.type === 'array') t = typeLabel(r.items || {}) + '[]'
  return name + t
}

function constraints(s) {
  const r = resolve(s)
  const out = []
  if (r.const !== undefined) out.push('= ' + JSON.stringify(r.const))
  if (r.enum) out.push('one of ' + r.enum.map((x) => JSON.stringify(x)).join(', '))
  for (const k of ['minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'format']) {
    if (r[k] !== undefined) out.push(k + ' ' + r[k])
  }
  if (r.default !== undefined) out.push('default ' + JSON.stringify(r.default))
  if (r.additionalProperties === false) out.push('no other fields')
  return out.join('; ')
}

function schemaTree(s, depth = 0) {
  const r = resolve(s)
  const props = r.type === 'array' ? resolve(r.items || {}).properties : r.properties
  if (!props || depth > 4) return null
  const required = new Set((r.type === 'array' ? resolve(r.items).required : r.required) || [])
  return el('ul', { class: 'schema' }, Object.entries(props).map(([name, p]) => {
    const pr = resolve(p)
    return el('li', { 'data-field': name },
      el('code', {}, name), required.has(name) ? el('span', { class: 'req', title: 'required' }, ' *') : null,
      ' ', el('span', { class: 'muted' }, typeLabel(p), constraints(p) ? ' · ' + constraints(p) : ''),
      pr.description ? prose(pr.description, 'div') : null,
      schemaTree(p, depth + 1))
  }))
}

function exampleOf(s, depth = 0) {
  const r = resolve(s)
  if (r.example !== undefined) return r.example
  if (r.examples && r.examples.length) return r.examples[0]
  if (r.default !== undefined) return r.default
  if (depth > 4) return null
  if (r.type === 'object' && r.properties) {
    const out = {}
    const required = new Set(r.required || [])
    for (const [k, p] of Object.entries(r.properties)) {
      const pr = resolve(p)
      if (required.has(k) || pr.example !== undefined) out[k] = exampleOf(p, depth + 1)
    }
    return out
  }
  if (r.type === 'array') return [exampleOf(r.items || {}, depth + 1)]
  return { string: '', integer: 0, number: 0, boolean: false }[r.type] ?? null
}

function responsesTable(op) {
  return el('table', {}, el('tr', {}, el('th', {}, 'Status'), el('th', {}, 'Meaning')),
    Object.entries(op.responses).map(([status, res]) => el('tr', { 'data-status': status },
      el('td', {}, el('code', {}, status)),
      el('td', {}, prose(res.description, 'div'),
        Object.keys(res.headers || {}).length ? el('div', { class: 'muted' }, 'Headers: ' + Object.keys(res.headers).join(', ')) : null,
        Object.entries(res.content || {}).map(([type, media]) => el('details', {},
          el('summary', { class: 'muted' }, type + (media.schema ? ' · ' + typeLabel(media.schema) : '')),
          schemaTree(media.schema || {}) || el('div', { class: 'muted' }, constraints(media.schema || {}))))))))
}

function tryIt(path, method, op) {
  const params = op.parameters || []
  const form = el('form', { class: 'try' })
  for (const p of params.filter((p) => p.in !== 'header' || p.name !== 'Accept')) {
    form.append(el('label', {}, p.name + ' (' + p.in + ')' + (p.required ? ' *' : ''),
      // Path parameters start at their example; optional headers (Prefer…) only suggest theirs.
      el('input', { name: 'param:' + p.in + ':' + p.name, [p.in === 'path' ? 'value' : 'placeholder']: p.schema && p.schema.example !== undefined ? String(p.schema.example) : '' })))
  }
  const ok = Object.entries(op.responses).find(([s]) => s.startsWith('2'))
  const types = ok && ok[1].content ? Object.keys(ok[1].content) : []
  if (types.length > 1) {
    form.append(el('label', {}, 'Accept ', el('select', { name: 'accept' }, types.map((t) => el('option', { value: t }, t)))))
  }
  const body = op.requestBody && op.requestBody.content['application/json']
  if (body) {
    form.append(el('label', {}, 'JSON body',
      el('textarea', { name: 'body', rows: 6, spellcheck: 'false' }, JSON.stringify(exampleOf(body.schema), null, 2))))
  }
  const result = el('div', { class: 'result', 'aria-live': 'polite' })
  form.append(el('button', { type: 'submit' }, 'Send'), result)
  form.addEventListener('submit', (e) => { e.preventDefault(); send(form, path, method, op, result) })
  return form
}

async function send(form, path, method, op, result) {
  const data = new FormData(form)
  const headers = {}
  let url = path
  const query = new URLSearchParams()
  for (const [k, v] of data) {
    if (!k.startsWith('param:') || v === '') continue
    const [, where, name] = k.split(':')
    if (where === 'path') url = url.replace('{' + name + '}', encodeURIComponent(v).replace(/%2F/g, '/'))
    else if (where === 'query') query.set(name, v)
    else if (where === 'header') headers[name] = v
  }
  if (data.get('accept')) headers.Accept = data.get('accept')
  const scheme = (op.security || []).flatMap((s) => Object.keys(s))[0]
  const token = scheme === 'AdminToken' ? $('#admin-token').value.trim() : scheme ? $('#api-key').value.trim() : ''
  if (token) headers.Authorization = 'Bearer ' + token
  const init = { method: method.toUpperCase(), headers }
  if (data.has('body')) {
    headers['Content-Type'] = 'application/json'
    init.body = data.get('body')
  }
  result.replaceChildren(el('p', { class: 'muted' }, 'Sending…'))
  try {
    const res = await fetch(url + (query.size ? '?' + query : ''), init)
    const type = res.headers.get('content-type') || ''
    let view
    if (type.startsWith('image/')) {
      view = el('img', { src: URL.createObjectURL(await res.blob()), alt: 'response image' })
    } else {
      const text = await res.text()
      let shown = text
      try { if (type.includes('json')) shown = JSON.stringify(JSON.parse(text), null, 2) } catch {}
      view = el('pre', { class: 'body' }, shown)
    }
    result.replaceChildren(
      el('p', { class: 'status' }, el('strong', {}, res.status + ' ' + res.statusText), ' ', el('code', {}, init.method + ' ' + url)),
      el('pre', { class: 'headers' }, [...res.headers].map(([k, v]) => k + ': ' + v).join('\\n')),
      view)
  } catch (e) {
    result.replaceChildren(el('p', { class: 'status' }, 'Request failed: ' + e.message))
  }
}

function operation(path, method, op) {
  const params = op.parameters || []
  const body = op.requestBody && op.requestBody.content
  return el('details', { class: 'op', id: 'op-' + op.operationId, 'data-operation-id': op.operationId },
    el('summary', {}, el('span', { class: 'method ' + method }, method), el('code', {}, path), prose(op.summary, 'span')),
    el('div', {},
      op.description ? prose(op.description) : null,
      (op.security || []).length ? el('p', { class: 'muted' }, 'Auth: ' + op.security.flatMap((s) => Object.keys(s)).join(', ')) : null,
      params.length ? [el('h3', {}, 'Parameters'), el('table', {}, params.map((p) => el('tr', {},
        el('td', {}, el('code', {}, p.name), p.required ? el('span', { class: 'req' }, ' *') : null),
        el('td', { class: 'muted' }, p.in + ' · ' + typeLabel(p.schema || {}) + (constraints(p.schema || {}) ? ' · ' + constraints(p.schema || {}) : '')),
        el('td', {}, prose(p.description || (p.schema || {}).description, 'div')))))] : null,
      body ? [el('h3', {}, 'Request body'), Object.entries(body).map(([type, media]) => el('div', { class: 'request-body' },
        el('div', { class: 'muted' }, type + ' · ' + typeLabel(media.schema || {})),
        resolve(media.schema).description ? prose(resolve(media.schema).description, 'div') : null,
        schemaTree(media.schema || {})))] : null,
      el('h3', {}, 'Responses'), responsesTable(op),
      el('h3', {}, 'Try it'), tryIt(path, method, op)))
}

async function main() {
  const res = await fetch('/openapi.json')
  spec = await res.json()
  $('#title').textContent = spec.info.title + ' API ' + spec.info.version
  $('#intro').replaceChildren(...spec.info.description.split('\\n\\n').map((t) => prose(t)))
  const byTag = new Map()
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ['Other'])[0]
      byTag.set(tag, [...(byTag.get(tag) || []), operation(path, method, op)])
    }
  }
  $('#ops').replaceChildren(...[...byTag].flatMap(([tag, ops]) => [el('h2', {}, tag), ...ops]))
  if (location.hash) { const d = document.getElementById(location.hash.slice(1)); if (d) d.open = true }
  $('#ops').dataset.ready = 'true'
}

$('#api-key').value = localStorage.getItem('tti.apiKey') || ''
$('#api-key').addEventListener('change', () => localStorage.setItem('tti.apiKey', $('#api-key').value.trim()))
main().catch((e) => { $('#ops').textContent = 'Could not load /openapi.json: ' + e.message })
`

/** The reference page; its script is hashed into the CSP by `docsScriptHash`. */
export const DOCS_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-tti API reference</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<h1 id="title">API reference</h1>
<div id="intro"></div>
<p class="muted">Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1). Playground: <a href="/">/</a>.</p>
<div id="auth">
  <label>API key (Bearer, kept in this browser) <input id="api-key" type="password" autocomplete="off" placeholder="tti_…"></label>
  <label>Admin token (for /v1/keys, /metrics; not stored) <input id="admin-token" type="password" autocomplete="off"></label>
</div>
<main id="ops">Loading…</main>
<script>${SCRIPT}</script>
</body>
</html>
`

let scriptHash: Promise<string> | undefined

/** `'sha256-…'` of the inline script, so the CSP allows exactly it (CSP3 hash source). */
export function docsScriptHash(): Promise<string> {
  scriptHash ??= crypto.subtle
    .digest('SHA-256', new TextEncoder().encode(SCRIPT))
    .then((d) => `'sha256-${btoa(String.fromCharCode(...new Uint8Array(d)))}'`)
  return scriptHash
}
