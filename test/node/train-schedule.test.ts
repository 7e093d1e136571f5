/** The shared SD training schedule is bit-exact with torch (golden train_schedule.json). */
import { describe, expect, it } from 'vitest'
import { alphasCumprod, betasFromConfig, linspaceF32 } from '../../src/pipeline/schedulers/common'
import { goldenJson } from './golden'

const ref = goldenJson('schedulers/train_schedule.json')
const f32 = (xs: number[]) => Float32Array.from(xs)

describe('training noise schedule', () => {
  const config = {
    num_train_timesteps: 1000,
    beta_start: 0.00085,
    beta_end: 0.012,
    beta_schedule: 'scaled_linear',
  }

  it('sqrt_betas equal torch.linspace exactly', () => {
    expect(linspaceF32(Math.sqrt(0.00085), Math.sqrt(0.012), 1000)).toEqual(f32(ref.sqrt_betas))
  })
  it('betas and alphas_cumprod equal torch exactly', () => {
    const betas = betasFromConfig(config)
    expect(betas).toEqual(f32(ref.betas))
    expect(alphasCumprod(betas)).toEqual(f32(ref.alphas_cumprod))
  })
})
