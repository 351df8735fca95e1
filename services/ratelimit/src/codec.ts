/**
 * Direct protobuf codec for ShouldRateLimit: bytes to CoreRequest and CoreResponse to bytes, with no
 * intermediate proto-loader objects (the generic path decodes to a message, converts it to a plain
 * object with defaults, and the reverse for the answer: three object graphs per call).
 *
 * Decoding follows protobufjs 7 (what proto-loader uses): last value wins for singular fields, an
 * embedded message replaces the previous one, a known field number is read with its declared type,
 * unknown fields are skipped, out-of-range reads throw. Encoding writes the bytes protobufjs writes
 * for the object `toGrpc` builds (fields by number, zero values included); answers it does not
 * cover (dynamic metadata, values outside uint32) return undefined and go through protobufjs.
 */
import type { CoreRequest, CoreResponse } from './limiter.ts';
import type { Entry, Override, Unit } from './rules.ts';

/** envoy.type.v3.RateLimitUnit numbers (no WEEK), as wire.ts maps them. */
const OVERRIDE_UNITS: readonly (Unit | undefined)[] = [
  undefined,
  'SECOND',
  'MINUTE',
  'HOUR',
  'DAY',
  'MONTH',
  'YEAR',
];

/** RateLimitResponse.RateLimit.Unit numbers. */
const RESPONSE_UNIT: Readonly<Record<Unit, number>> = {
  SECOND: 1,
  MINUTE: 2,
  HOUR: 3,
  DAY: 4,
  MONTH: 5,
  YEAR: 6,
  WEEK: 7,
};

/** protobufjs util.recursionLimit. */
const RECURSION_LIMIT = 100;

class Reader {
  pos = 0;
  readonly buf: Buffer;
  len: number;
  constructor(buf: Buffer, len: number) {
    this.buf = buf;
    this.len = len;
  }

  #range(): never {
    throw new RangeError(`index out of range: ${this.pos} + 1 > ${this.len}`);
  }

  /** protobufjs Reader#uint32, step for step: a varint truncated to its low 32 bits. */
  uint32(): number {
    const b = this.buf;
    if (this.len - this.pos < 5) {
      if (this.pos >= this.len) this.#range();
      if ((b[this.pos] as number) >= 128) {
        let v = 0;
        for (let i = 0; i < 4; i++) {
          if (this.pos >= this.len) this.#range();
          const byte = b[this.pos++] as number;
          v = (v | ((byte & 127) << (i * 7))) >>> 0;
          if (byte < 128) return v;
        }
        this.#range();
      }
    }
    let byte = b[this.pos++] as number;
    let value = (byte & 127) >>> 0;
    if (byte < 128) return value;
    byte = b[this.pos++] as number;
    value = (value | ((byte & 127) << 7)) >>> 0;
    if (byte < 128) return value;
    byte = b[this.pos++] as number;
    value = (value | ((byte & 127) << 14)) >>> 0;
    if (byte < 128) return value;
    byte = b[this.pos++] as number;
    value = (value | ((byte & 127) << 21)) >>> 0;
    if (byte < 128) return value;
    byte = b[this.pos++] as number;
    value = (value | ((byte & 15) << 28)) >>> 0;
    if (byte < 128) return value;
    if ((this.pos += 5) > this.len) {
      this.pos = this.len;
      this.#range();
    }
    return value;
  }

  /** protobufjs readLongVarint with longs: Number, unsigned. */
  uint64(): number {
    const b = this.buf;
    let lo = 0;
    let hi = 0;
    let i = 0;
    if (this.len - this.pos > 4) {
      for (; i < 4; ++i) {
        const byte = b[this.pos++] as number;
        lo = (lo | ((byte & 127) << (i * 7))) >>> 0;
        if (byte < 128) return lo;
      }
      const byte = b[this.pos++] as number;
      lo = (lo | ((byte & 127) << 28)) >>> 0;
      hi = (hi | ((byte & 127) >> 4)) >>> 0;
      if (byte < 128) return lo + hi * 4294967296;
      i = 0;
    } else {
      for (; i < 3; ++i) {
        if (this.pos >= this.len) this.#range();
        const byte = b[this.pos++] as number;
        lo = (lo | ((byte & 127) << (i * 7))) >>> 0;
        if (byte < 128) return lo;
      }
      lo = (lo | (((b[this.pos++] ?? 0) & 127) << (i * 7))) >>> 0;
      return lo;
    }
    if (this.len - this.pos > 4) {
      for (; i < 5; ++i) {
        const byte = b[this.pos++] as number;
        hi = (hi | ((byte & 127) << (i * 7 + 3))) >>> 0;
        if (byte < 128) return lo + hi * 4294967296;
      }
    } else {
      for (; i < 5; ++i) {
        if (this.pos >= this.len) this.#range();
        const byte = b[this.pos++] as number;
        hi = (hi | ((byte & 127) << (i * 7 + 3))) >>> 0;
        if (byte < 128) return lo + hi * 4294967296;
      }
    }
    throw new Error('invalid varint encoding');
  }

  /** protobufjs Reader#skip() without a length: one varint, any length. */
  skipVarint(): void {
    do {
      if (this.pos >= this.len) this.#range();
    } while ((this.buf[this.pos++] as number) & 128);
  }

  /** Start and end of a length-delimited field. */
  bytes(): number {
    const n = this.uint32();
    const end = this.pos + n;
    if (end > this.len) this.#range();
    return end;
  }

  /** protobufjs BufferReader#string: a length past the message's end is clamped to it. */
  string(): string {
    const n = this.uint32();
    const start = this.pos;
    const end = Math.min(start + n, this.len);
    this.pos = end;
    return start === end ? '' : this.buf.toString('utf8', start, end);
  }

  skip(n: number): void {
    if (this.pos + n > this.len) this.#range();
    this.pos += n;
  }

  /** protobufjs Reader#skipType, with its nesting limit (groups inside groups). */
  skipType(wireType: number, depth: number): void {
    if (depth > RECURSION_LIMIT) throw new Error('maximum nesting depth exceeded');
    switch (wireType) {
      case 0:
        this.skipVarint();
        break;
      case 1:
        this.skip(8);
        break;
      case 2:
        this.pos = this.bytes();
        break;
      case 3:
        for (;;) {
          const t = this.uint32() & 7;
          if (t === 4) break;
          this.skipType(t, depth + 1);
        }
        break;
      case 5:
        this.skip(4);
        break;
      default:
        throw new Error(`invalid wire type ${wireType} at offset ${this.pos}`);
    }
  }

  /** Enters a length-delimited message: returns the outer limit to restore. */
  enter(): number {
    const end = this.bytes();
    const outer = this.len;
    this.len = end;
    return outer;
  }
}

