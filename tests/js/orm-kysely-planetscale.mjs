// Kysely with kysely-planetscale's PlanetScaleDialect on @planetscale/database, against our PlanetScale endpoint
// on MariaDB: reads {url, prefix} as JSON on stdin, builds PREFIX_authors and PREFIX_books with Kysely's schema
// builder, runs a small schema end to end and prints one JSON object with what each step returned (Dates as ISO
// strings, BigInts as strings) and a trace of every request (its statement, the session it sent and got back, the
// worker that answered), for tests/test_orms_planetscale.py to check. Every request goes on a new connection.
import { Kysely, sql } from "kysely";
import { PlanetScaleDialect } from "kysely-planetscale";
import { readInput, tracingFetch } from "./planetscale-trace.mjs";

const { url, prefix } = await readInput();

const trace = [];
const fetchOnNewConnections = tracingFetch(trace);

const db = new Kysely({ dialect: new PlanetScaleDialect({ url, fetch: fetchOnNewConnections }) });
const A = `${prefix}_authors`;
const B = `${prefix}_books`;
const out = {};
const plain = (value) => JSON.parse(JSON.stringify(value, (key, v) => (typeof v === "bigint" ? String(v) : v)));
const error = (e) => ({ name: e?.name, message: e?.message, status: e?.status ?? null, code: e?.body?.code ?? null });
const attempt = async (step) => {
  try {
    return { ok: plain(await step()) };
  } catch (e) {
    return { error: error(e) };
  }
};
const namesLike = async (pattern) =>
  (await db.selectFrom(A).select("name").where("name", "like", pattern).orderBy("id").execute()).map((r) => r.name);

