// Drives the real @polyscale/serverless-js client: reads {endpoint, connection, queries:[{sql, bindings}]} as JSON
// on stdin and prints one JSON line with each outcome ({ok: rows} or {error: thrown value}) in order.
import { Client } from "@polyscale/serverless-js";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, connection, queries } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const client = new Client(endpoint, connection);
const outcomes = [];
for (const { sql, bindings } of queries) {
  try {
    outcomes.push({ ok: await client.query(sql, bindings) });
  } catch (error) {
    outcomes.push({ error: error instanceof Error ? { name: error.name, message: error.message } : error });
  }
}
process.stdout.write(JSON.stringify(outcomes) + "\n");
