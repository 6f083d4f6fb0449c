/**
 * RegistryStore: the catalog of backend servers (and, later, capabilities, lifecycle and approvals).
 * The config file seeds it; `watch` tells the core about changes so it applies them without a restart.
 */
import type { ServerConfig } from '../config/schema.js';

export interface RegistryEntry {
  server: ServerConfig;
  version: number;
  updatedAt: number;
  updatedBy: string;
}

export type RegistryChange =
  { type: 'upsert'; entry: RegistryEntry } | { type: 'delete'; name: string; version: number };

export interface RegistryStore {
  list(): Promise<RegistryEntry[]>;
  get(name: string): Promise<RegistryEntry | undefined>;
  /** Creates or updates a server; returns the new entry with its version incremented. */
  upsert(server: ServerConfig, by: string): Promise<RegistryEntry>;
  delete(name: string, by: string): Promise<boolean>;
  /** Calls `listener` for every change after this call; returns an unsubscribe function. */
  watch(listener: (change: RegistryChange) => void): () => void;
  close(): Promise<void>;
}
