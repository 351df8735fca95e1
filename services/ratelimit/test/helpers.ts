import { readFileSync, readdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRuleSet, type RuleSet } from '../src/rules.ts';
import type { CoreSettings } from '../src/limiter.ts';

/** Directory of the test fixtures. */
export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** Loads good fixtures by file name into one rule set. */
export function goodRules(names: readonly string[], mergeDomains = false): RuleSet {
  return buildRuleSet(
    names.map((n) => ({ name: n, content: readFileSync(join(FIXTURES, 'good', n), 'utf8') })),
    { mergeDomains },
  );
}

/** Every good fixture. */
export function allGoodNames(): string[] {
  return readdirSync(join(FIXTURES, 'good')).filter((n) => !n.startsWith('merge_'));
}

/** Default core settings, overridable. */
export function settings(over: Partial<CoreSettings> = {}): CoreSettings {
  return {
    cacheKeyPrefix: '',
    nearLimitRatio: 0.8,
    globalShadowMode: false,
    globalQuotaMode: false,
    responseHeaders: {
      enabled: false,
      limit: 'RateLimit-Limit',
      remaining: 'RateLimit-Remaining',
      reset: 'RateLimit-Reset',
    },
    dynamicMetadata: false,
    expirationJitterMaxSeconds: 0,
    ...over,
  };
}
