/**
 * @module
 * The scheduler registry: diffusers class names and the usual short aliases, resolved in one
 * place. `createScheduler('euler_a', config)` is diffusers' `EulerAncestralDiscreteScheduler.from_config(config)`.
 */
import { SchedulerError } from './common'
import type { Scheduler, SchedulerConfig } from './types'
import { DDIMScheduler } from './ddim'
import { DDPMScheduler } from './ddpm'
import { PNDMScheduler } from './pndm'
import { LCMScheduler } from './lcm'
import { EulerDiscreteScheduler } from './euler'
import { EulerAncestralDiscreteScheduler } from './euler-ancestral'
import { HeunDiscreteScheduler } from './heun'
import { DPMSolverMultistepScheduler } from './dpm-solver-multistep'
import { UniPCMultistepScheduler } from './unipc'
import { LMSDiscreteScheduler } from './lms'

export type { Scheduler, SchedulerConfig, StepOptions, StepOutput, NoiseGenerator } from './types'
export { SchedulerError } from './common'

type SchedulerClass = new (config?: SchedulerConfig) => Scheduler

/** Every scheduler class by its diffusers `_class_name`. */
export const SCHEDULER_CLASSES: Readonly<Record<string, SchedulerClass>> = Object.freeze({
  DDIMScheduler,
  DDPMScheduler,
  PNDMScheduler,
  LCMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  HeunDiscreteScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  LMSDiscreteScheduler,
})

/** Short names users type (A1111 / ComfyUI conventions) → class name plus config overrides. */
export const SCHEDULER_ALIASES: Readonly<
  Record<string, { className: string; overrides?: SchedulerConfig }>
> = Object.freeze({
  ddim: { className: 'DDIMScheduler' },
  ddpm: { className: 'DDPMScheduler' },
  pndm: { className: 'PNDMScheduler', overrides: { skip_prk_steps: true } },
  plms: { className: 'PNDMScheduler', overrides: { skip_prk_steps: true } },
  lcm: { className: 'LCMScheduler' },
  euler: { className: 'EulerDiscreteScheduler' },
  euler_a: { className: 'EulerAncestralDiscreteScheduler' },
  euler_ancestral: { className: 'EulerAncestralDiscreteScheduler' },
  heun: { className: 'HeunDiscreteScheduler' },
  lms: { className: 'LMSDiscreteScheduler' },
  dpmpp_2m: {
    className: 'DPMSolverMultistepScheduler',
    overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: false },
  },
  dpmpp_2m_karras: {
    className: 'DPMSolverMultistepScheduler',
    overrides: { algorithm_type: 'dpmsolver++', solver_order: 2, use_karras_sigmas: true },
  },
  unipc: { className: 'UniPCMultistepScheduler' },
})

/** The names `createScheduler` accepts: aliases first, then class names. */
export const SCHEDULER_NAMES: readonly string[] = Object.freeze([
  ...Object.keys(SCHEDULER_ALIASES),
  ...Object.keys(SCHEDULER_CLASSES),
])

/**
 * Builds a scheduler from a name (class name or alias) and a diffusers config (usually the
 * model's `scheduler_config.json`), with `overrides` merged last. Throws on an unknown name.
 */
export function createScheduler(
  name: string,
  config: SchedulerConfig = {},
  overrides: SchedulerConfig = {},
): Scheduler {
  const alias = SCHEDULER_ALIASES[name.toLowerCase()]
  const className = alias?.className ?? name
  const Cls = SCHEDULER_CLASSES[className]
  if (!Cls) {
    throw new SchedulerError(
      `unknown scheduler ${JSON.stringify(name)}; expected one of ${SCHEDULER_NAMES.join(', ')}`,
    )
  }
  return new Cls({ ...config, ...alias?.overrides, ...overrides })
}
