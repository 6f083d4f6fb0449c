/**
 * A call to a core with undici's dispatcher API and a handler of its own, in place of `request()`: the
 * answer's body is kept as the chunks that arrived (no Readable stream, no async resource per call), and
 * handed on whole (`text()`) or chunk by chunk as it comes (async iteration, for NDJSON answers whose
 * related messages must reach the client before the response). The edge's hot path is one such call per
 * client request, so what `request()` builds around it was a good part of the edge's CPU per request.
 */
import type { Dispatcher } from 'undici';

/** The core's answer: status, headers (names lowercased) and a body read once. */
export interface CoreAnswer {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body: AnswerBody;
}

export interface AnswerBody extends AsyncIterable<Buffer> {
  /** The whole body as UTF-8 text, once it has all arrived. */
  text(): Promise<string>;
  /** The whole body, once it has all arrived. */
  bytes(): Promise<Buffer>;
  /** Waits for the end of the body, keeping nothing. */
  dump(): Promise<void>;
}

/** Sends one request on `dispatcher`; resolves with the answer once its headers have arrived. */
export function dispatchCall(dispatcher: Dispatcher, opts: Dispatcher.DispatchOptions): Promise<CoreAnswer> {
  return new Promise((resolve, reject) => {
    dispatcher.dispatch(opts, new AnswerHandler(resolve, reject));
  });
}

class AnswerHandler implements Dispatcher.DispatchHandler, CoreAnswer, AnswerBody {
  statusCode = 0;
  headers: Record<string, string | string[] | undefined> = {};
  private chunks: Buffer[] = [];
  private ended = false;
  private failure: Error | undefined;
  /** Told when a chunk, the end or a failure arrives. */
  private wake: (() => void) | undefined;
  private started = false;
  /** Body chunks are dropped as they come (dump). */
  private discard = false;

  constructor(
    private readonly resolve: (a: CoreAnswer) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  get body(): AnswerBody {
    return this;
  }

  onConnect(): void {}

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null): boolean {
    if (statusCode < 200) return true; // 1xx: the answer follows
    this.statusCode = statusCode;
    const h: Record<string, string | string[] | undefined> = {};
    if (rawHeaders)
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        const name = rawHeaders[i]!.toString().toLowerCase();
        const value = rawHeaders[i + 1]!.toString();
        const had = h[name];
        h[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
      }
    this.headers = h;
    this.started = true;
    this.resolve(this);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (!this.discard) this.chunks.push(chunk);
    this.wake?.();
    return true;
  }

  onComplete(): void {
    this.ended = true;
    this.wake?.();
  }

  onError(err: Error): void {
    if (!this.started) return this.reject(err);
    this.failure = err;
    this.wake?.();
  }

  private next(): Promise<void> {
    return new Promise((r) => (this.wake = r));
  }

  async text(): Promise<string> {
    return (await this.bytes()).toString('utf8');
  }

  async bytes(): Promise<Buffer> {
    while (!this.ended && !this.failure) await this.next();
    if (this.failure) throw this.failure;
    const c = this.chunks;
    this.chunks = [];
    return c.length === 1 ? c[0]! : Buffer.concat(c);
  }

  async dump(): Promise<void> {
    this.discard = true;
    this.chunks = [];
    while (!this.ended && !this.failure) await this.next();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    for (;;) {
      if (this.chunks.length > 0) {
        const c = this.chunks;
        this.chunks = [];
        for (const b of c) yield b;
        continue;
      }
      if (this.failure) throw this.failure;
      if (this.ended) return;
      await this.next();
    }
  }
}
