import type { CoreRequest, CoreResponse, CoreStatus } from './limiter.ts';
import type { Entry, Override, Unit } from './rules.ts';
import type { RateLimitRequest__Output } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitRequest.ts';
import type { RateLimitResponse } from '../../../proto/generated/envoy/service/ratelimit/v3/RateLimitResponse.ts';

const OVERRIDE_UNITS: Readonly<Record<string, Unit>> = {
  SECOND: 'SECOND',
  MINUTE: 'MINUTE',
  HOUR: 'HOUR',
  DAY: 'DAY',
  MONTH: 'MONTH',
  YEAR: 'YEAR',
};
/** envoy.type.v3.RateLimitUnit numbers (no WEEK). */
const OVERRIDE_UNIT_NUMBERS: readonly (Unit | undefined)[] = [
  undefined,
  'SECOND',
  'MINUTE',
  'HOUR',
  'DAY',
  'MONTH',
  'YEAR',
];

/**
 * An override with unit UNKNOWN cannot be counted (the reference panics on it); it is ignored and
 * the descriptor is matched against the configuration instead.
 */
function override(
  o: { requests_per_unit: number; unit: string | number } | null | undefined,
): Override | undefined {
  if (!o) return undefined;
  const unit = typeof o.unit === 'number' ? OVERRIDE_UNIT_NUMBERS[o.unit] : OVERRIDE_UNITS[o.unit];
  return unit ? { requestsPerUnit: o.requests_per_unit, unit } : undefined;
}

/** gRPC request (proto-loader object, defaults on) to the core request. */
export function fromGrpc(r: RateLimitRequest__Output): CoreRequest {
  return {
    domain: r.domain,
    hitsAddend: r.hits_addend,
    descriptors: r.descriptors.map((d) => ({
      entries: d.entries.map((e) => ({ key: e.key, value: e.value })),
      override: override(d.limit),
      hitsAddend: d.hits_addend ? Number(d.hits_addend.value) : undefined,
    })),
  };
}

function status(s: CoreStatus): NonNullable<RateLimitResponse['statuses']>[number] {
  return {
    code: s.code,
    current_limit: s.currentLimit
      ? {
          name: s.currentLimit.name,
          requests_per_unit: s.currentLimit.requestsPerUnit,
          unit: s.currentLimit.unit,
        }
      : null,
    limit_remaining: s.limitRemaining,
    duration_until_reset:
      s.durationUntilReset === undefined ? null : { seconds: s.durationUntilReset, nanos: 0 },
  };
}

// protobufjs defines the well-known Struct types with camelCase fields, whatever keepCase says.
type StructValue =
  | { nullValue: 'NULL_VALUE' }
  | { numberValue: number }
  | { stringValue: string }
  | { boolValue: boolean }
  | { structValue: { fields: Record<string, StructValue> } }
  | { listValue: { values: StructValue[] } };

function structValue(v: unknown): StructValue {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(structValue) } };
  return { structValue: toStruct(v as Record<string, unknown>) };
}

/** A plain object as a google.protobuf.Struct in proto-loader's object form. */
export function toStruct(o: Record<string, unknown>): { fields: Record<string, StructValue> } {
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, structValue(v)])) };
}

/** Core response to the gRPC response object. */
export function toGrpc(r: CoreResponse): RateLimitResponse {
  return {
    overall_code: r.overallCode,
    statuses: r.statuses.map(status),
    response_headers_to_add: r.responseHeaders.map((h) => ({ key: h.key, value: h.value })),
    ...(r.dynamicMetadata ? { dynamic_metadata: toStruct(r.dynamicMetadata) } : {}),
  };
}

/** Core response as proto3 JSON (camelCase, default values omitted), as the reference's /json. */
export function toJson(r: CoreResponse): Record<string, unknown> {
  const out: Record<string, unknown> = { overallCode: r.overallCode };
  if (r.statuses.length > 0)
    out['statuses'] = r.statuses.map((s) => {
      const o: Record<string, unknown> = { code: s.code };
      if (s.currentLimit) {
        const cl: Record<string, unknown> = {};
        if (s.currentLimit.name) cl['name'] = s.currentLimit.name;
        if (s.currentLimit.requestsPerUnit) cl['requestsPerUnit'] = s.currentLimit.requestsPerUnit;
        cl['unit'] = s.currentLimit.unit;
        o['currentLimit'] = cl;
      }
      if (s.limitRemaining) o['limitRemaining'] = s.limitRemaining;
      if (s.durationUntilReset !== undefined) o['durationUntilReset'] = `${s.durationUntilReset}s`;
      return o;
    });
  if (r.responseHeaders.length > 0)
    out['responseHeadersToAdd'] = r.responseHeaders.map((h) => ({ key: h.key, value: h.value }));
  if (r.dynamicMetadata) out['dynamicMetadata'] = r.dynamicMetadata;
  return out;
}

