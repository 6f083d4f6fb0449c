/**
 * Upstream stdio transport: ONE child process speaking newline-delimited UTF-8 JSON-RPC on stdin/stdout.
 *
 * - stdout: split into lines (partial lines and several messages per chunk are fine); each line is
 *   checked for the JSON-RPC envelope only (`classify`) and delivered; a line that is not JSON or not
 *   JSON-RPC goes to `onerror` and the log, never a crash.
 * - stderr: logging, never an error signal; each line is logged (info) tagged with the server name.
 * - environment: `env` over a minimal inherited set (PATH, HOME, ... like the SDK's
 *   getDefaultEnvironment), never the gateway's whole environment (it holds the gateway's secrets).
 * - shutdown: end stdin, wait up to the grace period, SIGTERM, wait again, SIGKILL; `close()` resolves
 *   once the process is gone.
 * Restarts are the caller's job (core/backends/server-backend.ts creates a new transport with backoff).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { brokenResponseId, classify, type JsonRpcId, type JsonRpcMessage } from '../../shared/mcp/jsonrpc.js';
import { backendError } from './http-common.js';
import type { UpstreamMessageContext, UpstreamTransport } from './transport.js';

/** The part of a pino logger the transports use. */
export interface TransportLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export interface StdioTransportOptions {
  command: string;
  args?: readonly string[];
  /** Merged over the minimal inherited environment (see INHERITED_ENV). */
  env?: Readonly<Record<string, string>>;
  cwd?: string;
  log: TransportLog;
  /** Tags log lines and errors. */
  serverName: string;
  /** Each of the two waits of close() (after closing stdin, after SIGTERM). Default 2000 ms. */
  shutdownGraceMs?: number;
  /**
   * Longest line (in characters) accepted from stdout before it is dropped as garbage. Default 64 Mi:
   * a backend that never writes a newline must not exhaust the gateway's memory.
   */
  maxLineLength?: number;
}

/** An exit of the process, with what ended it. */
export class ProcessExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
  ) {
    super(message);
    this.name = 'ProcessExitError';
  }
}

/** What a child inherits from the gateway's environment (the SDK's default list, plus locale and temp). */
export const INHERITED_ENV: readonly string[] =
  process.platform === 'win32'
    ? [
        'APPDATA',
        'HOMEDRIVE',
        'HOMEPATH',
        'LOCALAPPDATA',
        'PATH',
        'PROCESSOR_ARCHITECTURE',
        'SYSTEMDRIVE',
        'SYSTEMROOT',
        'TEMP',
        'USERNAME',
        'USERPROFILE',
        'PROGRAMFILES',
      ]
    : ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER', 'LANG', 'LC_ALL', 'TMPDIR', 'TZ'];

/** The minimal environment a child starts from; values that look like shell functions are skipped. */
export function defaultEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of INHERITED_ENV) {
    const v = process.env[k];
    if (v !== undefined && !v.startsWith('()')) env[k] = v;
  }
  return env;
}

const NO_CONTEXT: UpstreamMessageContext = Object.freeze({});
const MAX_LOGGED_LINE = 2000;
/** After exit, how long to wait for the rest of stdout before reporting the close. */
const DRAIN_AFTER_EXIT_MS = 200;

type State = 'new' | 'starting' | 'open' | 'gone';

export class StdioTransport implements UpstreamTransport {
  onmessage?: (message: JsonRpcMessage, context: UpstreamMessageContext) => void;
  onerror?: (error: Error) => void;
  onclose?: (reason?: Error) => void;
  readonly sessionId: string | undefined = undefined;

  private child: ChildProcessWithoutNullStreams | undefined;
  private state: State = 'new';
  private closing: Promise<void> | undefined;
  /** Resolves when the process has exited (or never started). */
  private exited: Promise<void> = Promise.resolve();
  private exitReason: ProcessExitError | undefined;
  private buf = '';
  /** True while skipping the rest of an over-long line. */
  private skipping = false;
  private errBuf = '';
  private readonly maxLine: number;

  constructor(private readonly o: StdioTransportOptions) {
    this.maxLine = o.maxLineLength ?? 64 * 1024 * 1024;
  }

