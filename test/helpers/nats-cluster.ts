/**
 * The tests' multi-region NATS topology: the one `npm run cluster` starts (deploy/local/nats-topology.ts),
 * on free ports, with the test's own nats-server processes.
 */
export {
  natsConfig,
  startNatsTopology,
  type NatsRegionServer,
  type NatsTopology,
} from '../../deploy/local/nats-topology.js';
