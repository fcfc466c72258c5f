// Drives the real @libsql/client (Hrana over HTTP) against our endpoint through a fixed scenario, and prints one
// JSON object of what each step returned or threw, with the worker (process id) that answered each request of the
// interactive transactions. Input on stdin: {url, token, otherToken, table, idleTimeout}.
// Every request goes on a new connection (Connection: close), so a server's workers share them out.
import { createClient, LibsqlError } from "@libsql/client";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { url, token, otherToken, table, idleTimeout } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

let workers = [];
const fetchOnNewConnections = async (input, init) => {
  const request = new Request(input, init);
  request.headers.set("connection", "close");
  const response = await fetch(request);
  workers.push(response.headers.get("x-test-worker"));
  return response;
};
const serialise = (value) =>
  JSON.parse(JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `${v}n` : v instanceof ArrayBuffer
    ? Array.from(new Uint8Array(v)) : v)));
const failure = (error) => ({
  name: error.name, message: error.message, code: error.code ?? null,
  isLibsqlError: error instanceof LibsqlError, statementIndex: error.statementIndex ?? null,
});
const out = {};
async function step(name, run) {
  try { out[name] = { ok: serialise(await run()) }; } catch (error) { out[name] = { error: failure(error) }; }
}
const rowsOf = (result) => result.rows.map((row) => Object.fromEntries(result.columns.map((c, i) => [c, row[i]])));

const db = createClient({ url, authToken: token, fetch: fetchOnNewConnections });
const exact = createClient({ url, authToken: token, intMode: "string", fetch: fetchOnNewConnections });

