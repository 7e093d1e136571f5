/**
 * The webhook signing and target rules (`src/webhooks/webhooks.ts`), checked against the
 * `standardwebhooks` package (the specification's own library) as an independent verifier.
 */
import { Webhook } from 'standardwebhooks'
import { describe, expect, it } from 'vitest'
import {
  generateWebhookSecret,
  webhookBackoffSeconds,
  webhookHeaders,
  webhookTargetProblem,
} from '../../src/webhooks/webhooks'

describe('signatures', () => {
  it('verify with the standardwebhooks package, and fail for another body, secret or time', async () => {
    const secret = generateWebhookSecret()
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/)
    const message = { id: 'msg_1', body: '{"type":"image.job.succeeded"}' }
    const now = Math.floor(Date.now() / 1000)
    const headers = await webhookHeaders(secret, message, now)
    expect(new Webhook(secret).verify(message.body, headers)).toEqual({
      type: 'image.job.succeeded',
    })
    expect(() => new Webhook(secret).verify(message.body + ' ', headers)).toThrow()
    expect(() => new Webhook(generateWebhookSecret()).verify(message.body, headers)).toThrow()
    // Receivers refuse stale deliveries (the library's tolerance is 5 minutes).
    const stale = await webhookHeaders(secret, message, now - 600)
    expect(() => new Webhook(secret).verify(message.body, stale)).toThrow()
  })

  it('doubles the retry delay from the base, up to an hour', () => {
    expect([1, 2, 3, 4].map((a) => webhookBackoffSeconds(a, 10))).toEqual([10, 20, 40, 80])
    expect(webhookBackoffSeconds(20, 10)).toBe(3600)
  })
})

describe('targets', () => {
  it('in production: https with a public host only', () => {
    for (const ok of [
      'https://example.com/hook',
      'https://203.0.113.9/x',
      'https://[2001:db8::1]/',
    ])
      expect(webhookTargetProblem(ok, false)).toBeUndefined()
    const refused: [string, string][] = [
      ['http://example.com/hook', 'must be an https URL'],
      ['not a url', 'must be an absolute http(s) URL'],
      ['https://user:pw@example.com/', 'must not carry credentials'],
    ]
    for (const host of [
      'localhost',
      'api.localhost',
      'printer.local',
      'db.internal',
      '127.0.0.1',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '0.0.0.0',
      '[::1]',
      '[::]',
      '[fd00::1]',
      '[fe80::1]',
      '[::ffff:127.0.0.1]',
      '[::ffff:10.0.0.1]',
    ])
      refused.push([
        `https://${host}/hook`,
        'must not point at a private, loopback or link-local address',
      ])
    for (const [url, problem] of refused) expect(webhookTargetProblem(url, false)).toBe(problem)
    // Public neighbours of the private ranges stay allowed.
    for (const ok of ['https://172.32.0.1/', 'https://11.0.0.1/', 'https://[::ffff:8.8.8.8]/'])
      expect(webhookTargetProblem(ok, false)).toBeUndefined()
  })

  it('where private targets are allowed (local dev): http and loopback too, other schemes never', () => {
    expect(webhookTargetProblem('http://127.0.0.1:9000/hooks', true)).toBeUndefined()
    expect(webhookTargetProblem('ftp://127.0.0.1/', true)).toBe('must be an http(s) URL')
  })
})