  /** Process id of the child, once spawned. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  setProtocolVersion(): void {}

  start(): Promise<void> {
    if (this.state !== 'new') return Promise.reject(new Error('stdio transport already started'));
    this.state = 'starting';
    const { command, serverName } = this.o;
    const env = defaultEnvironment();
    if (this.o.env) Object.assign(env, this.o.env);
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(command, this.o.args ?? [], {
        env,
        cwd: this.o.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        windowsHide: true,
      });
    } catch (err) {
      // Invalid arguments (a NUL byte, a bad cwd type) throw synchronously.
      this.state = 'gone';
      return Promise.reject(new Error(`cannot start ${command}: ${(err as Error).message}`, { cause: err }));
    }
    this.child = child;
    let markExited!: () => void;
    this.exited = new Promise((r) => (markExited = r));

    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => this.read(chunk));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => this.readStderr(chunk));
    child.stderr.on('end', () => {
      if (this.errBuf) this.logStderr(this.errBuf);
      this.errBuf = '';
    });
    // EPIPE and friends: reported, never thrown. The child can no longer read what we send, so the
    // channel is useless: it is shut down (and the caller's supervisor restarts it).
    child.stdin.on('error', (err) => {
      if (this.state !== 'open' || this.closing) return;
      const e = new Error(`stdio backend "${serverName}" stopped reading its stdin (${err.message})`, {
        cause: err,
      });
      this.fail(e);
      this.closing = this.shutdown(e);
    });

    return new Promise<void>((resolve, reject) => {
      child.once('spawn', () => {
        if (this.state !== 'starting') return;
        this.state = 'open';
        resolve();
      });
      child.on('error', (err) => {
        if (this.state === 'starting') {
          // Not spawned (ENOENT, EACCES, a missing cwd): no 'exit' follows.
          this.state = 'gone';
          markExited();
          reject(new Error(`cannot start ${command}: ${err.message}`, { cause: err }));
        } else {
          this.fail(new Error(`stdio backend "${serverName}": ${err.message}`));
        }
      });
      child.once('exit', (code, signal) => {
        markExited();
        this.exitReason = new ProcessExitError(
          `stdio backend "${serverName}" exited with ${signal ? `signal ${signal}` : `code ${code}`}`,
          code,
          signal,
        );
        if (this.closing || this.state === 'gone') return;
        // Let the rest of stdout arrive (messages written just before exiting), but do not wait for a
        // grandchild that inherited the pipe.
        if (child.stdout.readableEnded) return this.finish(this.exitReason);
        const timer = setTimeout(() => this.finish(this.exitReason), DRAIN_AFTER_EXIT_MS);
        timer.unref();
        child.stdout.once('close', () => {
          clearTimeout(timer);
          this.finish(this.exitReason);
        });
      });
    });
  }

  send(message: JsonRpcMessage): Promise<void> {
    const c = this.child;
    if (this.state !== 'open' || c === undefined || !c.stdin.writable) {
      const text = `stdio backend "${this.o.serverName}" is not running`;
      const id = requestId(message);
      if (id !== undefined) {
        this.deliver(
          {
            jsonrpc: '2.0',
            id,
            error: { code: -32603, message: text, data: { code: 'GW_BACKEND_UNAVAILABLE' } },
          },
          NO_CONTEXT,
        );
      } else {
        this.onerror?.(new Error(text));
      }
      return Promise.resolve();
    }
    let line: string;
    try {
      line = JSON.stringify(message);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    // A write to a pipe whose reader is gone fails asynchronously (EPIPE on stdin's 'error').
    c.stdin.write(line + '\n');
    return Promise.resolve();
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown(undefined));
  }

  /** Ends the process (stdin EOF, SIGTERM, SIGKILL) and reports `reason` (undefined: closed by us). */
  private async shutdown(reason: Error | undefined): Promise<void> {
    const c = this.child;
    if (c && this.state !== 'gone' && c.exitCode === null && c.signalCode === null) {
      const grace = this.o.shutdownGraceMs ?? 2000;
      c.stdin.end();
      if (!(await this.waitExit(grace))) {
        this.o.log.debug({ server: this.o.serverName }, 'stdio backend ignored closed stdin; SIGTERM');
        c.kill('SIGTERM');
        if (!(await this.waitExit(grace))) {
          this.o.log.warn({ server: this.o.serverName }, 'stdio backend ignored SIGTERM; SIGKILL');
          c.kill('SIGKILL');
          await this.exited;
        }
      }
    }
    if (c) {
      // Release the pipes even if a grandchild still holds their other ends.
      c.stdout.destroy();
      c.stderr.destroy();
      c.stdin.destroy();
    }
    this.finish(reason);
  }

