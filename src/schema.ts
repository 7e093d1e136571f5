/**
 * @module
 * Request bodies are declared once, as zod schemas: the same schema validates the body and
 * describes it in the OpenAPI document. `parseOrThrow` turns zod's issues into the API's one
 * validation error, a 422 `validation-error` problem listing each field.
 *
 * @example
 * const Body = z.strictObject({ prompts: z.array(z.string()).min(1) })
 * const body = parseOrThrow(Body, await c.req.json())
 */
import type { z } from 'zod'
import { throwFieldErrors, type FieldError } from './problem'

/** Parses `value` with `schema`; throws a 422 problem naming every invalid field. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value)
  if (result.success) return result.data
  throwFieldErrors(fieldErrors(result.error.issues))
}

/** Maps zod issues to field errors; unknown keys become one `unknown field` error each. */
export function fieldErrors(issues: readonly z.core.$ZodIssue[]): FieldError[] {
  return issues.flatMap((issue): FieldError[] => {
    const at = issue.path.map(String)
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => ({ field: [...at, k].join('.'), detail: 'unknown field' }))
    }
    return [{ field: at.length ? at.join('.') : '(body)', detail: issue.message }]
  })
}
