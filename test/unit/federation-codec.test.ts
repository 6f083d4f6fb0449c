import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeEnvelope, encodeEnvelope, EnvelopeError } from '../../federation/codec.js';
import { parseRegistryKey } from '../../federation/subjects.js';

const from = { region: 'eu-1', gateway: 'gw-1' };
const gatewayBody = { url: 'http://10.0.0.1:8080', startedAt: 1, heartbeatMs: 500, servers: ['weather'] };

test('an envelope round-trips through JSON', () => {
  const env = encodeEnvelope('gateway', from, gatewayBody, 1234);
  assert.deepEqual(env, {
    v: 1,
    kind: 'gateway',
    region: 'eu-1',
    gateway: 'gw-1',
    ts: 1234,
    body: gatewayBody,
  });
  assert.deepEqual(decodeEnvelope(JSON.parse(JSON.stringify(env)), 'gateway'), env);
});

test('an unknown version is refused, naming the version and what this gateway reads', () => {
  const env = { ...encodeEnvelope('gateway', from, gatewayBody, 1), v: 2 };
  assert.throws(
    () => decodeEnvelope(env),
    (err: unknown) =>
      err instanceof EnvelopeError &&
      err.version === 2 &&
      /unsupported federation envelope version 2: this gateway reads version 1/.test(err.message),
  );
  assert.throws(() => decodeEnvelope({ ...env, v: undefined }), /version undefined/);
});

test('malformed envelopes and bodies are refused with the field named', () => {
  assert.throws(() => decodeEnvelope('nope'), /expected an object/);
  assert.throws(() => decodeEnvelope(null), /expected an object/);
  assert.throws(
    () => decodeEnvelope({ ...encodeEnvelope('gateway', from, gatewayBody, 1), kind: 'x' }),
    /kind/,
  );
  assert.throws(
    () => decodeEnvelope({ ...encodeEnvelope('gateway', from, gatewayBody, 1), region: 'Bad Region' }),
    /region/,
  );
  assert.throws(
    () => decodeEnvelope(encodeEnvelope('gateway', from, { ...gatewayBody, heartbeatMs: -1 }, 1)),
    /"gateway" envelope body: heartbeatMs/,
  );
  assert.throws(
    () => decodeEnvelope(encodeEnvelope('gateway', from, gatewayBody, 1), 'server'),
    /expected a "server" envelope, got "gateway"/,
  );
});

test('registry keys parse back; unknown shapes are ignored', () => {
  assert.deepEqual(parseRegistryKey('gw.g1'), { type: 'gateway', gateway: 'g1' });
  assert.deepEqual(parseRegistryKey('srv.g1.weather'), { type: 'server', gateway: 'g1', server: 'weather' });
  assert.deepEqual(parseRegistryKey('lease.leader'), { type: 'lease', name: 'leader' });
  assert.equal(parseRegistryKey('srv.g1'), undefined);
  assert.equal(parseRegistryKey('other.x'), undefined);
});
