// Kysely with kysely-neon's NeonDialect (option `neon`, a neon() function) on the Neon driver, against our /sql:
// reads {endpoint, connectionString, prefix} as JSON on stdin, builds PREFIX_authors and PREFIX_books with Kysely's
// schema builder, runs a small schema end to end and prints one JSON object with what each step returned (Dates as
// ISO strings, BigInt counts as strings), for tests/test_orms_neon.py to check.
import { neon, neonConfig } from "@neondatabase/serverless";
import { Kysely, sql } from "kysely";
import { jsonArrayFrom } from "kysely/helpers/postgres";
import { NeonDialect } from "kysely-neon";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, connectionString, prefix } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
neonConfig.fetchEndpoint = endpoint;

const db = new Kysely({ dialect: new NeonDialect({ neon: neon(connectionString) }) });
const A = `${prefix}_authors`;
const B = `${prefix}_books`;
const out = {};
const error = (e) => ({ name: e.name, message: e.message, code: e.code, table: e.table, column: e.column });

await db.schema.createTable(A)
  .addColumn("id", "integer", (c) => c.primaryKey().generatedAlwaysAsIdentity())
  .addColumn("name", "text", (c) => c.notNull().unique())
  .execute();
await db.schema.createTable(B)
  .addColumn("id", "serial", (c) => c.primaryKey())
  .addColumn("author_id", "integer", (c) => c.notNull().references(`${A}.id`).onDelete("cascade"))
  .addColumn("title", "text", (c) => c.notNull())
  .addColumn("price", "numeric(10, 2)", (c) => c.notNull())
  .addColumn("published_at", "timestamptz", (c) => c.notNull())
  .addColumn("meta", "jsonb", (c) => c.notNull())
  .addColumn("in_print", "boolean", (c) => c.notNull().defaultTo(true))
  .addColumn("tags", sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
  .execute();
out.introspected = (await db.introspection.getTables())
  .filter((t) => t.name === A || t.name === B)
  .map((t) => ({ name: t.name, columns: t.columns.map((c) => [c.name, c.dataType, c.isNullable, c.isAutoIncrementing]) }))
  .sort((x, y) => x.name.localeCompare(y.name));

out.authors = await db.insertInto(A)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .returningAll().execute();
const [leGuin, lem, butler] = out.authors.map((a) => a.id);
out.books = await db.insertInto(B).values([
  { author_id: leGuin, title: "The Dispossessed", price: "12.50", published_at: new Date("1974-05-01T12:00:00Z"),
    meta: JSON.stringify({ pages: 387, awards: ["Hugo", "Nebula"] }), tags: ["sf", "utopia"] },
  { author_id: leGuin, title: "A Wizard of Earthsea", price: "9.99", published_at: "1968-11-01 00:00:00.123+00",
    meta: JSON.stringify({ pages: 183, series: { name: "Earthsea", n: 1 } }), tags: ["fantasy", "a,b", 'quote"d', "NULL"] },
  { author_id: lem, title: "Solaris", price: "1234567.89", published_at: new Date("1961-06-15T08:30:00Z"),
    meta: JSON.stringify({ pl: "Głos Pana — Solaris" }), in_print: false, tags: ["sf"] },
  { author_id: butler, title: "Kindred", price: "0.10", published_at: "1979-06-02T01:59:59.999+02:00",
    meta: "{}" },
]).returningAll().execute();

out.joined = await db.selectFrom(`${B} as b`).innerJoin(`${A} as a`, "a.id", "b.author_id")
  .select(["b.title", "a.name as author", "b.price"])
  .where((eb) => eb.and([eb("a.name", "like", "%Le%"), eb("b.price", ">", "1.00")]))
  .orderBy("b.price", "desc").limit(2).execute();
out.inList = await db.selectFrom(B).select(["id", "title"])
  .where("title", "in", ["Kindred", "Solaris", "Not a book"]).orderBy("id").execute();
out.jsonFilter = await db.selectFrom(B).select(["title", sql`meta->'series'->>'name'`.as("series")])
  .where(sql`meta->>'pages'`, "=", "183").where(sql`tags @> ${["a,b"]}`).execute();
out.totals = await db.selectFrom(`${A} as a`).innerJoin(`${B} as b`, "b.author_id", "a.id")
  .select((eb) => ["a.name", eb.fn.countAll().as("books"), eb.fn.sum("b.price").as("total")])
  .groupBy("a.name").orderBy("a.name").execute();
out.nested = await db.selectFrom(`${A} as a`).where("a.id", "=", leGuin)
  .select((eb) => ["a.name", jsonArrayFrom(eb.selectFrom(`${B} as b`).select(["b.title", "b.price", "b.tags"])
    .whereRef("b.author_id", "=", "a.id").orderBy("b.id")).as("books")])
  .execute();

const updated = await db.updateTable(B).set({ price: "15.00", in_print: false, meta: sql`meta || '{"edited": true}'` })
  .where("title", "=", "The Dispossessed").executeTakeFirst();
out.updatedRows = String(updated.numUpdatedRows);
out.upserted = await db.insertInto(A).values({ name: "Stanisław Lem" })
  .onConflict((oc) => oc.column("name").doUpdateSet({ name: sql`excluded.name || ' (again)'` }))
  .returning(["id", "name"]).execute();
const deleted = await db.deleteFrom(B).where("in_print", "=", false).executeTakeFirst();
out.deletedRows = String(deleted.numDeletedRows);
const inserted = await db.insertInto(A).values([{ name: "Temp One" }, { name: "Temp Two" }]).executeTakeFirst();
out.insertedRows = String(inserted.numInsertedOrUpdatedRows);
await db.insertInto(B).values((eb) => ({
  author_id: eb.selectFrom(A).select("id").where("name", "=", "Temp One"), title: "Temporary", price: "1.00",
  published_at: new Date(0), meta: "{}",
})).execute();
const cascaded = await db.deleteFrom(A).where("name", "like", "Temp %").executeTakeFirst();
out.cascadedRows = String(cascaded.numDeletedRows);
try {
  await db.insertInto(B).values({ author_id: lem, title: "No price", published_at: new Date(0), meta: "{}" }).execute();
  out.notNull = { error: null };
} catch (e) {
  out.notNull = { error: error(e) };
}
try {
  await db.transaction().execute(async (trx) => trx.selectFrom(A).selectAll().execute());
  out.transaction = { error: null };
} catch (e) {
  out.transaction = { error: error(e) };
}

out.finalBooks = await db.selectFrom(B).selectAll().orderBy("id").execute();
out.finalAuthors = await db.selectFrom(A).selectAll().orderBy("id").execute();
await db.destroy();
process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? String(v) : v)) + "\n");
