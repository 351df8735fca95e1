import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'mocha';
import {
  checkIssuedChain,
  createCertificateForKey,
  createSelfSigned,
  generatePrivateKey,
  keyMatchesChain,
  readCertificate,
} from '../src/certs.ts';

describe('acme certificates', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');

  it('writes a temporary self-signed certificate that parses, covers the names and is marked', () => {
    const { chainPem, keyPem } = createSelfSigned(['a.example.com', 'b.example.com'], now, 3_600_000);
    const info = readCertificate(chainPem);
    assert.deepEqual(info.names, ['a.example.com', 'b.example.com']);
    assert.equal(info.notAfter, Math.floor((now + 3_600_000) / 1000) * 1000);
    assert.match(info.issuer, /TEMPORARY/);
    assert.ok(keyMatchesChain(chainPem, keyPem));
    assert.ok(new X509Certificate(chainPem).verify(new X509Certificate(chainPem).publicKey));
  });

  it('accepts an issued chain that covers the names and matches the key', () => {
    const key = generatePrivateKey('ecdsa-p256');
    const chain = createCertificateForKey(['a.example.com'], key, now - 1000, now + 86_400_000, 'CA');
    assert.equal(checkIssuedChain(chain, key, ['a.example.com'], now), undefined);
  });

  it('refuses a chain that misses a name, has another key, is expired or is empty', () => {
    const key = generatePrivateKey('ecdsa-p256');
    const chain = createCertificateForKey(['a.example.com'], key, now - 1000, now + 86_400_000, 'CA');
    assert.equal(
      checkIssuedChain(chain, key, ['a.example.com', 'b.example.com'], now),
      'the certificate does not cover b.example.com',
    );
    assert.equal(
      checkIssuedChain(chain, generatePrivateKey('ecdsa-p256'), ['a.example.com'], now),
      'the certificate does not match the private key',
    );
    assert.equal(
      checkIssuedChain(chain, key, ['a.example.com'], now + 2 * 86_400_000),
      'the certificate is already expired',
    );
    assert.equal(checkIssuedChain('', key, ['a.example.com'], now), 'the CA returned no certificate');
  });

  it('refuses a chain whose second certificate did not sign the first', () => {
    const key = generatePrivateKey('ecdsa-p256');
    const leaf = createCertificateForKey(['a.example.com'], key, now - 1000, now + 86_400_000, 'CA');
    const other = createSelfSigned(['x.example.com'], now, 86_400_000).chainPem;
    assert.equal(
      checkIssuedChain(leaf + other, key, ['a.example.com'], now),
      'certificate 0 of the chain is not signed by certificate 1',
    );
  });

  it('always encodes valid DER (serials of every shape parse)', () => {
    const key = generatePrivateKey('ecdsa-p256');
    for (let i = 0; i < 600; i++) {
      const pem = createCertificateForKey(['a.example.com'], key, now, now + 1000, 'CA');
      assert.doesNotThrow(() => new X509Certificate(pem));
    }
  });

  it('generates the configured key types', () => {
    assert.match(generatePrivateKey('ecdsa-p256'), /BEGIN PRIVATE KEY/);
    assert.match(generatePrivateKey('rsa2048'), /BEGIN PRIVATE KEY/);
  });
});