await step("execute", async () => {
  const result = await db.execute({ sql: "SELECT ? AS n, ? AS t, ? AS b, ? AS absent, 1.5 AS f", args: [41, "it's", new Uint8Array([0, 1, 255]), null] });
  return { columns: result.columns, rows: rowsOf(result), rowsAffected: result.rowsAffected };
});
await step("named", async () => rowsOf(await db.execute({ sql: "SELECT :a AS a, @b AS b, $c AS c", args: { a: 1, b: "two", c: null } })));
await step("bigint", async () => rowsOf(await exact.execute({ sql: "SELECT ? AS big, 9223372036854775807 AS max", args: [9007199254740993n] })));
await step("tooBig", async () => rowsOf(await db.execute("SELECT 9223372036854775807 AS max")));
await step("create", () => db.execute(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, note TEXT NOT NULL UNIQUE)`));
await step("insert", async () => {
  const result = await db.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["one"] });
  return { rowsAffected: result.rowsAffected, lastInsertRowid: result.lastInsertRowid };
});
await step("constraint", () => db.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["one"] }));
await step("syntax", () => db.execute("SELEC 1"));
const count = async () => rowsOf(await db.execute(`SELECT count(*) AS n FROM ${table}`))[0].n;
for (const mode of ["write", "read", "deferred"]) {
  await step(`batch_${mode}`, async () => {
    const statements = mode === "read"
      ? [`SELECT count(*) AS n FROM ${table}`, `SELECT max(id) AS m FROM ${table}`]
      : [{ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: [`batch-${mode}`] }, `SELECT count(*) AS n FROM ${table}`];
    const results = await db.batch(statements, mode);
    return results.map(rowsOf);
  });
}
await step("batch_read_refuses_write", () => db.batch([`INSERT INTO ${table} (note) VALUES ('read-mode')`], "read"));
await step("batch_rollback", async () => {
  const before = await count();
  let error = null;
  try {
    await db.batch([
      { sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["rolled-back"] },
      { sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["one"] },
    ], "write");
  } catch (e) { error = failure(e); }
  return { error, before, after: await count() };
});
await step("executeMultiple", async () => {
  await db.executeMultiple(`CREATE TABLE ${table}_m (x TEXT); INSERT INTO ${table}_m VALUES ('a;b'); INSERT INTO ${table}_m VALUES ('c');`);
  return rowsOf(await db.execute(`SELECT x FROM ${table}_m ORDER BY x`));
});
await step("migrate", async () => {
  const results = await db.migrate([`CREATE TABLE ${table}_g (y INTEGER)`, `INSERT INTO ${table}_g VALUES (7)`]);
  return results.map((r) => r.rowsAffected);
});

const transactions = {};
for (const [name, finish] of [["commit", "commit"], ["rollback", "rollback"]]) {
  await step(`transaction_${name}`, async () => {
    workers = [];
    const tx = await db.transaction("write");
    await tx.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: [`tx-${name}`] });
    await tx.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: [`tx-${name}-2`] });
    const inside = rowsOf(await tx.execute({ sql: `SELECT count(*) AS n FROM ${table} WHERE note LIKE ?`, args: [`tx-${name}%`] }))[0].n;
    const failed = await tx.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["one"] }).then(() => null, failure);
    await tx[finish]();
    transactions[name] = workers.slice();
    const after = rowsOf(await db.execute({ sql: `SELECT count(*) AS n FROM ${table} WHERE note LIKE ?`, args: [`tx-${name}%`] }))[0].n;
    return { inside, after, failed, closed: tx.closed };
  });
}
await step("transaction_read", async () => {
  const tx = await db.transaction("read");
  const n = rowsOf(await tx.execute(`SELECT count(*) AS n FROM ${table}`))[0].n;
  const write = await tx.execute(`INSERT INTO ${table} (note) VALUES ('in-read')`).then(() => null, failure);
  await tx.commit();
  return { n, write };
});
await step("transaction_batch", async () => {
  const tx = await db.transaction("write");
  const results = await tx.batch([{ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["tx-batch"] }, `SELECT count(*) AS n FROM ${table} WHERE note = 'tx-batch'`]);
  await tx.commit();
  return rowsOf(results[1]);
});
await step("expired", async () => {
  const tx = await db.transaction("write");
  await tx.execute({ sql: `INSERT INTO ${table} (note) VALUES (?)`, args: ["expired"] });
  await new Promise((resolve) => setTimeout(resolve, (idleTimeout + 1.5) * 1000));
  const late = await tx.execute("SELECT 1").then(() => null, failure);
  tx.close();
  const kept = rowsOf(await db.execute(`SELECT count(*) AS n FROM ${table} WHERE note = 'expired'`))[0].n;
  return { late, kept };
});

// The baton by hand: the client never reuses one, so raw pipelines show what a replayed, forged or borrowed one gets.
const pipeline = async (baton, requests, bearer = token) => {
  const response = await fetchOnNewConnections(new URL("v2/pipeline", url), {
    method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
    body: JSON.stringify({ baton, requests }),
  });
  return { status: response.status, type: response.headers.get("content-type"), body: await response.json() };
};
await step("batons", async () => {
  const opened = await pipeline(null, [{ type: "execute", stmt: { sql: "SELECT 1" } }]);
  const baton = opened.body.baton;
  const next = await pipeline(baton, [{ type: "execute", stmt: { sql: "SELECT 2" } }]);
  const replayed = await pipeline(baton, [{ type: "execute", stmt: { sql: "SELECT 3" } }]);
  const forged = await pipeline(next.body.baton.slice(0, -2) + "AA", [{ type: "execute", stmt: { sql: "SELECT 4" } }]);
  const borrowed = await pipeline(next.body.baton, [{ type: "execute", stmt: { sql: "SELECT 5" } }], otherToken);
  const owner = await pipeline(next.body.baton, [{ type: "execute", stmt: { sql: "SELECT 6 AS six" } }, { type: "close" }]);
  const strip = (r) => ({ status: r.status, type: r.type, code: r.body.code ?? null, baton: r.body.baton ?? null });
  return {
    opened: { ...strip(opened), hasBaton: typeof baton === "string" }, next: { status: next.status, differs: next.body.baton !== baton },
    replayed: strip(replayed), forged: strip(forged), borrowed: strip(borrowed),
    owner: { ...strip(owner), six: owner.body.results?.[0]?.response?.result?.rows?.[0]?.[0] ?? null },
  };
});
await step("wrongKey", () => createClient({ url, authToken: "not-the-key", fetch: fetchOnNewConnections }).execute("SELECT 1"));
await step("noKey", () => createClient({ url, fetch: fetchOnNewConnections }).execute("SELECT 1"));
out.transactionWorkers = transactions;
db.close();
exact.close();
console.log(JSON.stringify(out));
