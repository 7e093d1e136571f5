/**
 * The import rules of `scripts/check-imports.ts` hold for this tree, and the checker itself
 * catches each kind of violation (on a small tree written for the purpose).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { checkImports } from '../../scripts/check-imports'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

describe('import layout', () => {
  it('declares every imported package and keeps src/ imports within their layers', () => {
    expect(checkImports(ROOT)).toEqual([])
  })

  const tmp = mkdtempSync(join(tmpdir(), 'layout-'))
  afterAll(() => rmSync(tmp, { recursive: true, force: true }))
  const write = (path: string, text: string) => {
    mkdirSync(dirname(join(tmp, path)), { recursive: true })
    writeFileSync(join(tmp, path), text)
  }

  it('reports a pipeline import leaving the pipeline, gpu reaching routes, engines reaching storage, and undeclared packages', () => {
    write('package.json', JSON.stringify({ dependencies: { hono: '1' } }))
    write('src/pipeline/a.ts', "import type { T } from '../gpu/tensor'\nimport { x } from './b'\n")
    write('src/pipeline/b.ts', "import { zlibSync } from 'fflate'\nexport const x = 1\n")
    write('src/gpu/c.ts', "import {\n  route,\n} from '../routes/images'\n")
    write('src/engine/d.ts', "export { lookup } from '../cache/image-store'\n")
    write('src/backend/e.ts', "const m = await import('../durable/coordinator')\n")
    write('src/routes/f.ts', "import { Hono } from 'hono'\nimport { z } from 'zod'\n")
    expect(checkImports(tmp).sort()).toEqual(
      [
        'src/backend/e.ts: src/backend may not import src/durable (../durable/coordinator)',
        'src/engine/d.ts: src/engine may not import src/cache (../cache/image-store)',
        'src/gpu/c.ts: src/gpu may not import src/routes (../routes/images)',
        'src/pipeline/a.ts: src/pipeline may not import src/gpu (../gpu/tensor)',
        'src/pipeline/b.ts: imports undeclared package fflate',
        'src/routes/f.ts: imports undeclared package zod',
      ].sort(),
    )
  })
})
