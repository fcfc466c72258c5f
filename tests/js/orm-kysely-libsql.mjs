// Kysely with @libsql/kysely-libsql's LibsqlDialect, given a real @libsql/client (Hrana over HTTP) made here, against
// our endpoint: reads {url, token, prefix} as JSON on stdin, builds PREFIX_authors and PREFIX_books with Kysely's
// schema builder, runs a small schema end to end and prints one JSON object with what each step returned or threw,
// for tests/test_orms_libsql.py. Every request goes on a new connection (Connection: close), so a server's workers
// share out the requests of one interactive transaction; `transactions` records which worker answered each of them.
import { createClient } from "@libsql/client";
import { LibsqlDialect } from "@libsql/kysely-libsql";
import { Kysely, sql } from "kysely";
import { jsonArrayFrom } from "kysely/helpers/sqlite";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { url, token, prefix } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

let workers = [];
const fetchOnNewConnections = async (input, init) => {
  const request = new Request(input, init);
  request.headers.set("connection", "close");
  const response = await fetch(request);
  workers.push(response.headers.get("x-test-worker"));
  return response;
};
// The dialect is given this client: with {url} it would make one from its own, older, nested @libsql/client.
const client = createClient({ url, authToken: token, fetch: fetchOnNewConnections });
const db = new Kysely({ dialect: new LibsqlDialect({ client }) });
const A = `${prefix}_authors`;
const B = `${prefix}_books`;

const out = {};
const transactions = {};
const failure = (e) => ({ name: e.name, message: e.message, code: e.code ?? null });
const attempt = async (run) => {
  try { return { ok: await run() }; } catch (e) { return { error: failure(e) }; }
};
// A transaction, with the workers that answered each of its requests (from BEGIN to COMMIT or ROLLBACK).
const tracked = async (name, run) => {
  workers = [];
  try { return await attempt(run); } finally { transactions[name] = workers.slice(); }
};
const authorNames = async () => (await db.selectFrom(A).select("name").orderBy("id").execute()).map((a) => a.name);
const titles = async () => (await db.selectFrom(B).select("title").orderBy("id").execute()).map((b) => b.title);

await db.schema.createTable(A)
  .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  .addColumn("name", "text", (c) => c.notNull().unique())
  .execute();
await db.schema.createTable(B)
  .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  .addColumn("author_id", "integer", (c) => c.notNull().references(`${A}.id`))
  .addColumn("title", "text", (c) => c.notNull())
  .addColumn("pages", "integer", (c) => c.notNull())
  .addColumn("price", "real", (c) => c.notNull())
  .addColumn("cover", "blob")
  .addColumn("subtitle", "text")
  .addUniqueConstraint(`${B}_author_title`, ["author_id", "title"])
  .execute();
// SqliteIntrospector: sqlite_master and pragma_table_info, through the endpoint.
out.introspected = (await db.introspection.getTables())
  .filter((t) => t.name === A || t.name === B)
  .map((t) => ({ name: t.name, columns: t.columns.map((c) => [c.name, c.dataType, c.isNullable, c.isAutoIncrementing]) }))
  .sort((x, y) => x.name.localeCompare(y.name));

out.authors = await db.insertInto(A)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .returningAll().execute();
const [leGuin, lem, butler] = out.authors.map((a) => a.id);
out.books = await db.insertInto(B).values([
  { author_id: leGuin, title: "The Dispossessed", pages: 387, price: 12.5, cover: new Uint8Array([0, 1, 2, 255]),
    subtitle: "An Ambiguous Utopia" },
  { author_id: leGuin, title: "A Wizard of Earthsea", pages: 183, price: 9.99, cover: null, subtitle: null },
  { author_id: lem, title: "Solaris", pages: 204, price: 0.1, cover: new Uint8Array(0) },
  { author_id: butler, title: "Kindred", pages: 264, price: 1e-7, cover: new TextEncoder().encode("it's ☃") },
]).returningAll().execute();
const single = await db.insertInto(A).values({ name: "Temp Author" }).executeTakeFirst();
out.insertId = single.insertId;
out.insertedRows = single.numInsertedOrUpdatedRows;

out.joined = await db.selectFrom(`${B} as b`).innerJoin(`${A} as a`, "a.id", "b.author_id")
  .select(["b.title", "a.name as author", "b.price"])
  .where((eb) => eb.and([eb("a.name", "in", ["Ursula K. Le Guin", "Stanisław Lem"]), eb("b.pages", ">", 190)]))
  .orderBy("b.price", "desc").execute();
out.nullable = await db.selectFrom(B).select("title").where("subtitle", "is", null).orderBy("id").execute();
out.totals = await db.selectFrom(`${A} as a`).innerJoin(`${B} as b`, "b.author_id", "a.id")
  .select((eb) => ["a.name", eb.fn.countAll().as("books"), eb.fn.sum("b.pages").as("pages")])
  .groupBy("a.name").orderBy("a.name").execute();
out.nested = await db.selectFrom(`${A} as a`).where("a.id", "=", leGuin)
  .select((eb) => ["a.name", jsonArrayFrom(eb.selectFrom(`${B} as b`).select(["b.title", "b.pages"])
    .whereRef("b.author_id", "=", "a.id").orderBy("b.id")).as("books")])
  .execute();
out.raw = (await sql`SELECT typeof(price) AS kind, hex(cover) AS cover, length(cover) AS n FROM ${sql.table(B)}
  WHERE title = ${"Kindred"}`.execute(db)).rows;

