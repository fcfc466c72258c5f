// Runs queries through the real @neondatabase/serverless driver (HTTP mode): reads {endpoint, connectionString,
// queries: [sql]} on stdin and prints a JSON list with each outcome ({ok: rows} or {error: what it threw}).
import { neon, neonConfig, NeonDbError } from "@neondatabase/serverless";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, connectionString, queries } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
neonConfig.fetchEndpoint = endpoint;
const sql = neon(connectionString);
const outcomes = [];
for (const text of queries) {
  try {
    outcomes.push({ ok: await sql.query(text) });
  } catch (error) {
    outcomes.push({ error: { name: error.name, message: error.message, code: error.code ?? null,
                             isNeonDbError: error instanceof NeonDbError } });
  }
}
process.stdout.write(JSON.stringify(outcomes) + "\n");
