/**
 * RegistryStore: the catalog of backend servers (and, later, capabilities, lifecycle and approvals).
 * The config file seeds it; `watch` tells the core about changes so it applies them without a restart.
 * Every change makes a new version of the server, kept in its history with who made it and when.
 */
import type { ServerConfig } from '../config/schema.js';

/** A server as the registry holds it, keyed by its id (server-versions.ts: `serverId`). */
export interface RegistryEntry {
  server: ServerConfig;
  version: number;
  updatedAt: number;
  updatedBy: string;
}

export type RegistryChange =
  { type: 'upsert'; entry: RegistryEntry } | { type: 'delete'; name: string; version: number };

/** One version in a server's history: what it became (absent for a delete), who made it, when. */
export interface RegistryVersion {
  name: string;
  version: number;
  op: 'upsert' | 'delete';
  server?: ServerConfig;
  changedAt: number;
  changedBy: string;
}

export interface WriteOptions {
  /**
   * Optimistic concurrency: the version the writer last read (0 for "must not exist"). The write fails
   * with RegistryConflictError when another change came first.
   */
  expectedVersion?: number;
}

/** The server changed since the writer read it (or exists when it should not). */
export class RegistryConflictError extends Error {
  constructor(
    readonly serverName: string,
    readonly expectedVersion: number,
    readonly actualVersion: number,
  ) {
    super(`server "${serverName}" is at version ${actualVersion}, not ${expectedVersion}: re-read and retry`);
    this.name = 'RegistryConflictError';
  }
}

export interface RegistryStore {
  /** Live servers (deleted ones are not listed), by name. */
  list(): Promise<RegistryEntry[]>;
  /** `name` is a server id: the server's name, or `{name}-{version}` for a versioned one. */
  get(name: string): Promise<RegistryEntry | undefined>;
  /** The live versions of the family `name` (entries whose server.name is `name`), by id. */
  versions(name: string): Promise<RegistryEntry[]>;
  /**
   * Creates or updates a server; returns the new entry. Versions of one name only grow, even across a
   * delete and a re-create; concurrent writers each get their own version.
   */
  upsert(server: ServerConfig, by: string, options?: WriteOptions): Promise<RegistryEntry>;
  /** False when there was nothing to delete. */
  delete(name: string, by: string, options?: WriteOptions): Promise<boolean>;
  /** Every version of `name`, oldest first (deletes included). */
  history(name: string): Promise<RegistryVersion[]>;
  /**
   * Calls `listener` for every change after this call, made here or by another gateway sharing the
   * store; returns an unsubscribe function.
   */
  watch(listener: (change: RegistryChange) => void): () => void;
  close(): Promise<void>;
}
