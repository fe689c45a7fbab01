#!/usr/bin/env node
// A small MCP client over stdio, on the official TypeScript SDK: runs one
// heavy_orchestrate call against a heavyd binary and prints the answer.
// Used by scripts/demo; `--json` prints the structured result instead.
//   node client.mjs --server build/heavyd [--agents N] [--timeout S] [--json] "query"
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { CallToolResultSchema } from '@modelcontextprotocol/sdk/types.js';

function parseArgs(argv) {
  const o = { server: 'build/heavyd', agents: 4, timeout: 300, json: false, query: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--server') o.server = argv[++i];
    else if (a === '--agents') o.agents = Number(argv[++i]);
    else if (a === '--timeout') o.timeout = Number(argv[++i]);
    else if (a === '--json') o.json = true;
    else if (o.query === null) o.query = a;
    else throw new Error(`unexpected argument: ${a}`);
  }
  if (!o.query) throw new Error('usage: client.mjs [--server PATH] [--agents N] [--timeout S] [--json] "query"');
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const transport = new StdioClientTransport({
  command: opts.server, args: [], env: { ...process.env }, stderr: 'inherit',
});
const client = new Client({ name: 'heavyd-demo', version: '1.0.0' });
const t0 = Date.now();
const stamp = () => `[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`;

await client.connect(transport);
const info = client.getServerVersion();
process.stderr.write(`${stamp()} connected to ${info.name} ${info.version}\n`);
let result;
try {
  result = await client.callTool(
    { name: 'heavy_orchestrate', arguments: { query: opts.query, num_agents: opts.agents, timeout: opts.timeout } },
    CallToolResultSchema,
    {
      onprogress: (p) => process.stderr.write(`${stamp()} ${String(Math.floor(p.progress)).padStart(2)}/${p.total} ${p.message ?? ''}\n`),
      resetTimeoutOnProgress: true,
      timeout: (opts.timeout + 30) * 1000,
    });
} finally {
  await client.close();
}
const s = result.structuredContent;
if (opts.json) {
  process.stdout.write(JSON.stringify(s ?? result, null, 2) + '\n');
} else {
  process.stdout.write(`\n${result.content?.[0]?.text ?? ''}\n\n`);
  if (s) {
    for (const a of s.agents)
      process.stderr.write(`agent ${a.index}: ${a.status.padEnd(9)} ${String(a.elapsed_ms).padStart(6)} ms  ${a.error ?? ''}\n`);
    process.stderr.write(`synthesized: ${s.synthesized}; planner fallback: ${s.planner_fallback}; ` +
      `tokens: ${s.usage.total_tokens}; llm calls: ${s.usage.llm_calls}; elapsed: ${s.elapsed_ms} ms\n`);
  }
}
process.exitCode = result.isError ? 1 : 0;
