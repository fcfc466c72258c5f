// Drizzle ORM (drizzle-orm/neon-http) on the Neon driver, against our /sql: reads {endpoint, connectionString,
// prefix} as JSON on stdin, runs a small schema end to end in tables named PREFIX_authors and PREFIX_books, and
// prints one JSON object with what each step returned (Dates as ISO strings), for tests/test_orms_neon.py to check.
import { neon, neonConfig } from "@neondatabase/serverless";
import { and, asc, count, desc, eq, gt, inArray, like, relations, sql, sum } from "drizzle-orm";
import { drizzle } from "drizzle-orm/neon-http";
import { boolean, integer, jsonb, numeric, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, connectionString, prefix } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
neonConfig.fetchEndpoint = endpoint;

const authors = pgTable(`${prefix}_authors`, {
  id: serial("id").primaryKey(),
  name: text("name").notNull().unique(),
});
const books = pgTable(`${prefix}_books`, {
  id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
  authorId: integer("author_id").notNull().references(() => authors.id),
  title: text("title").notNull(),
  price: numeric("price", { precision: 10, scale: 2 }).notNull(),
  publishedAt: timestamp("published_at", { withTimezone: true, mode: "date" }).notNull(),
  meta: jsonb("meta").notNull(),
  inPrint: boolean("in_print").notNull(),
  tags: text("tags").array().notNull(),
});
const authorsRelations = relations(authors, ({ many }) => ({ books: many(books) }));
const booksRelations = relations(books, ({ one }) => ({ author: one(authors, { fields: [books.authorId], references: [authors.id] }) }));

const db = drizzle({ client: neon(connectionString), schema: { authors, books, authorsRelations, booksRelations } });
const out = {};
// Drizzle wraps a failed query's NeonDbError in a DrizzleQueryError as its cause; a batch's error comes unwrapped.
const error = (e) => {
  const cause = e.cause ?? e;
  return { name: cause.name, message: cause.message, code: cause.code, constraint: cause.constraint, detail: cause.detail };
};

// The schema, through the endpoint: Drizzle has no DDL of its own without drizzle-kit.
await db.execute(sql.raw(`CREATE TABLE ${prefix}_authors (id serial PRIMARY KEY, name text NOT NULL UNIQUE)`));
await db.execute(sql.raw(`CREATE TABLE ${prefix}_books (
  id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  author_id integer NOT NULL REFERENCES ${prefix}_authors (id),
  title text NOT NULL, price numeric(10, 2) NOT NULL, published_at timestamptz NOT NULL,
  meta jsonb NOT NULL, in_print boolean NOT NULL, tags text[] NOT NULL)`));

out.authors = await db.insert(authors)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .returning();
const [leGuin, lem, butler] = out.authors.map((a) => a.id);
out.books = await db.insert(books).values([
  { authorId: leGuin, title: "The Dispossessed", price: "12.50", publishedAt: new Date("1974-05-01T12:00:00Z"),
    meta: { pages: 387, awards: ["Hugo", "Nebula"], series: null }, inPrint: true, tags: ["sf", "utopia"] },
  { authorId: leGuin, title: "A Wizard of Earthsea", price: "9.99", publishedAt: new Date("1968-11-01T00:00:00.123Z"),
    meta: { pages: 183, series: { name: "Earthsea", n: 1 } }, inPrint: true, tags: ["fantasy", "a,b", 'quote"d', "NULL"] },
  { authorId: lem, title: "Solaris", price: "1234567.89", publishedAt: new Date("1961-06-15T08:30:00Z"),
    meta: { original: "Solaris", pl: "Głos Pana? nie — Solaris" }, inPrint: false, tags: ["sf"] },
  { authorId: butler, title: "Kindred", price: "0.10", publishedAt: new Date("1979-06-01T23:59:59.999Z"),
    meta: {}, inPrint: true, tags: [] },
]).returning();

// Joins and filters: where / and / like / gt / in / order / limit.
out.joined = await db.select({ title: books.title, author: authors.name, price: books.price })
  .from(books).innerJoin(authors, eq(books.authorId, authors.id))
  .where(and(like(authors.name, "%Le%"), gt(books.price, "1.00")))
  .orderBy(desc(books.price)).limit(2);
out.inList = await db.select({ id: books.id, title: books.title }).from(books)
  .where(inArray(books.title, ["Kindred", "Solaris", "Not a book"])).orderBy(asc(books.id));
out.leftJoin = await db.select({ author: authors.name, title: books.title }).from(authors)
  .leftJoin(books, and(eq(books.authorId, authors.id), eq(books.inPrint, true)))
  .where(eq(authors.id, lem));
out.totals = await db.select({ author: authors.name, books: count(books.id), total: sum(books.price) })
  .from(authors).innerJoin(books, eq(books.authorId, authors.id))
  .groupBy(authors.name).orderBy(asc(authors.name));
out.relational = await db.query.authors.findMany({
  where: eq(authors.id, leGuin), with: { books: { columns: { title: true, tags: true }, orderBy: asc(books.id) } },
});
out.raw = (await db.execute(sql`SELECT published_at::text AS text, meta->'series'->>'name' AS series
  FROM ${books} WHERE ${books.title} = ${"A Wizard of Earthsea"}`)).rows;

out.updated = await db.update(books)
  .set({ price: "15.00", inPrint: false, meta: sql`${books.meta} || ${JSON.stringify({ edited: true })}::jsonb` })
  .where(eq(books.title, "The Dispossessed")).returning({ id: books.id, price: books.price, meta: books.meta,
    inPrint: books.inPrint });
out.deleted = await db.delete(books).where(eq(books.inPrint, false)).returning({ title: books.title });

// db.batch() is the driver's transaction(): one request, run atomically.
out.batch = await db.batch([
  db.insert(authors).values({ name: "Batch Author" }).returning({ id: authors.id, name: authors.name }),
  db.select({ n: count() }).from(authors),
  db.update(books).set({ tags: sql`array_append(${books.tags}, 'batched')` }).where(eq(books.title, "Kindred"))
    .returning({ tags: books.tags }),
]);
try {
  await db.batch([
    db.insert(authors).values({ name: "Doomed Author" }),
    db.insert(books).values({ authorId: 999999, title: "Orphan", price: "1.00", publishedAt: new Date(0), meta: {},
      inPrint: true, tags: [] }),
  ]);
  out.failedBatch = { error: null };
} catch (e) {
  out.failedBatch = { error: error(e) };
}
out.doomed = await db.select().from(authors).where(eq(authors.name, "Doomed Author"));
try {
  await db.insert(authors).values({ name: "Batch Author" });
  out.duplicate = { error: null };
} catch (e) {
  out.duplicate = { error: error(e) };
}

out.finalBooks = await db.select().from(books).orderBy(asc(books.id));
out.finalAuthors = await db.select().from(authors).orderBy(asc(authors.id));
process.stdout.write(JSON.stringify(out) + "\n");
