// Drives the real @planetscale/database driver against our endpoint through a fixed scenario, and prints one JSON
// object of what each step returned or threw, with what answered each request of the interactive transactions.
// Input on stdin: {origin, username, password, rewrite, extraRewrites, rootServed, table, localFile, tricky}.
// `rewrite` is null (the driver posts at the origin's root, as it always does) or the mount path its requests are
// moved under by its `fetch` ("/sql/" or "/sql/TARGET/"); `extraRewrites` are more of those, tried briefly.
// Every request goes on a new connection (Connection: close), so a server's workers share them out.
import { Client, connect, DatabaseError } from "@planetscale/database";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { origin, username, password, rewrite, extraRewrites, rootServed, table, localFile, tricky } =
  JSON.parse(Buffer.concat(chunks).toString("utf8"));

// What answered each request ({worker, status, type, path}), in order, by log: "all" by default, "tx" for the
// transactions' own connections, and a log of its own for a step that looks at its HTTP statuses.
const logs = {};
const fetchVia = (prefix, log = "all") => async (url, init) => {
  const target = prefix === null ? url : url.replace("/psdb.", `${prefix}psdb.`);
  const request = new Request(target, init);
  request.headers.set("connection", "close");
  const response = await fetch(request);
  (logs[log] ??= []).push({ worker: response.headers.get("x-test-worker"), status: response.status,
                            type: response.headers.get("content-type"), path: new URL(target).pathname });
  return response;
};
const urlFor = (secret = password) =>
  origin.replace("://", `://${encodeURIComponent(username)}:${encodeURIComponent(secret)}@`);
const connectVia = (prefix, log = "all", secret = password) => connect({ url: urlFor(secret), fetch: fetchVia(prefix, log) });
const serialise = (value) =>
  JSON.parse(JSON.stringify(value, (key, v) => (typeof v === "bigint" ? `${v}n` : v instanceof Uint8Array
    ? { bytes: Array.from(v) } : v)));
const failure = (error) => ({
  name: error.name, message: error.message, status: error.status ?? null, body: error.body ?? null,
  isDatabaseError: error instanceof DatabaseError,
});
const out = {};
async function step(name, run) {
  try { out[name] = { ok: serialise(await run()) }; } catch (error) { out[name] = { error: failure(error) }; }
}
const shape = (result) => ({
  rows: result.rows, headers: result.headers, types: result.types, rowsAffected: result.rowsAffected,
  insertId: result.insertId, size: result.size,
});
const settle = (results) => results.map((r) => (r.status === "fulfilled" ? { ok: shape(r.value) }
  : { error: failure(r.reason) }));
// A step whose one request must fail: what was thrown, and the HTTP status that came back.
async function failing(name, run) {
  logs[name] = [];
  const error = await run(connectVia(rewrite, name)).then((result) => ({ unexpected: shape(result) }), failure);
  out[name] = { error, http: logs[name].map((r) => r.status) };
}

const conn = connectVia(rewrite);
const count = async (pattern) => Number((await conn.execute(
  `SELECT count(*) AS n FROM ${table} WHERE note LIKE ?`, [pattern])).rows[0].n);
const stamp = new Date("2024-01-02T03:04:05.678Z");
const bytes = new Uint8Array([0, 1, 39, 92, 127, 128, 255]);

await step("positional", async () => shape(await conn.execute(
  "SELECT ? AS s, ? AS i, ? AS neg, ? AS f, ? AS nil, ? AS yes, ? AS no, ? AS d, ? AS b, ? AS big",
  [tricky, 42, -7, 1.5, null, true, false, stamp, bytes, 9007199254740993n], { as: "array" })));
await step("named", async () => shape(await conn.execute(
  "SELECT :s AS s, :n AS n, :nil AS nil, :s = :s AS same, ':n' AS literal", { s: tricky, n: 3, nil: null })));
await step("create", async () => shape(await conn.execute(
  `CREATE TABLE ${table} (id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(100) NOT NULL UNIQUE, body TEXT,
   big BIGINT, small TINYINT(1), f DOUBLE, price DECIMAL(10,2), at DATETIME(3), day DATE, bin VARBINARY(16))
   DEFAULT CHARSET=utf8mb4`)));
