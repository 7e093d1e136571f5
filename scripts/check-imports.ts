/**
 * @module
 * `npm run lint`'s import check (also run by `test/node/layout.test.ts`): every package a file
 * imports is declared in package.json, and imports between the folders of `src/` point only the
 * ways `LAYER_RULES` allows. Prints one line per violation and exits 1 when there is any.
 *
 *   npx tsx scripts/check-imports.ts [ROOT]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { dirname, join, relative, resolve, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The HTTP surface, storage and key handling: what engines and the backend never import. */
const HTTP_AND_STORAGE = Object.freeze([
  'routes',
  'middleware',
  'compat',
  'openapi',
  'ui',
  'cache',
  'durable',
  'keys',
  'images',
  'embeds',
  'metrics',
  'app.ts',
  'app-env.ts',
  'index.ts',
  'bindings.ts',
])

/**
 * What each folder of `src/` may import from `src/` (`*`: anything not listed in `deny`) and which
 * packages it may import. The pipeline is pure; `src/gpu` is ONNX Runtime behind the pipeline's
 * interfaces; engines and the backend never reach up into HTTP, cache, storage or keys.
 */
export const LAYER_RULES: Readonly<
  Record<
    string,
    { allow?: readonly string[]; deny?: readonly string[]; packages?: readonly string[] }
  >
> = Object.freeze({
  pipeline: { allow: ['pipeline'], packages: ['fflate'] },
  gpu: {
    allow: ['gpu', 'pipeline'],
    packages: ['onnxruntime-common', 'onnxruntime-node', 'onnxruntime-web'],
  },
  engine: { deny: HTTP_AND_STORAGE },
  backend: { deny: HTTP_AND_STORAGE },
})

const SOURCE_DIRS = ['src', 'scripts', 'bin', 'bench', 'test']
const EXTENSIONS = /\.(ts|mts|mjs|cjs|js)$/
const IMPORT =
  /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|(?:^|[^\w.])import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm

/** The package a bare specifier names (`@scope/name` or `name`), or undefined for other kinds. */
function packageOf(spec: string): string | undefined {
  if (spec.startsWith('.') || spec.startsWith('/')) return undefined
  if (spec.startsWith('node:') || spec.startsWith('cloudflare:')) return undefined
  if (builtinModules.includes(spec.split('/')[0])) return undefined
  const parts = spec.split('/')
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]
}

function* files(dir: string): Generator<string> {
  let entries: string[]
  try {
    entries = readdirSync(dir)
  } catch {
    return
  }
  for (const e of entries) {
    if (e === 'node_modules' || e.startsWith('.')) continue
    const p = join(dir, e)
    if (statSync(p).isDirectory()) yield* files(p)
    else if (EXTENSIONS.test(e) && !e.endsWith('.d.ts')) yield p
  }
}

/** The top-level entry of `src/` a path lies in (`pipeline`, `app.ts`, …), or undefined. */
function layerOf(root: string, path: string): string | undefined {
  const rel = relative(join(root, 'src'), path)
  if (rel.startsWith('..')) return undefined
  return rel.split(sep)[0]
}

/** Every violation under `root`, as `file: message` lines. */
export function checkImports(root: string): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
  const declared = new Set([
    ...Object.keys(pkg.dependencies ?? {}),
    ...Object.keys(pkg.devDependencies ?? {}),
  ])
  const problems: string[] = []
  for (const top of SOURCE_DIRS) {
    for (const file of files(join(root, top))) {
      const text = readFileSync(file, 'utf8')
      const from = layerOf(root, file)
      const rule = from ? LAYER_RULES[from] : undefined
      const where = relative(root, file)
      for (const m of text.matchAll(IMPORT)) {
        const spec = m[1] ?? m[2] ?? m[3]
        const name = packageOf(spec)
        if (name) {
          if (!declared.has(name)) problems.push(`${where}: imports undeclared package ${name}`)
          if (rule?.packages && !rule.packages.includes(name))
            problems.push(`${where}: src/${from} may not import ${name}`)
          continue
        }
        if (!spec.startsWith('.') || !rule) continue
        const to = layerOf(root, resolve(dirname(file), spec))
        if (!to || to === from) continue
        const allowed = rule.allow ? rule.allow.includes(to) : !rule.deny?.includes(to)
        if (!allowed) problems.push(`${where}: src/${from} may not import src/${to} (${spec})`)
      }
    }
  }
  return problems
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const root = resolve(process.argv[2] ?? '.')
  const problems = checkImports(root)
  for (const p of problems) console.error(p)
  if (problems.length) process.exit(1)
  console.log('imports: every package declared, every src/ import within its layer')
}
