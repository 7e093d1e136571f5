/**
 * @module
 * RFC 9457 problem details: the one error shape of the API. Domain code and middleware throw a
 * `ProblemError`; the app's error handler renders it as `application/problem+json`.
 */
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** Prefix of every problem `type`; the slug after it is the stable identifier clients match on. */
export const PROBLEM_TYPE_BASE = 'https://edge-tti.dev/problems/'

/** Every problem this API emits: slug → HTTP status and the fixed, human-readable title. */
export const PROBLEM_TYPES = Object.freeze({
  'malformed-request': { status: 400, title: 'The request body is not valid JSON' },
  unauthorized: { status: 401, title: 'A valid API key is required' },
  'key-revoked': { status: 403, title: 'The API key has been revoked' },
  'insufficient-scope': { status: 403, title: 'The API key lacks the scope this endpoint needs' },
  'embed-signature-invalid': { status: 403, title: 'The embed URL is not validly signed' },
  'embed-origin-not-allowed': {
    status: 403,
    title: "The embed URL is not allowed on the requesting page's origin",
  },
  'not-found': { status: 404, title: 'Not found' },
  'not-acceptable': { status: 406, title: 'No acceptable representation' },
  'generation-cancelled': {
    status: 409,
    title: 'The generation was cancelled (DELETE /v1/jobs/{id})',
  },
  'job-not-cancellable': {
    status: 409,
    title: 'The job has finished, or another request waits on its generation',
  },
  'embed-expired': { status: 410, title: 'The embed URL has expired' },
  'payload-too-large': { status: 413, title: 'The request body is too large' },
  'image-too-large': { status: 413, title: 'A picture is larger than the upload limit' },
  'unsupported-media-type': { status: 415, title: 'The request body must be application/json' },
  'validation-error': { status: 422, title: 'The request has invalid fields' },
  'prompt-too-long': { status: 422, title: "The prompt exceeds the model's token window" },
  'image-too-many-pixels': { status: 422, title: 'A picture has more pixels than the limit' },
  'invalid-image': { status: 422, title: 'A picture is not a PNG or JPEG that decodes' },
  'image-not-found': { status: 422, title: 'A picture reference names no stored image' },
  'generation-rejected': {
    status: 422,
    title: 'The engine refused the request parameters',
  },
  'rate-limited': { status: 429, title: 'Rate limit exceeded' },
  'internal-error': { status: 500, title: 'Internal server error' },
  'generation-non-finite': {
    status: 500,
    title: 'The model produced NaN or infinite values for this request; retrying will not help',
  },
  'generation-failed': { status: 503, title: 'Image generation failed; retry later' },
  'backend-error': { status: 502, title: 'The GPU backend failed or sent an invalid response' },
  'backend-unavailable': { status: 503, title: 'No GPU backend is reachable; retry later' },
  'engine-overloaded': {
    status: 503,
    title: 'Too many generations are waiting; retry after the Retry-After seconds',
  },
  'backend-timeout': { status: 504, title: 'The GPU backend did not finish in time' },
  'admin-disabled': { status: 503, title: 'Admin endpoints are disabled (no ADMIN_TOKEN set)' },
} as const satisfies Record<string, { status: ContentfulStatusCode; title: string }>)

/** A stable problem identifier, e.g. `validation-error`. */
export type ProblemSlug = keyof typeof PROBLEM_TYPES

/** Optional parts of a problem: detail text, extension members and response headers. */
export interface ProblemInit {
  detail?: string
  /** Extension members merged into the body (e.g. `errors`, `limit`). */
  extensions?: Record<string, unknown>
  headers?: Record<string, string>
}

/** An HTTP error carrying an RFC 9457 problem; `getResponse()` renders problem+json. */
export class ProblemError extends HTTPException {
  /** The problem's slug (the last segment of its `type`). */
  readonly slug: ProblemSlug
  /** Extension members of the body. */
  readonly extensions: Record<string, unknown>
  /** Headers to send with the problem (e.g. `Retry-After`). */
  readonly headers: Record<string, string>
  /** The occurrence-specific explanation, when there is more to say than the title. */
  readonly detail: string | undefined

  constructor(slug: ProblemSlug, init: ProblemInit = {}) {
    const { status, title } = PROBLEM_TYPES[slug]
    super(status, { message: init.detail ?? title })
    this.slug = slug
    this.detail = init.detail
    this.extensions = init.extensions ?? {}
    this.headers = init.headers ?? {}
  }

  /** The problem's JSON body (for a problem carried inside another answer). */
  body(): ReturnType<typeof problemBody> {
    return problemBody(this.slug, { detail: this.detail, extensions: this.extensions })
  }

  /** Renders the problem; `instance` is the request path when known. */
  override getResponse(instance?: string): Response {
    return problemResponse(this.slug, {
      detail: this.detail,
      extensions: { ...(instance ? { instance } : {}), ...this.extensions },
      headers: this.headers,
    })
  }
}

/** The JSON body of a problem (`problemResponse`'s, and where a problem travels inside JSON). */
export function problemBody(slug: ProblemSlug, init: Omit<ProblemInit, 'headers'> = {}) {
  const { status, title } = PROBLEM_TYPES[slug]
  return {
    type: PROBLEM_TYPE_BASE + slug,
    title,
    status,
    ...(init.detail ? { detail: init.detail } : {}),
    ...init.extensions,
  }
}

/** Builds a problem+json response for `slug`. */
export function problemResponse(slug: ProblemSlug, init: ProblemInit = {}): Response {
  const body = problemBody(slug, init)
  const { status } = body
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/problem+json', ...init.headers },
  })
}

/** HTTP reason phrases for statuses a bare `HTTPException` may carry (RFC 9110 §15). */
const REASON_PHRASES: Readonly<Record<number, string>> = Object.freeze({
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  406: 'Not Acceptable',
  408: 'Request Timeout',
  409: 'Conflict',
  411: 'Length Required',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
})

/** A problem with no type of ours (`about:blank`, RFC 9457 §4.2.1): title = the reason phrase. */
export function blankProblem(status: number, detail: string, instance?: string): Response {
  const body = {
    type: 'about:blank',
    title: REASON_PHRASES[status] ?? `HTTP ${status}`,
    status,
    ...(detail ? { detail } : {}),
    ...(instance ? { instance } : {}),
  }
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/problem+json' },
  })
}

/** One field error, as listed in a `validation-error` problem's `errors`. */
export interface FieldError {
  field: string
  detail: string
}

/** Throws 422 `validation-error` listing `errors`, each named in `detail`. */
export function throwFieldErrors(errors: FieldError[]): never {
  throw new ProblemError('validation-error', {
    detail: errors.map((e) => `${e.field}: ${e.detail}`).join('; '),
    extensions: { errors },
  })
}