await db.schema.createTable(A)
  .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  .addColumn("name", "varchar(100)", (c) => c.notNull().unique())
  .modifyEnd(sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`)
  .execute();
await db.schema.createTable(B)
  .addColumn("id", "integer", (c) => c.primaryKey().autoIncrement())
  .addColumn("author_id", "integer", (c) => c.notNull())
  .addColumn("title", "varchar(200)", (c) => c.notNull())
  .addColumn("price", "decimal(10, 2)", (c) => c.notNull())
  .addColumn("published_at", sql`datetime(3)`, (c) => c.notNull())
  .addColumn("note", "varchar(200)")
  .addForeignKeyConstraint(`${B}_author`, ["author_id"], A, ["id"], (fk) => fk.onDelete("cascade"))
  .modifyEnd(sql`ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`)
  .execute();
out.introspected = (await db.introspection.getTables())
  .filter((t) => t.name === A || t.name === B)
  .map((t) => ({ name: t.name, columns: t.columns.map((c) => [c.name, c.dataType, c.isNullable, c.isAutoIncrementing]) }))
  .sort((x, y) => x.name.localeCompare(y.name));

const inserted = await db.insertInto(A)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .executeTakeFirst();
out.authorsInsert = plain({ insertId: inserted.insertId, rows: inserted.numInsertedOrUpdatedRows });
const [leGuin, lem, butler] = (await db.selectFrom(A).select("id").orderBy("id").execute()).map((a) => a.id);
const booksInsert = await db.insertInto(B).values([
  { author_id: leGuin, title: "The Dispossessed", price: "12.50", published_at: new Date("1974-05-01T12:00:00Z"),
    note: "it's \"anarchist\" \\ utopia" },
  { author_id: leGuin, title: "A Wizard of Earthsea", price: "9.99", published_at: "1968-11-01 00:00:00.123",
    note: null },
  { author_id: lem, title: "Solaris", price: "1234567.89", published_at: new Date("1961-06-15T08:30:00Z"),
    note: "Głos Pana — 😀" },
  { author_id: butler, title: "Kindred", price: "0.10", published_at: new Date("1979-06-01T23:59:59.999Z") },
]).executeTakeFirst();
out.booksInsert = plain({ insertId: booksInsert.insertId, rows: booksInsert.numInsertedOrUpdatedRows });
out.books = plain(await db.selectFrom(B).selectAll().orderBy("id").execute());

out.joined = await db.selectFrom(`${B} as b`).innerJoin(`${A} as a`, "a.id", "b.author_id")
  .select(["b.title", "a.name as author", "b.price"])
  .where((eb) => eb.and([eb("a.name", "like", "%Le%"), eb("b.price", ">", "1.00")]))
  .orderBy("b.price", "desc").limit(2).execute();
out.leftJoin = await db.selectFrom(`${A} as a`)
  .leftJoin(`${B} as b`, (join) => join.onRef("b.author_id", "=", "a.id").on("b.note", "is", null))
  .select(["a.name as author", "b.title"]).orderBy("a.id").execute();
out.totals = plain(await db.selectFrom(`${A} as a`).innerJoin(`${B} as b`, "b.author_id", "a.id")
  .select((eb) => ["a.name", eb.fn.countAll().as("books"), eb.fn.sum("b.price").as("total")])
  .groupBy("a.name").orderBy("a.name").execute());
out.inList = await db.selectFrom(B).select(["id", "title"])
  .where("title", "in", ["Kindred", "Solaris", "Not a book"]).orderBy("id").execute();

const updated = await db.updateTable(B).set({ price: "15.00", note: "edited" })
  .where("title", "=", "The Dispossessed").executeTakeFirst();
out.updatedRows = String(updated.numUpdatedRows);
const deleted = await db.deleteFrom(B).where("title", "=", "Solaris").executeTakeFirst();
out.deletedRows = String(deleted.numDeletedRows);
out.duplicate = await attempt(() => db.insertInto(A).values({ name: "Stanisław Lem" }).execute());
out.foreignKey = await attempt(() => db.insertInto(B).values({ author_id: 999999, title: "Orphan", price: "1.00",
  published_at: new Date(0) }).execute());

// -- transactions: BEGIN on a connection of the driver's own, continued by its session until COMMIT or ROLLBACK ----
out.committed = await attempt(() => db.transaction().execute(async (trx) => {
  const author = await trx.insertInto(A).values({ name: "Tx Author" }).executeTakeFirstOrThrow();
  await trx.insertInto(B).values({ author_id: Number(author.insertId), title: "Tx Book", price: "3.30",
    published_at: new Date("2001-02-03T04:05:06.789Z") }).execute();
  const outside = await namesLike("Tx %"); // another connection: it must not see the uncommitted row
  const { n } = await trx.selectFrom(B).select((eb) => eb.fn.countAll().as("n")).executeTakeFirstOrThrow();
  return { id: author.insertId, inside: n, outside };
}));
out.afterCommit = await namesLike("Tx %");
out.thrown = await attempt(() => db.transaction().execute(async (trx) => {
  await trx.insertInto(A).values({ name: "Doomed Author" }).execute();
  const seen = await trx.selectFrom(A).select("name").where("name", "=", "Doomed Author").execute();
  throw new Error(`boom after seeing ${seen.length}`);
}));
out.afterThrow = await namesLike("Doomed%");
out.failedInside = await attempt(() => db.transaction().execute(async (trx) => {
  await trx.insertInto(A).values({ name: "Half Author" }).execute();
  await trx.insertInto(B).values({ author_id: 999999, title: "Half Book", price: "1.00", published_at: new Date(0) })
    .execute();
}));
out.afterFailed = await namesLike("Half%");
// An isolation level: kysely-planetscale sends SET TRANSACTION ... and then BEGIN, on one session.
out.serializable = await attempt(() => db.transaction().setIsolationLevel("serializable").execute(async (trx) => {
  await trx.insertInto(A).values({ name: "Serial Author" }).execute();
  return (await trx.selectFrom(A).select("name").where("name", "like", "Serial%").execute()).length;
}));
out.afterSerializable = await namesLike("Serial%");

// Nested: kysely's own savepoints (a controlled transaction's savepoint()) need the driver's savepoint(), which
// kysely-planetscale 1.7.1 does not implement; SQL savepoints in a transaction work.
out.controlledSavepoint = await attempt(async () => {
  const trx = await db.startTransaction().execute();
  await trx.insertInto(A).values({ name: "Controlled Author" }).execute();
  try {
    await trx.savepoint("sp1").execute();
  } finally {
    await trx.rollback().execute();
  }
});
out.afterControlled = await namesLike("Controlled%");
out.nested = await attempt(() => db.transaction().execute(async (trx) => {
  await trx.insertInto(A).values({ name: "Nest Outer" }).execute();
  await sql`SAVEPOINT inner_one`.execute(trx);
  await trx.insertInto(A).values({ name: "Nest Inner Doomed" }).execute();
  const seenInside = (await namesInside(trx)).length;
  await sql`ROLLBACK TO SAVEPOINT inner_one`.execute(trx);
  await sql`SAVEPOINT inner_two`.execute(trx);
  await trx.insertInto(A).values({ name: "Nest Inner Kept" }).execute();
  await sql`RELEASE SAVEPOINT inner_two`.execute(trx);
  await trx.insertInto(A).values({ name: "Nest After" }).execute();
  return { seenInside, seen: await namesInside(trx) };
}));
out.afterNested = await namesLike("Nest %");

function namesInside(trx) {
  return trx.selectFrom(A).select("name").where("name", "like", "Nest %").orderBy("id").execute()
    .then((rows) => rows.map((r) => r.name));
}

out.finalBooks = plain(await db.selectFrom(B).selectAll().orderBy("id").execute());
out.finalAuthors = await db.selectFrom(A).selectAll().orderBy("id").execute();
out.trace = trace;
process.stdout.write(JSON.stringify(out) + "\n");
