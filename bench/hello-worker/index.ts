/**
 * The baseline of `npm run bench:edge`: a bare Hono worker answering a fixed 4.7 KB body (about
 * a generated 64x64 PNG's size), on the same runtime as the API. Nothing else runs per request,
 * so the API's throughput divided by this one's is what its own work costs.
 */
import { Hono } from 'hono'

const BODY = new Uint8Array(4_700).fill(0x61)

const app = new Hono()
app.get('/', (c) => c.body(BODY, 200, { 'Content-Type': 'application/octet-stream' }))

export default app
