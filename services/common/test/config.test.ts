import { describe, it } from 'mocha';
import assert from 'node:assert/strict';
import { parseOptions, parseDuration, redactedView } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';

const specs = {
  port: { kind: 'port', env: 'PORT', default: 8080, doc: 'port' },
  mode: { kind: 'enum', values: ['a', 'b'], default: 'a', doc: 'mode' },
  verbose: { kind: 'bool', default: false, doc: 'verbose' },
  timeout: { kind: 'duration', env: 'TIMEOUT', default: 1000, doc: 'timeout' },
  token: { kind: 'string', env: 'TOKEN', secret: true, doc: 'token' },
  'policy-file': { kind: 'file', doc: 'file' },
} as const;
const meta = { name: 't', summary: 's' };

describe('common/config', () => {
  it('applies flag over env over default', () => {
    const r = parseOptions(specs, ['--port=9000'], { PORT: '7000', TIMEOUT: '2s' }, meta);
    assert.equal(r.kind, 'options');
    if (r.kind !== 'options') return;
    assert.equal(r.options.port, 9000);
    assert.equal(r.options.timeout, 2000);
    assert.equal(r.options.mode, 'a');
    assert.equal(r.options.token, undefined);
    assert.ok(Object.isFrozen(r.options));
  });
  it('accepts --flag value, --bool and --no-bool', () => {
    const r = parseOptions(specs, ['--mode', 'b', '--verbose', '--no-verbose'], {}, meta);
    assert.ok(r.kind === 'options' && r.options.mode === 'b' && r.options.verbose === false);
  });
  it('collects every problem with its field', () => {
    try {
      parseOptions(
        specs,
        ['--port=70000', '--bogus', '--mode=c', '--policy-file=/nonexistent/x'],
        { TIMEOUT: 'soon' },
        meta,
      );
      assert.fail('expected a ConfigError');
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      const fields = err.problems.map((p) => p.field);
      assert.deepEqual(fields.sort(), ['--bogus', '--mode', '--policy-file', '--port', 'TIMEOUT']);
      assert.match(err.message, /--port: must be a port number 0-65535, got '70000'/);
      assert.match(err.message, /--policy-file: cannot read '\/nonexistent\/x' \(ENOENT\)/);
    }
  });
  it('never echoes a secret value in errors or views', () => {
    const r = parseOptions(specs, [], { TOKEN: 's3cret' }, meta);
    assert.ok(r.kind === 'options');
    assert.doesNotMatch(JSON.stringify(redactedView(specs, r.options)), /s3cret/);
  });
  it('returns help text listing flags and env vars', () => {
    const r = parseOptions(specs, ['--help'], {}, meta);
    assert.ok(r.kind === 'help' && r.text.includes('--port=<port>  (PORT)  [8080]'));
  });
  it('parses durations', () => {
    assert.equal(parseDuration('250'), 250);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('2m'), 120000);
    assert.equal(parseDuration('x'), undefined);
  });
});
