/**
 * ControlPlane: the cluster's access policies and quota limits, kept on the bus (docs/federation.md,
 * "Control plane"). Every gateway that opts in watches it and applies each change live; the admin API
 * and the CLI of such a gateway write it. Versions are the bus's revisions: they only grow.
 */

/** Who wrote an entry, when, from which gateway, and the revision it has on the bus. */
export interface ControlRevision {
  revision: number;
  updatedBy: string;
  updatedAt: string;
  gateway: string;
}

export interface ControlPolicy extends ControlRevision {
  /** `*` (the cluster's gateway-wide policy) or a tenant name. */
  scope: string;
  /** As `policy` in the config file. */
  policy: Record<string, unknown>;
}

export interface ControlQuotaLimits extends ControlRevision {
  /** As the limit keys of `quotas` in the config file; each key named replaces the file's. */
  limits: Record<string, unknown>;
}

/** What one gateway holds in force from the control plane, and what it refused. */
export interface ControlPlaneStatus {
  connected: boolean;
  bucket: string;
  policies: boolean;
  quotas: boolean;
  /** Per key in force: its revision, author, and when this gateway applied it (ms since the epoch). */
  applied: Array<ControlRevision & { key: string; appliedAt: number }>;
  /** Entries refused (the previous good value of the key stayed in force), newest per key. */
  refused: Array<{ key: string; revision: number; reason: string; at: number }>;
}

/** One revision the bucket keeps of a key: who, when, and whether it passed the checks. */
export interface ControlHistoryEntry {
  revision: number;
  /** A delete (a tombstone written by a gateway, or the key removed from the bucket). */
  deleted: boolean;
  /** False when this gateway refuses it (its reason then says why). */
  valid: boolean;
  reason?: string;
  updatedBy?: string;
  updatedAt?: string;
  gateway?: string;
  /** The policy or limits written (absent for a delete or an entry that is not one). */
  value?: Record<string, unknown>;
}

export interface ControlPlane {
  policies(): Promise<ControlPolicy[]>;
  policy(scope: string): Promise<ControlPolicy | undefined>;
  /**
   * Writes a policy (already checked by the caller) and resolves once this gateway applied it.
   * `expectedRevision`: 0 for "must not exist", else the revision read; ControlRevisionConflict if not.
   */
  putPolicy(
    scope: string,
    policy: Record<string, unknown>,
    by: string,
    expectedRevision?: number,
  ): Promise<ControlPolicy>;
  /** Removes a scope (a tombstone recording who and when); the revision made, or undefined if none. */
  deletePolicy(scope: string, by: string, expectedRevision?: number): Promise<number | undefined>;
  quotaLimits(): Promise<ControlQuotaLimits | undefined>;
  putQuotaLimits(
    limits: Record<string, unknown>,
    by: string,
    expectedRevision?: number,
  ): Promise<ControlQuotaLimits>;
  deleteQuotaLimits(by: string, expectedRevision?: number): Promise<number | undefined>;
  /**
   * The revisions the bucket keeps of `key` (`policy._global`, `policy.<tenant>`, `quotas`), newest first.
   * RangeError for a key that is not one of the control plane's.
   */
  history(key: string): Promise<ControlHistoryEntry[]>;
  /** Called after every change applied here (a write of this gateway's or another's). */
  onApplied(listener: () => void | Promise<void>): () => void;
  status(): ControlPlaneStatus;
}

/** The entry changed since the writer read it. */
export class ControlRevisionConflict extends Error {
  override readonly name = 'ControlRevisionConflict';
  constructor(
    readonly key: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`"${key}" is at revision ${actual}, not ${expected}: re-read and retry`);
  }
}

/** The bus does not answer: nothing was written (the values in force stay). */
export class ControlPlaneUnavailable extends Error {
  override readonly name = 'ControlPlaneUnavailable';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
