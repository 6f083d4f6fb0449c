/**
 * VirtualServerStore: the virtual servers (`/v/{name}/mcp`) of a deployment, versioned like registry
 * servers: every change a new version with who and when, `expectedVersion` against lost updates, and a
 * watch that tells every gateway sharing the store about changes made anywhere.
 */
import type { VirtualServerConfig } from '../config/virtual-schema.js';

export interface VirtualServerEntry {
  virtualServer: VirtualServerConfig;
  version: number;
  updatedAt: number;
  updatedBy: string;
}

/** One version in a virtual server's history (no definition for a delete). */
export interface VirtualServerVersion {
  name: string;
  version: number;
  op: 'upsert' | 'delete';
  virtualServer?: VirtualServerConfig;
  changedAt: number;
  changedBy: string;
}

/** The virtual server changed since the writer read it (or exists when it should not). */
export class VirtualServerConflictError extends Error {
  constructor(
    readonly virtualServerName: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(
      `virtual server "${virtualServerName}" is at version ${actualVersion}, not ${expectedVersion}: re-read and retry`,
    );
    this.name = 'VirtualServerConflictError';
  }
}

export interface VirtualServerStore {
  /** Live virtual servers, by name. */
  list(): Promise<VirtualServerEntry[]>;
  get(name: string): Promise<VirtualServerEntry | undefined>;
  /**
   * Creates or replaces; `expectedVersion` is the version the writer read (0: must not exist), else
   * VirtualServerConflictError. Versions of one name only grow, across a delete and a re-create too.
   */
  put(v: VirtualServerConfig, by: string, expectedVersion?: number): Promise<VirtualServerEntry>;
  /** False when there was nothing to delete. */
  delete(name: string, by: string, expectedVersion?: number): Promise<boolean>;
  /** Every version of `name`, oldest first. */
  history(name: string): Promise<VirtualServerVersion[]>;
  /** `listener(name)` after every change here or on another gateway; returns the unsubscribe. */
  watch(listener: (name: string) => void): () => void;
  close(): Promise<void>;
}
