/**
 * The AuditSink the request path talks to: `record` pushes onto a buffer, and a writer drains it to an
 * AuditLog every `flushMs` or as soon as `batchSize` records wait, one batch at a time (so each
 * region's chain is extended in order by this process). A failing write keeps the batch, raises the
 * alarm (an error log once, `health()`), and is retried with backoff; while failing, `mustRefuse`
 * answers true for the configured classifications.
 */
import type { Logger } from '../log.js';
import type {
  AuditEvent,
  AuditLog,
  AuditSink,
  AuditSinkHealth,
  Classification,
} from '../ports/audit-sink.js';

export interface BufferedSinkOptions {
  flushMs: number;
  batchSize: number;
  maxPending: number;
  refuseOnFailure: readonly Classification[];
  log?: Logger;
}

export class BufferedAuditSink implements AuditSink {
  private pending: AuditEvent[] = [];
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;
  private failingSince: number | undefined;
  private lastError: string | undefined;
  private written = 0;
  private dropped = 0;
  private retryMs: number;
  private closed = false;
  private readonly refuse: ReadonlySet<string>;

  constructor(
    private readonly target: AuditLog,
    private readonly opts: BufferedSinkOptions,
  ) {
    this.refuse = new Set(opts.refuseOnFailure);
    this.retryMs = opts.flushMs;
  }

  record(event: AuditEvent): void {
    if (this.closed) return;
    if (this.pending.length >= this.opts.maxPending) {
      this.pending.shift();
      if (this.dropped++ === 0)
        this.opts.log?.error({}, 'audit buffer full: the oldest records are being dropped');
    }
    this.pending.push(event);
    if (this.pending.length >= this.opts.batchSize && !this.writing && this.failingSince === undefined)
      this.drain();
    else this.schedule(this.failingSince === undefined ? this.opts.flushMs : this.retryMs);
  }

  mustRefuse(classification: Classification): boolean {
    return this.failingSince !== undefined && this.refuse.has(classification);
  }

  health(): AuditSinkHealth {
    return {
      healthy: this.failingSince === undefined && this.dropped === 0,
      ...(this.failingSince !== undefined ? { failingSince: this.failingSince } : {}),
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      pending: this.pending.length,
      written: this.written,
      dropped: this.dropped,
    };
  }

  async flush(): Promise<void> {
    while (this.writing || this.pending.length > 0) {
      await (this.writing ?? this.writeBatch());
      if (this.failingSince !== undefined && !this.writing)
        throw new Error(`audit sink failing: ${this.lastError}`);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    try {
      await this.flush();
    } catch (err) {
      this.opts.log?.error(
        { err: (err as Error).message, lost: this.pending.length },
        'audit records could not be written at shutdown',
      );
    }
    clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.timer || this.writing) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.drain();
    }, ms);
    this.timer.unref();
  }

  private drain(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    void this.writeBatch();
  }

  private writeBatch(): Promise<void> {
    if (this.writing) return this.writing;
    if (this.pending.length === 0) return Promise.resolve();
    const batch = this.pending.slice(0, this.opts.batchSize);
    const write = this.target.append(batch).then(
      () => {
        this.pending.splice(0, batch.length);
        this.written += batch.length;
        if (this.failingSince !== undefined)
          this.opts.log?.warn(
            { failedForMs: Date.now() - this.failingSince },
            'audit sink recovered: buffered records written',
          );
        this.failingSince = undefined;
        this.lastError = undefined;
        this.retryMs = this.opts.flushMs;
      },
      (err: unknown) => {
        this.lastError = (err as Error)?.message ?? String(err);
        if (this.failingSince === undefined) {
          this.failingSince = Date.now();
          this.opts.log?.error(
            { err: this.lastError, pending: this.pending.length },
            'audit sink failing: records are buffered, refused classes are refused',
          );
        }
        this.retryMs = Math.min(this.retryMs * 2, 5_000);
      },
    );
    this.writing = write.finally(() => {
      this.writing = undefined;
      if (this.closed) return;
      if (this.pending.length >= this.opts.batchSize && this.failingSince === undefined) this.drain();
      else if (this.pending.length > 0)
        this.schedule(this.failingSince === undefined ? this.opts.flushMs : this.retryMs);
    });
    return this.writing;
  }
}
