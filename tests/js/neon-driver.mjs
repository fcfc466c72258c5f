// Drives the real @neondatabase/serverless driver (HTTP mode) against our endpoint through a fixed scenario, and
// prints one JSON object of what each step returned or threw. Input on stdin: {endpoint, connectionString,
// wrongPasswordString, table}.
import { neon, neonConfig, NeonDbError } from "@neondatabase/serverless";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, connectionString, wrongPasswordString, table } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
neonConfig.fetchEndpoint = endpoint;

const serialise = (value) =>
  JSON.parse(JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `${v}n` : v)));
const failure = (error) => ({
  name: error.name, message: error.message, code: error.code ?? null, position: error.position ?? null,
  constraint: error.constraint ?? null, isNeonDbError: error instanceof NeonDbError,
});
const out = {};
async function step(name, run) {
  try { out[name] = { ok: serialise(await run()) }; } catch (error) { out[name] = { error: failure(error) }; }
}

const sql = neon(connectionString);
await step("template", () => sql`SELECT ${41}::int + 1 AS answer, ${"it's"} AS quote, ${null}::text AS nothing`);
await step("dates", async () => {
  const [row] = await sql`SELECT '2024-01-02T03:04:05.678Z'::timestamptz AS ts, '2024-01-02'::date AS d`;
  return { ts: row.ts.toISOString(), tsIsDate: row.ts instanceof Date, d: row.d.toISOString() };
});
await step("query", () => sql.query("SELECT $1::int8 AS big, $2::numeric AS price", ["9007199254740993", "1.10"]));
await step("fullResults", async () => {
  const result = await sql.query("SELECT n FROM generate_series(1, 3) AS n", [], { fullResults: true });
  return { command: result.command, rowCount: result.rowCount, rows: result.rows,
           fields: result.fields.map((f) => [f.name, f.dataTypeID]) };
});
await step("arrayMode", () => sql.query("SELECT 1 AS a, 'b' AS b", [], { arrayMode: true }));
await step("create", () => sql.query(`CREATE TABLE ${table} (id int PRIMARY KEY, note text)`));
await step("transaction", () => sql.transaction([
  sql.query(`INSERT INTO ${table} VALUES ($1, $2)`, [1, "one"]),
  sql.query(`INSERT INTO ${table} VALUES ($1, $2) RETURNING id, note`, [2, "two"]),
  sql.query(`SELECT count(*)::int AS n FROM ${table}`),
], { isolationLevel: "Serializable" }));
await step("transactionOptions", () => sql.transaction((tx) => [
  tx`SELECT current_setting('transaction_isolation') AS iso, current_setting('transaction_read_only') AS ro`,
], { isolationLevel: "RepeatableRead", readOnly: true, deferrable: true }));
await step("readOnlyRefuses", () => sql.transaction([sql.query(`INSERT INTO ${table} VALUES (9, 'x')`)],
                                                   { readOnly: true }));
await step("rollback", () => sql.transaction([
  sql.query(`INSERT INTO ${table} VALUES (3, 'three')`),
  sql.query(`INSERT INTO ${table} VALUES (1, 'again')`),
]));
await step("afterRollback", () => sql.query(`SELECT id FROM ${table} ORDER BY id`));
await step("syntaxError", () => sql`SELEC 1`);
await step("missingTable", () => sql`SELECT * FROM no_such_table_here`);
await step("wrongPassword", () => neon(wrongPasswordString)`SELECT 1`);
await step("drop", () => sql.query(`DROP TABLE ${table}`));
process.stdout.write(JSON.stringify(out) + "\n");
