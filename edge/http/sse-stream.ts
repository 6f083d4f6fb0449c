/**
 * One SSE stream of a session as the client sees it (a POST's answer stream or the GET stream). It outlives
 * the HTTP connection that carries it: every message is first logged in the EventStore, then written to
 * the connection if one is attached, so a client that lost the connection resumes with `Last-Event-ID`
 * and gets exactly the messages it missed, in order, once each.
 *
 * All appends and (re)attachments run on one promise chain per stream: that keeps event order equal to
 * send order, and makes a resume (replay, then attach) atomic with respect to new messages.
 */
import type { ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../../shared/log.js';
import type { EventStore } from '../../shared/ports/event-store.js';
import { openSse, sseEvent } from './sse.js';

const KEEPALIVE_MS = 25_000;

/**
 * Logged after a POST stream's last message, so that a replica that does not carry the stream (another
 * process started it) knows when to stop following it. Not a JSON-RPC message, never sent to a client.
 */
const STREAM_END = { 'mcpgw/streamEnd': true };
const isStreamEnd = (m: unknown): boolean =>
  typeof m === 'object' && m !== null && (m as Record<string, unknown>)['mcpgw/streamEnd'] === true;

/** How a replica follows a stream it does not carry: polling the EventStore until the end marker. */
export interface FollowOptions {
  pollMs: number;
  /** Gives up after this long without the end marker (the replica that carried the stream died). */
  maxMs: number;
}

export interface SseStreamOptions {
  sessionId: string;
  streamId: string;
  events: EventStore;
  log: Logger;
  /** Sent with the priming event (2025-11-25); undefined when the client's version predates priming. */
  retryMs: number | undefined;
  /**
   * The GET stream keeps what it could not write (no connection attached) for the client's next plain
   * GET, up to this many events; POST streams keep nothing (a client resumes them with Last-Event-ID).
   */
  keepUndelivered?: number;
  /** The GET stream: no end of its own, so a draining node ends it (with a retry hint) and waits for none. */
  longLived?: boolean;
  /** Called with what `send` logged but could not write (no connection attached here). */
  onUnwritten?: (eventId: string, message: unknown) => void;
  /**
   * A stream this replica does not carry: it finished here already, or another replica is carrying it.
   * Resuming replays it from the EventStore and follows it there until its end marker.
   */
  follow?: FollowOptions;
}

export class SseStream {
  private conn: ServerResponse | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Events logged while no connection was attached and not yet written anywhere (GET stream). */
  private undelivered: { id: string; message: unknown }[] = [];
  private ended: boolean;
  private readonly onFinished: (() => void)[] = [];

  constructor(private readonly o: SseStreamOptions) {
    this.ended = false;
  }

  get id(): string {
    return this.o.streamId;
  }

  /** True while a live connection carries the stream. */
  get attached(): boolean {
    return this.conn !== undefined && !this.conn.destroyed && this.conn.writable;
  }

  /** True once the stream's last message was sent (a POST stream after its response). */
  get finished(): boolean {
    return this.ended;
  }

  /**
   * Carries the stream on a fresh connection: headers, the priming event that makes it resumable
   * (2025-11-25), then what the GET stream could not write while no connection was attached.
   */
  connect(res: ServerResponse, headers: Record<string, string>): Promise<void> {
    return this.enqueue(async () => {
      this.replaceConnection(res, headers);
      if (this.o.retryMs !== undefined) {
        const id = await this.o.events.append(this.o.sessionId, this.o.streamId, null);
        this.write(`id: ${id}\nretry: ${this.o.retryMs}\ndata: \n\n`);
      }
      for (const e of this.undelivered.splice(0)) this.write(sseEvent(e.message, e.id));
    });
  }

  /** Logs a message and writes it to the connection, if any. */
  send(message: unknown): void {
    void this.enqueue(async () => {
      const id = await this.o.events.append(this.o.sessionId, this.o.streamId, message);
      if (this.write(sseEvent(message, id))) return;
      this.o.onUnwritten?.(id, message);
      if (!this.o.keepUndelivered) return;
      this.undelivered.push({ id, message });
      if (this.undelivered.length > this.o.keepUndelivered) this.undelivered.shift();
    });
  }

  /** Writes an event another replica logged, if this replica carries the connection. */
  deliverLogged(eventId: string, message: unknown): void {
    void this.enqueue(async () => void this.write(sseEvent(message, eventId)));
  }

  /** Ends the stream after everything queued so far (a POST stream once its response is sent). */
  finish(): Promise<void> {
    return this.enqueue(async () => {
      await this.o.events.append(this.o.sessionId, this.o.streamId, STREAM_END);
      this.end();
    });
  }

  /** Calls `fn` once the stream has ended. */
  whenFinished(fn: () => void): void {
    this.onFinished.push(fn);
  }

  /**
   * Resumes on a new connection after `lastEventId`: replays the stream's later events from the
   * EventStore, then carries live messages. Resolves false when the store no longer knows the id.
   */
  resume(res: ServerResponse, headers: Record<string, string>, lastEventId: string): Promise<boolean> {
    return this.enqueue(async () => {
      const replay = await this.o.events.replayAfter(this.o.sessionId, lastEventId);
      if (!replay || replay.streamId !== this.o.streamId) return false;
      this.replaceConnection(res, headers);
      this.undelivered = [];
      const last = this.writeLogged(replay.events);
      if (this.o.follow && !last.ended) void this.follow(res, last.id ?? lastEventId, this.o.follow);
      else if (this.ended || last.ended) {
        res.end();
        this.detach();
      }
      return true;
    });
  }

  /** Writes logged events (not priming events nor the end marker); says where they stopped. */
  private writeLogged(events: { id: string; message: unknown }[]): { id?: string; ended: boolean } {
    let id: string | undefined;
    let ended = false;
    for (const e of events) {
      id = e.id;
      if (isStreamEnd(e.message)) ended = true;
      else if (e.message !== null) this.write(sseEvent(e.message, e.id));
    }
    return { id, ended };
  }

  /** Tails a stream another replica is carrying, until its end marker, the client leaving, or maxMs. */
  private async follow(res: ServerResponse, after: string, f: FollowOptions): Promise<void> {
    const deadline = Date.now() + f.maxMs;
    let last = after;
    try {
      while (this.conn === res && this.attached && Date.now() < deadline) {
        await sleep(f.pollMs, undefined, { ref: false });
        const more = await this.o.events.replayAfter(this.o.sessionId, last);
        if (!more) break;
        const w = this.writeLogged(more.events);
        last = w.id ?? last;
        if (w.ended) break;
      }
    } catch (err) {
      this.o.log.warn({ err, stream: this.o.streamId }, 'following an SSE stream failed');
    }
    if (this.conn === res) {
      res.end();
      this.detach();
    }
  }

  /** Ends the stream for good, now (the session ended or the gateway shuts down). */
  close(): void {
    this.end();
  }

  private end(): void {
    if (this.ended && !this.conn) return;
    this.ended = true;
    this.conn?.end();
    this.detach();
    for (const fn of this.onFinished.splice(0)) fn();
  }

  private replaceConnection(res: ServerResponse, headers: Record<string, string>): void {
    if (this.conn && this.conn !== res) this.conn.end();
    this.detach();
    openSse(res, headers, { longLived: this.o.longLived ?? false });
    this.conn = res;
    this.keepalive = setInterval(() => this.write(': keepalive\n\n'), KEEPALIVE_MS).unref();
    // A dropped connection is not a cancellation: the stream lives on and can be resumed.
    res.on('close', () => {
      if (this.conn === res) this.detach();
    });
  }

  private detach(): void {
    if (this.keepalive) clearInterval(this.keepalive);
    this.keepalive = undefined;
    this.conn = undefined;
  }

  private write(chunk: string): boolean {
    if (!this.attached) return false;
    this.conn!.write(chunk);
    return true;
  }

  private enqueue<T>(step: () => Promise<T>): Promise<T> {
    const run = this.chain.then(step);
    this.chain = run.then(
      () => undefined,
      (err: unknown) => this.o.log.warn({ err, stream: this.o.streamId }, 'SSE stream step failed'),
    );
    return run;
  }
}