await step("insertPositional", async () => shape(await conn.execute(
  `INSERT INTO ${table} (note, body, big, small, f, price, at, day, bin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ["positional", tricky, 9007199254740993n, true, 2.25, "12.30", stamp, "2024-02-29", bytes])));
await step("insertNamed", async () => shape(await conn.execute(
  `INSERT INTO ${table} (note, body, big, small, f, price, at, day, bin)
   VALUES (:note, :body, :big, :small, :f, :price, :at, :day, :bin)`,
  { note: "named", body: tricky, big: -9223372036854775808n, small: false, f: -0.5, price: "-1.05", at: stamp,
    day: "1999-12-31", bin: new Uint8Array([]) })));
await step("insertMany", async () => shape(await conn.execute(
  `INSERT INTO ${table} (note) VALUES (?), (?), (?)`, ["many-1", "many-2", "many-3"])));
await step("updateNone", async () => shape(await conn.execute(
  `UPDATE ${table} SET body = 'x' WHERE note = ?`, ["nobody"])));
await step("update", async () => shape(await conn.execute(
  `UPDATE ${table} SET small = 5 WHERE note LIKE ?`, ["many-%"])));
await step("select", async () => {
  const result = await conn.execute(`SELECT id, note, body, big, small, f, price, at, day, bin, NULL AS nothing
    FROM ${table} WHERE note IN (?) ORDER BY id`, [["positional", "named"]]);
  return { ...shape(result), fields: result.fields, sameBody: result.rows.map((row) => row.body === tricky) };
});
await step("selectArray", async () => shape(await conn.execute(
  `SELECT id, note, small FROM ${table} WHERE note LIKE :p ORDER BY id`, { p: "many-%" }, { as: "array" })));
await step("client", async () => shape(await new Client({ url: urlFor(), fetch: fetchVia(rewrite) })
  .execute("SELECT ? AS via", ["client"])));
await step("refresh", async () => {
  const fresh = connectVia(rewrite);
  await fresh.refresh();  // CreateSession
  return { session: fresh.session, after: (await fresh.execute("SELECT 7 AS seven")).rows };
});

// The database's errors come in a 200 carrying `error`, which the driver throws as DatabaseError(…, 400, error);
// our own refusals are non-2xx, thrown with their status.
await failing("duplicate", (c) => c.execute(`INSERT INTO ${table} (note) VALUES (?)`, ["positional"]));
await failing("unknownTable", (c) => c.execute("SELECT * FROM no_such_table_here"));
await failing("syntax", (c) => c.execute("SELEC 1"));
await failing("wrongPassword", () => connectVia(rewrite, "wrongPassword", "not-the-password").execute("SELECT 1"));
// What the driver's contract rules out: more than one statement in a request, and reading the client's files.
await failing("multiStatement", (c) => c.execute("SELECT 1 AS one; SELECT 2 AS two"));
await failing("multiInsert", (c) => c.execute(
  `INSERT INTO ${table} (note) VALUES ('multi-1'); INSERT INTO ${table} (note) VALUES ('multi-2')`));
await step("multiInsertAfter", () => count("multi-%"));
await step("loadTable", () => conn.execute(`CREATE TABLE ${table}_load (line TEXT)`));
await failing("loadData", (c) => c.execute(`LOAD DATA LOCAL INFILE ? INTO TABLE ${table}_load`, [localFile]));
await step("loadDataAfter", async () => Number((await conn.execute(`SELECT count(*) AS n FROM ${table}_load`)).rows[0].n));

// Interactive transactions: BEGIN, the statements, COMMIT or ROLLBACK, each request on a new connection.
const txConn = connectVia(rewrite, "tx");
const txClient = new Client({ url: urlFor(), fetch: fetchVia(rewrite, "tx") });
const inTransaction = (tx) => tx.conn.session?.vitessSession?.inTransaction ?? null;
const transactionRequests = {};
async function traced(name, run) {
  logs.tx = [];
  await step(name, run);
  transactionRequests[name] = logs.tx.map((r) => ({ worker: r.worker, status: r.status }));
}
await traced("commit", async () => {
  const inside = await txClient.transaction(async (tx) => {
    const first = await tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, ["tx-commit-1"]);
    await tx.execute(`INSERT INTO ${table} (note) VALUES (:note)`, { note: "tx-commit-2" });
    const seen = (await tx.execute(`SELECT count(*) AS n FROM ${table} WHERE note LIKE 'tx-commit-%'`)).rows[0].n;
    const outside = await count("tx-commit-%");  // from another session: not committed yet
    return { insertId: first.insertId, seen, outside, inTransaction: inTransaction(tx) };
  });
  return { ...inside, after: await count("tx-commit-%") };
});
await traced("rollback", async () => {
  let seen = null;
  const thrown = await txConn.transaction(async (tx) => {
    await tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, ["tx-rollback-1"]);
    await tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, ["tx-rollback-2"]);
    seen = (await tx.execute(`SELECT count(*) AS n FROM ${table} WHERE note LIKE 'tx-rollback-%'`)).rows[0].n;
    throw new Error("changed my mind");
  }).then(() => null, (error) => error.message);
  return { thrown, seen, after: await count("tx-rollback-%") };
});
await traced("savepoint", async () => {
  const inside = await txConn.transaction(async (tx) => {
    const steps = {};
    const note = (text) => tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, [text]);
    const notes = async () => (await tx.execute(`SELECT note FROM ${table} WHERE note LIKE 'sp-%' ORDER BY note`))
      .rows.map((r) => r.note);
    await note("sp-1");
    await tx.execute("SAVEPOINT a");
    await note("sp-2");
    steps.beforeRollbackTo = await notes();
    await tx.execute("ROLLBACK TO SAVEPOINT a");
    steps.afterRollbackTo = await notes();
    steps.inTransactionAfterRollbackTo = inTransaction(tx);
    await note("sp-3");
    await tx.execute("RELEASE SAVEPOINT a");
    steps.inTransactionAfterRelease = inTransaction(tx);
    steps.released = await tx.execute("ROLLBACK TO SAVEPOINT a").then(() => null, failure);
    steps.inTransactionAfterError = inTransaction(tx);
    steps.outside = await count("sp-%");
    return steps;
  });
  const rows = (await conn.execute(`SELECT note FROM ${table} WHERE note LIKE 'sp-%' ORDER BY note`)).rows;
  return { ...inside, after: rows.map((r) => r.note) };
});

// Two requests on one session at once: the second is sent while the first is running on the session's connection
// (seen in the processlist from another session), so it meets the session in use.
async function runningOnDatabase(marker) {
  for (let i = 0; i < 250; i++) {
    const { rows } = await conn.execute(
      "SELECT count(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE ?", [`SELECT SLEEP(2) AS ${marker}%`]);
    if (Number(rows[0].n) > 0) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}
for (const finish of ["commit", "rollback"]) {
  await traced(`busy_${finish}`, async () => {
    const marker = `${table}_busy_${finish}`;
    let inside = null;
    const thrown = await txConn.transaction(async (tx) => {
      await tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, [`busy-${finish}-1`]);
      const slow = tx.execute(`SELECT SLEEP(2) AS ${marker}`);
      const observed = await runningOnDatabase(marker);
      const fast = tx.execute("SELECT 2 AS two");
      const settled = settle(await Promise.allSettled([slow, fast]));
      await tx.execute(`INSERT INTO ${table} (note) VALUES (?)`, [`busy-${finish}-2`]);
      const seen = (await tx.execute(`SELECT count(*) AS n FROM ${table} WHERE note LIKE ?`, [`busy-${finish}-%`]))
        .rows[0].n;
      inside = { observed, settled, seen, inTransaction: inTransaction(tx) };
      if (finish === "rollback") throw new Error("roll it back");
    }).then(() => null, (error) => error.message);
    return { ...inside, thrown, after: await count(`busy-${finish}-%`) };
  });
}
out.transactionRequests = transactionRequests;

// The other ways in: each extra rewrite (a mount path), a target that is not there, and the origin's root when it
// is not served (the host app answers it).
for (const prefix of extraRewrites) {
  await step(`via ${prefix}`, async () => {
    const log = `via ${prefix}`;
    const other = connectVia(prefix, log);
    const { rows } = await other.execute("SELECT ? AS via, database() AS db", [prefix]);
    const tx = await other.transaction(async (t) => (await t.execute("SELECT 1 AS one")).rows);
    return { rows, tx, paths: [...new Set(logs[log].map((r) => r.path))] };
  });
}
await step("unknownTarget", () => connectVia("/sql/no_such_target/", "unknownTarget").execute("SELECT 1"));
if (!rootServed) {
  await step("rootUnserved", async () => {
    logs.root = [];
    const error = await connectVia(null, "root").execute("SELECT 1").then((r) => ({ unexpected: shape(r) }), failure);
    const reply = await fetch(`${origin}/psdb.v1alpha1.Database/Execute`, {
      method: "POST", headers: { "content-type": "application/json", connection: "close" },
      body: JSON.stringify({ query: "SELECT 1", session: null }),
    });
    return { error, requests: logs.root.map(({ status, type, path }) => ({ status, type, path })),
             reply: { status: reply.status, type: reply.headers.get("content-type"), text: await reply.text() } };
  });
}
out.paths = [...new Set(logs.all.map((r) => r.path))].sort();  // where the scenario's own requests went
console.log(JSON.stringify(out));
