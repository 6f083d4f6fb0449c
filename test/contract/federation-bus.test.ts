/**
 * The FederationBus contract on every adapter: in-process, NATS on the machine's server
 * (`nats://127.0.0.1:4222`, or MCPGW_TEST_NATS_URL) with run-unique buckets deleted afterwards, and the
 * mirror part on this suite's own two-region topology (two JetStream domains joined by a leaf node).
 * No NATS means failed tests, never skipped ones.
 */
import { after } from 'node:test';
import { InProcessBus, InProcessFabric } from '../../shared/adapters/memory/federation-bus.js';
import { NatsBus } from '../../shared/adapters/nats/federation-bus.js';
import { startNatsTopology, type NatsTopology } from '../helpers/nats-cluster.js';
import { federationBusContract, federationMirrorContract, RUN_ID } from './federation-bus.contract.js';

const NATS_URL = process.env.MCPGW_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** Deletes every stream this run made on the server behind `bus` (the run id is in their names). */
export async function dropRunStreams(bus: NatsBus): Promise<void> {
  for await (const name of bus.jsm.streams.names())
    if (name.includes(`_${RUN_ID}_`)) await bus.destroyStream(name);
}

const fabric = new InProcessFabric();
federationBusContract('in-process', async (bucket) => new InProcessBus(fabric, { bucket }));
federationMirrorContract('in-process', async () => ({
  a: new InProcessBus(fabric),
  b: new InProcessBus(fabric),
  regionA: 'a',
}));

federationBusContract(
  `nats ${NATS_URL}`,
  (bucket) =>
    NatsBus.connect({ servers: NATS_URL, bucket }).catch((err: Error) => {
      throw new Error(`the NATS contract needs JetStream at ${NATS_URL}: ${err.message}`, { cause: err });
    }),
  {
    teardown: async () => {
      const bus = await NatsBus.connect({ servers: NATS_URL });
      await dropRunStreams(bus);
      await bus.close();
    },
  },
);

let topology: NatsTopology | undefined;
after(() => topology?.close());
federationMirrorContract('nats, two regions joined by a leaf node', async () => {
  topology = await startNatsTopology(['a', 'b']);
  return {
    a: await NatsBus.connect({ servers: topology.server('a').url }),
    b: await NatsBus.connect({ servers: topology.server('b').url }),
    regionA: 'a',
  };
});
