/**
 * A small demo backend that ships with mcpgw (stdio, no network): an in-memory notebook with tools, a
 * resource per note, a resource template and a prompt. Used by `npm start` and by tests.
 */
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/server';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

const notes = new Map<string, string>([['welcome', 'mcpgw routes this note from a stdio backend.']]);
const server = new McpServer(
  { name: 'mcpgw-demo-notes', version: '1.0.0' },
  { capabilities: { logging: {} } },
);

server.registerTool(
  'add_note',
  {
    description: 'Store a note under a name',
    inputSchema: z.object({ name: z.string().regex(/^[a-z0-9-]+$/), text: z.string() }),
    annotations: { idempotentHint: true, destructiveHint: false },
  },
  async ({ name, text }) => {
    notes.set(name, text);
    server.sendResourceListChanged();
    return { content: [{ type: 'text', text: `stored ${name}` }] };
  },
);

server.registerTool(
  'list_notes',
  { description: 'Names of every stored note', annotations: { readOnlyHint: true } },
  async () => ({
    content: [{ type: 'text', text: [...notes.keys()].join('\n') }],
    structuredContent: { names: [...notes.keys()] },
  }),
);

server.registerResource(
  'note',
  new ResourceTemplate('notes://{name}', {
    list: async () => ({
      resources: [...notes.keys()].map((n) => ({ uri: `notes://${n}`, name: n, mimeType: 'text/plain' })),
    }),
  }),
  { description: 'A stored note' },
  async (uri, vars) => {
    const text = notes.get(String(vars.name));
    if (text === undefined) throw new Error(`no note named ${String(vars.name)}`);
    return { contents: [{ uri: uri.href, mimeType: 'text/plain', text }] };
  },
);

server.registerPrompt('summarize_notes', { description: 'Ask the model to summarize every note' }, () => ({
  messages: [
    {
      role: 'user',
      content: {
        type: 'text',
        text: `Summarize these notes:\n${[...notes].map(([n, t]) => `- ${n}: ${t}`).join('\n')}`,
      },
    },
  ],
}));

await server.connect(new StdioServerTransport());