function decodeEntry(r: Reader): Entry {
  const outer = r.enter();
  let key = '';
  let value = '';
  while (r.pos < r.len) {
    const t = r.uint32();
    switch (t >>> 3) {
      case 1:
        key = r.string();
        break;
      case 2:
        value = r.string();
        break;
      default:
        r.skipType(t & 7, 2);
    }
  }
  r.len = outer;
  return { key, value };
}

/** RateLimitOverride as wire.ts's `override`: UNKNOWN or unknown units give no override. */
function decodeOverride(r: Reader): Override | undefined {
  const outer = r.enter();
  let rpu = 0;
  let unit = 0;
  while (r.pos < r.len) {
    const t = r.uint32();
    switch (t >>> 3) {
      case 1:
        rpu = r.uint32();
        break;
      case 2:
        unit = r.uint32() | 0;
        break;
      default:
        r.skipType(t & 7, 2);
    }
  }
  r.len = outer;
  const u = unit >= 0 ? OVERRIDE_UNITS[unit] : undefined;
  return u ? { requestsPerUnit: rpu, unit: u } : undefined;
}

/** google.protobuf.UInt64Value. */
function decodeUInt64Value(r: Reader): number {
  const outer = r.enter();
  let value = 0;
  while (r.pos < r.len) {
    const t = r.uint32();
    if (t >>> 3 === 1) value = r.uint64();
    else r.skipType(t & 7, 2);
  }
  r.len = outer;
  return value;
}

type Descriptor = CoreRequest['descriptors'][number];

function decodeDescriptor(r: Reader): Descriptor {
  const outer = r.enter();
  const entries: Entry[] = [];
  let override: Override | undefined;
  let hitsAddend: number | undefined;
  while (r.pos < r.len) {
    const t = r.uint32();
    switch (t >>> 3) {
      case 1:
        entries.push(decodeEntry(r));
        break;
      case 2:
        override = decodeOverride(r);
        break;
      case 3:
        hitsAddend = decodeUInt64Value(r);
        break;
      default:
        r.skipType(t & 7, 1);
    }
  }
  r.len = outer;
  return { entries, override, hitsAddend };
}

/** RateLimitRequest bytes to the core request (what `fromGrpc` gives for the proto-loader object). */
export function decodeRequest(buf: Buffer): CoreRequest {
  const r = new Reader(buf, buf.length);
  let domain = '';
  let hitsAddend = 0;
  const descriptors: Descriptor[] = [];
  while (r.pos < r.len) {
    const t = r.uint32();
    switch (t >>> 3) {
      case 1:
        domain = r.string();
        break;
      case 2:
        descriptors.push(decodeDescriptor(r));
        break;
      case 3:
        hitsAddend = r.uint32();
        break;
      default:
        r.skipType(t & 7, 0);
    }
  }
  return { domain, hitsAddend, descriptors };
}