  private waitExit(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([
      this.exited.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms))),
    ]).finally(() => clearTimeout(timer));
  }

  private read(chunk: string): void {
    let nl = chunk.indexOf('\n');
    if (nl < 0) {
      if (this.skipping) return;
      this.buf = this.buf.length === 0 ? chunk : this.buf + chunk;
      if (this.buf.length > this.maxLine) {
        this.report(this.buf, `a line longer than ${this.maxLine} characters`);
        this.buf = '';
        this.skipping = true;
      }
      return;
    }
    let start = 0;
    if (this.skipping) {
      this.skipping = false;
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    } else if (this.buf.length !== 0) {
      const line = this.buf + chunk.slice(0, nl);
      this.buf = '';
      this.line(line);
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    while (nl >= 0) {
      if (nl > start) this.line(chunk.slice(start, nl));
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    if (start < chunk.length) this.read(chunk.slice(start));
  }

  private line(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      if (line.trim().length !== 0) this.report(line, 'a line that is not JSON');
      return;
    }
    if (classify(msg) === 'invalid') {
      this.report(line, 'a line that is not a JSON-RPC message');
      const id = brokenResponseId(msg);
      if (id !== undefined)
        this.deliver(
          backendError(
            id,
            'GW_BACKEND_PROTOCOL_ERROR',
            `backend "${this.o.serverName}" sent an invalid response`,
          ),
          NO_CONTEXT,
        );
      return;
    }
    this.deliver(msg as JsonRpcMessage, NO_CONTEXT);
  }

  /** A handler that throws is logged; it must not stop the other lines of the chunk. */
  private deliver(msg: JsonRpcMessage, ctx: UpstreamMessageContext): void {
    try {
      this.onmessage?.(msg, ctx);
    } catch (err) {
      this.o.log.error({ server: this.o.serverName, err }, 'upstream onmessage handler threw');
    }
  }

  private report(line: string, what: string): void {
    const excerpt = line.length > 200 ? `${line.slice(0, 200)}...` : line;
    this.o.log.warn({ server: this.o.serverName, line: excerpt }, `stdio backend wrote ${what}`);
    this.onerror?.(new Error(`stdio backend "${this.o.serverName}" wrote ${what}: ${excerpt}`));
  }

  private readStderr(chunk: string): void {
    let start = 0;
    let nl = chunk.indexOf('\n');
    if (nl < 0) {
      this.errBuf += chunk;
      if (this.errBuf.length > MAX_LOGGED_LINE) {
        this.logStderr(this.errBuf);
        this.errBuf = '';
      }
      return;
    }
    if (this.errBuf.length !== 0) {
      this.logStderr(this.errBuf + chunk.slice(0, nl));
      this.errBuf = '';
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    while (nl >= 0) {
      this.logStderr(chunk.slice(start, nl));
      start = nl + 1;
      nl = chunk.indexOf('\n', start);
    }
    if (start < chunk.length) this.errBuf = chunk.slice(start);
  }

  private logStderr(line: string): void {
    const text = line.trimEnd();
    if (text.length === 0) return;
    this.o.log.info(
      {
        server: this.o.serverName,
        stderr: text.length > MAX_LOGGED_LINE ? `${text.slice(0, MAX_LOGGED_LINE)}...` : text,
      },
      'backend stderr',
    );
  }

  private fail(err: Error): void {
    this.o.log.warn({ server: this.o.serverName, error: err.message }, 'stdio backend error');
    this.onerror?.(err);
  }

  private finish(reason: Error | undefined): void {
    if (this.state === 'gone') return;
    this.state = 'gone';
    if (reason)
      this.o.log.warn({ server: this.o.serverName, reason: reason.message }, 'stdio backend closed');
    this.onclose?.(reason);
  }
}

function requestId(message: JsonRpcMessage): JsonRpcId | undefined {
  const m = message as { id?: JsonRpcId; method?: string };
  return m.method !== undefined ? m.id : undefined;
}
