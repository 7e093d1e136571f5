/**
 * What the browser and WebGPU tests need, checked the same way everywhere: Debian's Chromium,
 * SwiftShader's Vulkan driver (shipped with it) and the Vulkan loader (`libvulkan1`). Where one
 * is missing a test skips with the reason, unless `REQUIRE_BROWSER=1` (set by `.ci/run`): then
 * it fails, so a suite cannot pass without running what it claims.
 */
import { existsSync } from 'node:fs'

/** Paths of the runtimes. */
export const RUNTIME_PATHS = Object.freeze({
  chromium: '/usr/bin/chromium',
  swiftshader: '/usr/lib/chromium/vk_swiftshader_icd.json',
  vulkanLoader: '/usr/lib/x86_64-linux-gnu/libvulkan.so.1',
})

const INSTALL = 'apt-get install chromium libvulkan1'

/** Why `needs` cannot run here, or undefined when it can. */
function missing(needs: readonly (keyof typeof RUNTIME_PATHS)[]): string | undefined {
  const absent = needs.filter((n) => !existsSync(RUNTIME_PATHS[n]))
  return absent.length
    ? `missing ${absent.map((n) => RUNTIME_PATHS[n]).join(', ')} (${INSTALL})`
    : undefined
}

/**
 * Whether a test file with these needs should skip. Warns once with the reason; throws instead
 * when `REQUIRE_BROWSER=1`.
 */
export function skipWithout(test: string, needs: readonly (keyof typeof RUNTIME_PATHS)[]): boolean {
  const why = missing(needs)
  if (!why) return false
  if (process.env.REQUIRE_BROWSER === '1')
    throw new Error(`${test} cannot run: ${why}; REQUIRE_BROWSER=1 forbids skipping it`)
  console.warn(`${test} skipped: ${why}`)
  return true
}
