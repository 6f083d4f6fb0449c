import { randomBytes } from 'node:crypto';
import type { ReplicaChannel, ReplicaMessage } from '../../ports/replica-channel.js';

/**
 * Replicas in one process (tests, or several nodes embedded in one program) joined by a shared hub. A
 * single node passes no channel at all.
 */
export class MemoryReplicaHub {
  readonly members = new Map<string, (m: ReplicaMessage) => void>();

  channel(): ReplicaChannel {
    return new MemoryReplicaChannel(this);
  }
}

class MemoryReplicaChannel implements ReplicaChannel {
  readonly replicaId = randomBytes(4).toString('hex');

  constructor(private readonly hub: MemoryReplicaHub) {}

  async send(replicaId: string, message: ReplicaMessage): Promise<void> {
    const to = this.hub.members.get(replicaId);
    // Delivered on a later tick, like a real channel: a sender never runs its peer's code inline.
    if (to) queueMicrotask(() => to(structuredClone(message)));
  }

  async broadcast(message: ReplicaMessage): Promise<void> {
    for (const id of this.hub.members.keys()) if (id !== this.replicaId) await this.send(id, message);
  }

  async listen(listener: (message: ReplicaMessage) => void): Promise<void> {
    this.hub.members.set(this.replicaId, listener);
  }

  async close(): Promise<void> {
    this.hub.members.delete(this.replicaId);
  }
}
