// Rate limit configuration used by the ratelimit integration tests (reference YAML format).

/** Main test configuration: the reference behaviours plus this project's extensions. */
export const RULES = `
domain: it
descriptors:
  - key: key1
    value: value1
    descriptors:
      - key: subkey1
        rate_limit: {unit: minute, requests_per_unit: 5}
      - key: subkey1
        value: subvalue1
        rate_limit: {unit: minute, requests_per_unit: 10}
  - key: key2
    rate_limit: {unit: minute, requests_per_unit: 3}
  - key: key2
    value: free
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 4}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {unit: second, requests_per_unit: 0}
  - key: wild
    value: foo*bar
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: unlimited
    rate_limit: {unlimited: true}
  - key: shadow
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: quota
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: named
    rate_limit: {unit: minute, requests_per_unit: 1, name: named-limit}
  - key: replacer
    rate_limit:
      unit: minute
      requests_per_unit: 50
      replaces: [{name: named-limit}]
  - key: persecond
    rate_limit: {unit: second, requests_per_unit: 2}
  - key: concurrency
    rate_limit: {unit: minute, requests_per_unit: 100}
  - key: burst_and_sustained
    rate_limit: {unit: second, requests_per_unit: 3, name: burst}
    rate_limits:
      - {unit: hour, requests_per_unit: 5, name: sustained}
  - key: smooth
    rate_limit: {unit: minute, requests_per_unit: 5, algorithm: sliding_window}
  - key: lc
    rate_limit: {unit: hour, requests_per_unit: 1}
`;
