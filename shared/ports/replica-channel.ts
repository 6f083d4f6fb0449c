/**
 * ReplicaChannel: messages between the gateway replicas that share one session store, about client
 * sessions any of them may serve. A client's request can land on one replica while what it concerns lives
 * on another: its answer to a server-to-client request another replica issued, a cancellation of a call
 * in flight elsewhere, a message for a GET stream another replica carries. A single node needs none of it.
 */
export type ReplicaMessage =
  /** A client's answer to a server-to-client request the addressed replica issued. */
  | { kind: 'response'; sessionId: string; message: unknown }
  /** A client notification (a cancellation) for whichever replica has the call in flight. */
  | { kind: 'notify'; sessionId: string; message: unknown }
  /** An event already logged in the EventStore, for the replica that carries the stream's connection. */
  | { kind: 'event'; sessionId: string; streamId: string; eventId: string; message: unknown }
  /**
   * A 2026 client's retry of an input_required round that the addressed replica holds (its
   * `requestState` names it), landed on `from`; `sessionId` is the retry's token. With `cancel`, the
   * client closed the retry's stream.
   */
  | {
      kind: 'continue';
      sessionId: string;
      from: string;
      state: string;
      principal: string;
      scope: string;
      method: string;
      inputResponses: unknown;
      cancel?: boolean;
    }
  /** What a continued round sent, for the replica holding the retry: an ack (null), progress, the answer. */
  | { kind: 'continued'; sessionId: string; message: unknown; final: boolean };

export interface ReplicaChannel {
  /** This replica's id: short, visible ASCII, unique among the replicas sharing the channel. */
  readonly replicaId: string;
  /** Delivers to one replica; nothing happens when it is gone. */
  send(replicaId: string, message: ReplicaMessage): Promise<void>;
  /** Delivers to every other replica. */
  broadcast(message: ReplicaMessage): Promise<void>;
  /** Calls `listener` for what other replicas send or broadcast to this one. Resolves once listening. */
  listen(listener: (message: ReplicaMessage) => void): Promise<void>;
  close(): Promise<void>;
}