const varintSize = (v: number): number =>
  v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : v < 2 ** 35 ? 5 : 10;

const isUint32 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 4294967295;

function writeVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[pos++] = v;
  return pos;
}

/**
 * CoreResponse to RateLimitResponse bytes, identical to protobufjs's encoding of `toGrpc(r)`;
 * undefined when the response needs the generic path (dynamic metadata, unusual numbers).
 */
export function encodeResponse(r: CoreResponse): Buffer | undefined {
  if (r.dynamicMetadata) return undefined;
  const statuses = r.statuses;
  const headers = r.responseHeaders;
  const nS = statuses.length;
  // sizes: one pass to size every nested message, then one write
  const statusSize = new Array<number>(nS);
  const limitSize = new Array<number>(nS);
  const nameLen = new Array<number>(nS);
  let total = 2; // overall_code
  for (let i = 0; i < nS; i++) {
    const s = statuses[i] as CoreResponse['statuses'][number];
    if (!isUint32(s.limitRemaining)) return undefined;
    let size = 2 + 1 + varintSize(s.limitRemaining); // code, limit_remaining
    const cl = s.currentLimit;
    if (cl) {
      if (!isUint32(cl.requestsPerUnit)) return undefined;
      const nl = Buffer.byteLength(cl.name, 'utf8');
      nameLen[i] = nl;
      const ls = 1 + varintSize(cl.requestsPerUnit) + 2 + 1 + varintSize(nl) + nl;
      limitSize[i] = ls;
      size += 1 + varintSize(ls) + ls;
    }
    const d = s.durationUntilReset;
    if (d !== undefined) {
      if (!isUint32(d)) return undefined;
      size += 2 + 1 + varintSize(d) + 2;
    }
    statusSize[i] = size;
    total += 1 + varintSize(size) + size;
  }
  const headerKeyLen = new Array<number>(headers.length);
  const headerValueLen = new Array<number>(headers.length);
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i] as CoreResponse['responseHeaders'][number];
    const kl = Buffer.byteLength(h.key, 'utf8');
    const vl = Buffer.byteLength(h.value, 'utf8');
    headerKeyLen[i] = kl;
    headerValueLen[i] = vl;
    const size = 1 + varintSize(kl) + kl + 1 + varintSize(vl) + vl;
    total += 1 + varintSize(size) + size;
  }
  const buf = Buffer.allocUnsafe(total);
  let p = 0;
  buf[p++] = 0x08;
  buf[p++] = r.overallCode === 'OVER_LIMIT' ? 2 : 1;
  for (let i = 0; i < nS; i++) {
    const s = statuses[i] as CoreResponse['statuses'][number];
    buf[p++] = 0x12;
    p = writeVarint(buf, p, statusSize[i] as number);
    buf[p++] = 0x08;
    buf[p++] = s.code === 'OVER_LIMIT' ? 2 : 1;
    const cl = s.currentLimit;
    if (cl) {
      buf[p++] = 0x12;
      p = writeVarint(buf, p, limitSize[i] as number);
      buf[p++] = 0x08;
      p = writeVarint(buf, p, cl.requestsPerUnit);
      buf[p++] = 0x10;
      buf[p++] = RESPONSE_UNIT[cl.unit];
      buf[p++] = 0x1a;
      const nl = nameLen[i] as number;
      p = writeVarint(buf, p, nl);
      if (nl > 0) p += buf.write(cl.name, p, nl, 'utf8');
    }
    buf[p++] = 0x18;
    p = writeVarint(buf, p, s.limitRemaining);
    const d = s.durationUntilReset;
    if (d !== undefined) {
      buf[p++] = 0x22;
      buf[p++] = 3 + varintSize(d);
      buf[p++] = 0x08;
      p = writeVarint(buf, p, d);
      buf[p++] = 0x10;
      buf[p++] = 0;
    }
  }
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i] as CoreResponse['responseHeaders'][number];
    const kl = headerKeyLen[i] as number;
    const vl = headerValueLen[i] as number;
    buf[p++] = 0x1a;
    p = writeVarint(buf, p, 1 + varintSize(kl) + kl + 1 + varintSize(vl) + vl);
    buf[p++] = 0x0a;
    p = writeVarint(buf, p, kl);
    if (kl > 0) p += buf.write(h.key, p, kl, 'utf8');
    buf[p++] = 0x12;
    p = writeVarint(buf, p, vl);
    if (vl > 0) p += buf.write(h.value, p, vl, 'utf8');
  }
  return buf;
}