/** A /json body that is not a valid proto3-JSON RateLimitRequest. */
export class JsonRequestError extends Error {
  override readonly name = 'JsonRequestError';
}

const bad = (msg: string): never => {
  throw new JsonRequestError(msg);
};

function obj(v: unknown, where: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) bad(`${where}: expected an object`);
  return v as Record<string, unknown>;
}
function pick(
  o: Record<string, unknown>,
  allowed: Readonly<Record<string, string>>,
  where: string,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) {
    const name = allowed[k];
    if (!name) bad(`${where}: unknown field '${k}'`);
    if (v !== null) out[name as string] = v;
  }
  return out;
}
function uint(v: unknown, where: string, max: number): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max)
    bad(`${where}: expected an unsigned integer`);
  return n as number;
}
function string(v: unknown, where: string): string {
  if (typeof v !== 'string') bad(`${where}: expected a string`);
  return v as string;
}

/** Parses a proto3-JSON RateLimitRequest (camelCase or original field names); throws JsonRequestError. */
export function fromJson(body: unknown): CoreRequest {
  const r = pick(
    obj(body, 'request'),
    { domain: 'domain', descriptors: 'descriptors', hitsAddend: 'hitsAddend', hits_addend: 'hitsAddend' },
    'request',
  );
  const descriptors = r['descriptors'] ?? [];
  if (!Array.isArray(descriptors)) bad('descriptors: expected a list');
  return {
    domain: r['domain'] === undefined ? '' : string(r['domain'], 'domain'),
    hitsAddend: r['hitsAddend'] === undefined ? 0 : uint(r['hitsAddend'], 'hitsAddend', 4294967295),
    descriptors: (descriptors as unknown[]).map((raw, i) => {
      const where = `descriptors[${i}]`;
      const d = pick(
        obj(raw, where),
        { entries: 'entries', limit: 'limit', hitsAddend: 'hitsAddend', hits_addend: 'hitsAddend' },
        where,
      );
      const entries = d['entries'] ?? [];
      if (!Array.isArray(entries)) bad(`${where}.entries: expected a list`);
      let ov: Override | undefined;
      if (d['limit'] !== undefined) {
        const l = pick(
          obj(d['limit'], `${where}.limit`),
          { requestsPerUnit: 'rpu', requests_per_unit: 'rpu', unit: 'unit' },
          `${where}.limit`,
        );
        const u = l['unit'];
        const unitName =
          u === undefined
            ? 'UNKNOWN'
            : typeof u === 'number'
              ? (OVERRIDE_UNIT_NUMBERS[u] ?? 'UNKNOWN')
              : string(u, `${where}.limit.unit`);
        if (unitName !== 'UNKNOWN' && !OVERRIDE_UNITS[unitName]) bad(`${where}.limit.unit: invalid value`);
        ov = override({
          requests_per_unit:
            l['rpu'] === undefined ? 0 : uint(l['rpu'], `${where}.limit.requestsPerUnit`, 4294967295),
          unit: unitName,
        });
      }
      return {
        entries: (entries as unknown[]).map((e, j): Entry => {
          const ew = `${where}.entries[${j}]`;
          const en = pick(obj(e, ew), { key: 'key', value: 'value' }, ew);
          return {
            key: en['key'] === undefined ? '' : string(en['key'], `${ew}.key`),
            value: en['value'] === undefined ? '' : string(en['value'], `${ew}.value`),
          };
        }),
        override: ov,
        hitsAddend:
          d['hitsAddend'] === undefined
            ? undefined
            : uint(d['hitsAddend'], `${where}.hitsAddend`, Number.MAX_SAFE_INTEGER),
      };
    }),
  };
}