out.duplicate = await attempt(() => db.insertInto(A).values({ name: "Stanisław Lem" }).execute());
out.duplicatePair = await attempt(() => db.insertInto(B)
  .values({ author_id: lem, title: "Solaris", pages: 1, price: 1 }).execute());
// A book whose author does not exist, in a transaction that is rolled back whatever the insert did.
out.orphan = await (async () => {
  let result;
  await db.transaction().execute(async (trx) => {
    result = await attempt(() => trx.insertInto(B).values({ author_id: 999999, title: "Orphan", pages: 1, price: 1 })
      .execute());
    throw new Error("probe");
  }).catch(() => null);
  return result;
})();

const updated = await db.updateTable(B).set({ price: 15, subtitle: sql`subtitle || ' (revised)'` })
  .where("title", "=", "The Dispossessed").executeTakeFirst();
out.updatedRows = updated.numUpdatedRows;
out.upserted = await db.insertInto(A).values({ name: "Stanisław Lem" })
  .onConflict((oc) => oc.column("name").doUpdateSet({ name: sql`excluded.name || ' (again)'` }))
  .returning(["id", "name"]).execute();
const deleted = await db.deleteFrom(B).where("title", "=", "Solaris").executeTakeFirst();
out.deletedRows = deleted.numDeletedRows;
const removed = await db.deleteFrom(A).where("name", "=", "Temp Author").executeTakeFirst();
out.removedRows = removed.numDeletedRows;

// Interactive transactions: every statement is its own request, with the stream's baton.
out.committed = await tracked("commit", () => db.transaction().execute(async (trx) => {
  const author = await trx.insertInto(A).values({ name: "N. K. Jemisin" }).returning("id").executeTakeFirstOrThrow();
  await trx.insertInto(B).values({ author_id: author.id, title: "The Fifth Season", pages: 468, price: 11.25 }).execute();
  const inside = await trx.selectFrom(B).select((eb) => eb.fn.countAll().as("n")).where("author_id", "=", author.id)
    .executeTakeFirstOrThrow();
  return { inside: inside.n };
}));
out.afterCommit = { authors: await authorNames(), titles: await titles() };

out.rolledBack = await tracked("rollback", () => db.transaction().execute(async (trx) => {
  const author = await trx.insertInto(A).values({ name: "Rolled Back Author" }).returning("id").executeTakeFirstOrThrow();
  await trx.insertInto(B).values({ author_id: author.id, title: "Never Written", pages: 1, price: 1 }).execute();
  await trx.updateTable(B).set({ price: 999 }).where("title", "=", "Kindred").execute();
  const inside = await trx.selectFrom(B).select((eb) => eb.fn.countAll().as("n")).where("title", "=", "Never Written")
    .executeTakeFirstOrThrow();
  out.rolledBackInside = inside.n;
  throw new Error("changed my mind");
}));
out.afterRollback = { authors: await authorNames(), titles: await titles(),
  kindred: (await db.selectFrom(B).select("price").where("title", "=", "Kindred").executeTakeFirstOrThrow()).price };

// A statement that fails inside a transaction: the callback throws its error, and the transaction rolls back.
out.failedInside = await tracked("failedInside", () => db.transaction().execute(async (trx) => {
  await trx.insertInto(A).values({ name: "Before The Failure" }).execute();
  await trx.insertInto(A).values({ name: "Ursula K. Le Guin" }).execute();
}));

// A controlled transaction: commit() and rollback() by hand, and savepoints in SQL. The dialect has no savepoint
// methods, so Kysely's own trx.savepoint() is refused before anything is sent.
out.controlled = await tracked("controlled", async () => {
  const trx = await db.startTransaction().execute();
  await trx.insertInto(A).values({ name: "Controlled Author" }).execute();
  await sql`SAVEPOINT before_draft`.execute(trx);
  await trx.insertInto(A).values({ name: "Draft Author" }).execute();
  await sql`ROLLBACK TO SAVEPOINT before_draft`.execute(trx);
  await sql`RELEASE SAVEPOINT before_draft`.execute(trx);
  const refused = await trx.savepoint("kysely_savepoint").execute().then(() => null, failure);
  const inside = (await trx.selectFrom(A).select("name").where("name", "like", "%Author").orderBy("id").execute())
    .map((a) => a.name);
  await trx.commit().execute();
  return { refused, inside, committed: trx.isCommitted, rolledBack: trx.isRolledBack };
});
out.controlledRollback = await tracked("controlledRollback", async () => {
  const trx = await db.startTransaction().execute();
  await trx.insertInto(A).values({ name: "Abandoned Author" }).execute();
  await trx.rollback().execute();
  return { committed: trx.isCommitted, rolledBack: trx.isRolledBack };
});
out.afterTransactions = await authorNames();

out.finalBooks = await db.selectFrom(B).selectAll().orderBy("id").execute();
out.finalAuthors = await db.selectFrom(A).selectAll().orderBy("id").execute();
out.transactions = transactions;
await db.destroy();
client.close();
process.stdout.write(JSON.stringify(out, function (key, v) {
  const raw = this[key];
  if (raw instanceof Uint8Array) return { hex: Buffer.from(raw).toString("hex") };
  if (raw instanceof ArrayBuffer) return { hex: Buffer.from(raw).toString("hex") };
  return typeof v === "bigint" ? `${v}n` : v;
}) + "\n");
