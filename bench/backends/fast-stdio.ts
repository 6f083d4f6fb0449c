/**
 * The fast benchmark backend over stdio: newline-delimited JSON-RPC on stdin/stdout, no SDK.
 *
 *   node dist/bench/backends/fast-stdio.js
 *
 * Same surface as fast-http (initialize, ping, tools/list, tools/call echo). Stdout carries only MCP; the
 * answers to all the lines of one input chunk go out in one write. Exits when stdin closes.
 */
import { errorBody, handle, type JsonRpcMessage } from './surface.js';

let pending = '';

function answer(line: string, out: string[]): void {
  if (line.length === 0 || line === '\r') return;
  let msg: JsonRpcMessage;
  try {
    msg = JSON.parse(line);
  } catch {
    out.push(JSON.stringify(errorBody(null, -32700, 'Parse error')));
    return;
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    out.push(JSON.stringify(errorBody(null, -32600, 'Invalid Request')));
    return;
  }
  const reply = handle(msg, 'fast-stdio');
  if (reply !== undefined) out.push(JSON.stringify(reply.body));
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  const out: string[] = [];
  let nl = chunk.indexOf('\n');
  if (nl === -1) {
    pending += chunk;
    return;
  }
  answer(pending + chunk.slice(0, nl), out);
  pending = '';
  let start = nl + 1;
  while ((nl = chunk.indexOf('\n', start)) !== -1) {
    answer(chunk.slice(start, nl), out);
    start = nl + 1;
  }
  pending = chunk.slice(start);
  if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
});
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
// EPIPE when the parent goes away: nothing left to do.
process.stdout.on('error', () => process.exit(0));
