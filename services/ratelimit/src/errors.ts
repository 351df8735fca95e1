/** Stable error codes of the ratelimit service; callers switch on `code`, never on the message. */
export type RatelimitErrorCode =
  | 'ERR_RULES'
  | 'ERR_EMPTY_DOMAIN'
  | 'ERR_EMPTY_DESCRIPTORS'
  | 'ERR_NO_CONFIG'
  | 'ERR_INVALID_REQUEST'
  | 'ERR_REDIS_UNAVAILABLE'
  | 'ERR_REDIS_TIMEOUT';

/**
 * A rate limit configuration file is invalid. The message is the reference's, prefixed by the file
 * (or runtime key) name: `basic.yaml: descriptor has empty key`.
 */
export class RulesError extends Error {
  readonly code = 'ERR_RULES' as const;
  /** The file (runtime key) that holds the problem. */
  readonly file: string;
  /** The message without the file prefix. */
  readonly detail: string;
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'RulesError';
    this.file = file;
    this.detail = detail;
  }
}

/**
 * A request the service refuses (empty domain, no descriptors, a bound of RequestLimits exceeded)
 * or cannot serve (no configuration).
 */
export class ServiceError extends Error {
  readonly code: 'ERR_EMPTY_DOMAIN' | 'ERR_EMPTY_DESCRIPTORS' | 'ERR_NO_CONFIG' | 'ERR_INVALID_REQUEST';
  constructor(code: ServiceError['code'], message: string) {
    super(message);
    this.name = 'ServiceError';
    this.code = code;
  }
}

/** The counter store failed or did not answer within its deadline. */
export class StoreError extends Error {
  readonly code: 'ERR_REDIS_UNAVAILABLE' | 'ERR_REDIS_TIMEOUT';
  constructor(code: StoreError['code'], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}
