/**
 * ReplicaChannel on Redis pub/sub: one channel per replica (`<prefix>:replica:<id>`) and one for all
 * (`<prefix>:replicas`). Pub/sub keeps nothing: a message for a replica that is gone is dropped, which is
 * right for what travels here (answers and events for live connections; the EventStore keeps the log).
 */
import { randomBytes } from 'node:crypto';
import type { ReplicaChannel, ReplicaMessage } from '../../ports/replica-channel.js';
import { keyPrefixOf, RedisConnection, type RedisAdapterOptions, type RedisTarget } from './connection.js';

interface Envelope {
  from: string;
  message: ReplicaMessage;
}

export class RedisReplicaChannel implements ReplicaChannel {
  readonly replicaId = randomBytes(4).toString('hex');
  private readonly publisher: RedisConnection;
  /** Subscribing takes a connection of its own: a subscribed Redis connection can do nothing else. */
  private readonly subscriber: RedisConnection;
  private readonly prefix: string;

  /** `url` must be a URL: the channel opens its own publishing and subscribing connections. */
  constructor(url: RedisTarget & string, options: RedisAdapterOptions = {}) {
    this.prefix = keyPrefixOf(options);
    this.publisher = new RedisConnection(url);
    this.subscriber = new RedisConnection(url);
  }

  async send(replicaId: string, message: ReplicaMessage): Promise<void> {
    await this.publish(`${this.prefix}:replica:${replicaId}`, message);
  }

  async broadcast(message: ReplicaMessage): Promise<void> {
    await this.publish(`${this.prefix}:replicas`, message);
  }

  async listen(listener: (message: ReplicaMessage) => void): Promise<void> {
    const mine = `${this.prefix}:replica:${this.replicaId}`;
    const all = `${this.prefix}:replicas`;
    this.subscriber.client.on('message', (channel: string, data: string) => {
      if (channel !== mine && channel !== all) return;
      let env: Envelope;
      try {
        env = JSON.parse(data) as Envelope;
      } catch {
        return; // not ours: someone else publishing on our channel names
      }
      if (env.from !== this.replicaId) listener(env.message);
    });
    await this.subscriber.client.subscribe(mine, all);
  }

  async close(): Promise<void> {
    await Promise.all([this.subscriber.release(), this.publisher.release()]);
  }

  private async publish(channel: string, message: ReplicaMessage): Promise<void> {
    const env: Envelope = { from: this.replicaId, message };
    await this.publisher.client.publish(channel, JSON.stringify(env));
  }
}
