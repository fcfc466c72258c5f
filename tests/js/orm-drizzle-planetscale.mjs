// Drizzle ORM (drizzle-orm/planetscale-serverless) on @planetscale/database's Client, against our PlanetScale
// endpoint on MariaDB: reads {url, prefix} as JSON on stdin, runs a small schema end to end in tables named
// PREFIX_authors and PREFIX_books, and prints one JSON object with what each step returned (Dates as ISO strings)
// and a trace of every request (its statement, the session it sent and got back, the worker that answered), for
// tests/test_orms_planetscale.py to check. Every request goes on a new connection (Connection: close), so that a
// server's workers share them out, the requests of one transaction among them.
import { Client } from "@planetscale/database";
import { and, asc, count, desc, eq, gt, isNull, like, relations, sql, sum } from "drizzle-orm";
import { datetime, decimal, int, mysqlTable, varchar } from "drizzle-orm/mysql-core";
import { drizzle } from "drizzle-orm/planetscale-serverless";
import { readInput, tracingFetch } from "./planetscale-trace.mjs";

const { url, prefix } = await readInput();

const trace = [];
const fetchOnNewConnections = tracingFetch(trace);

const authors = mysqlTable(`${prefix}_authors`, {
  id: int("id").autoincrement().primaryKey(),
  name: varchar("name", { length: 100 }).notNull().unique(),
});
const books = mysqlTable(`${prefix}_books`, {
  id: int("id").autoincrement().primaryKey(),
  authorId: int("author_id").notNull().references(() => authors.id),
  title: varchar("title", { length: 200 }).notNull(),
  price: decimal("price", { precision: 10, scale: 2 }).notNull(),
  publishedAt: datetime("published_at", { mode: "date", fsp: 3 }).notNull(),
  note: varchar("note", { length: 200 }),
});
const authorsRelations = relations(authors, ({ many }) => ({ books: many(books) }));
const booksRelations = relations(books, ({ one }) => ({ author: one(authors, { fields: [books.authorId], references: [authors.id] }) }));

const client = new Client({ url, fetch: fetchOnNewConnections });
const db = drizzle({ client, schema: { authors, books, authorsRelations, booksRelations }, mode: "planetscale" });
const out = {};
// Drizzle wraps a failed query's DatabaseError in a DrizzleQueryError, as its cause.
const error = (e) => {
  const cause = e?.cause ?? e;
  return { name: cause?.name, wrapper: e?.name, message: cause?.message, status: cause?.status ?? null,
    code: cause?.body?.code ?? null };
};
const attempt = async (step) => {
  try {
    return { ok: await step() };
  } catch (e) {
    return { error: error(e) };
  }
};
const namesLike = async (pattern) =>
  (await db.select({ name: authors.name }).from(authors).where(like(authors.name, pattern)).orderBy(asc(authors.id)))
    .map((row) => row.name);

// The schema, through the endpoint: Drizzle has no DDL of its own without drizzle-kit.
await db.execute(sql.raw(`CREATE TABLE ${prefix}_authors (id int AUTO_INCREMENT PRIMARY KEY,
  name varchar(100) NOT NULL UNIQUE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`));
await db.execute(sql.raw(`CREATE TABLE ${prefix}_books (id int AUTO_INCREMENT PRIMARY KEY,
  author_id int NOT NULL, title varchar(200) NOT NULL, price decimal(10, 2) NOT NULL,
  published_at datetime(3) NOT NULL, note varchar(200) NULL,
  FOREIGN KEY (author_id) REFERENCES ${prefix}_authors (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`));

out.authorIds = await db.insert(authors)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .$returningId();
const [leGuin, lem, butler] = out.authorIds.map((a) => a.id);
out.bookIds = await db.insert(books).values([
  { authorId: leGuin, title: "The Dispossessed", price: "12.50", publishedAt: new Date("1974-05-01T12:00:00Z"),
    note: "it's \"anarchist\" \\ utopia" },
  { authorId: leGuin, title: "A Wizard of Earthsea", price: "9.99", publishedAt: new Date("1968-11-01T00:00:00.123Z"),
    note: null },
  { authorId: lem, title: "Solaris", price: "1234567.89", publishedAt: new Date("1961-06-15T08:30:00Z"),
    note: "Głos Pana — 😀" },
  { authorId: butler, title: "Kindred", price: "0.10", publishedAt: new Date("1979-06-01T23:59:59.999Z") },
]).$returningId();
out.books = await db.select().from(books).orderBy(asc(books.id));

out.joined = await db.select({ title: books.title, author: authors.name, price: books.price })
  .from(books).innerJoin(authors, eq(books.authorId, authors.id))
  .where(and(like(authors.name, "%Le%"), gt(books.price, "1.00")))
  .orderBy(desc(books.price)).limit(2);
out.leftJoin = await db.select({ author: authors.name, title: books.title }).from(authors)
  .leftJoin(books, and(eq(books.authorId, authors.id), isNull(books.note)))
  .orderBy(asc(authors.id));
out.totals = await db.select({ author: authors.name, books: count(books.id), total: sum(books.price) })
  .from(authors).innerJoin(books, eq(books.authorId, authors.id))
  .groupBy(authors.name).orderBy(asc(authors.name));
// Drizzle's relational query: one statement whose derived table refers to the outer row (MySQL 8.0.14 takes it;
// MariaDB does not). Its SQL goes to the test too, to be run on MariaDB directly.
const relational = db.query.authors.findMany({
  where: eq(authors.id, leGuin), with: { books: { columns: { title: true, price: true }, orderBy: asc(books.id) } },
});
out.relationalSql = relational.toSQL();
out.relational = await attempt(() => relational);

out.updated = (await db.update(books).set({ price: "15.00", note: "edited" })
  .where(eq(books.title, "The Dispossessed"))).rowsAffected;
out.deleted = (await db.delete(books).where(eq(books.title, "Solaris"))).rowsAffected;
out.duplicate = await attempt(() => db.insert(authors).values({ name: "Stanisław Lem" }));
out.foreignKey = await attempt(() => db.insert(books).values({ authorId: 999999, title: "Orphan", price: "1.00",
  publishedAt: new Date(0) }));

// -- transactions: each opens a session with BEGIN, continued by every statement until COMMIT or ROLLBACK --------
out.committed = await attempt(() => db.transaction(async (tx) => {
  const [{ id }] = await tx.insert(authors).values({ name: "Tx Author" }).$returningId();
  await tx.insert(books).values({ authorId: id, title: "Tx Book", price: "3.30",
    publishedAt: new Date("2001-02-03T04:05:06.789Z") });
  const outside = await namesLike("Tx %"); // another connection: it must not see the uncommitted row
  const [{ n }] = await tx.select({ n: count() }).from(books);
  return { id, inside: n, outside };
}));
out.afterCommit = await namesLike("Tx %");
out.thrown = await attempt(() => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Doomed Author" });
  const seen = await tx.select({ name: authors.name }).from(authors).where(eq(authors.name, "Doomed Author"));
  throw new Error(`boom after seeing ${seen.length}`);
}));
out.afterThrow = await namesLike("Doomed%");
out.rolledBack = await attempt(() => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Rolled Author" });
  tx.rollback();
}));
out.afterRollback = await namesLike("Rolled%");
out.failedInside = await attempt(() => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Half Author" });
  await tx.insert(books).values({ authorId: 999999, title: "Half Book", price: "1.00", publishedAt: new Date(0) });
}));
out.afterFailed = await namesLike("Half%");

// Nested: tx.transaction() is a savepoint; the inner one rolls back to it, the outer one commits.
out.nested = await attempt(() => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Nest Outer" });
  const inner = await attempt(() => tx.transaction(async (tx2) => {
    await tx2.insert(authors).values({ name: "Nest Inner Doomed" });
    const [{ n }] = await tx2.select({ n: count() }).from(authors).where(like(authors.name, "Nest %"));
    throw new Error(`inner fails after seeing ${n}`);
  }));
  const kept = await tx.transaction(async (tx2) => {
    await tx2.insert(authors).values({ name: "Nest Inner Kept" });
    return "released";
  });
  await tx.insert(authors).values({ name: "Nest After" });
  const seen = (await tx.select({ name: authors.name }).from(authors).where(like(authors.name, "Nest %"))
    .orderBy(asc(authors.id))).map((row) => row.name);
  return { inner, kept, seen };
}));
out.afterNested = await namesLike("Nest %");
// Nested, the other way round: the inner savepoint is released, and the outer transaction rolls it all back.
out.nestedOuterFails = await attempt(() => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Deep Outer" });
  await tx.transaction(async (tx2) => {
    await tx2.insert(authors).values({ name: "Deep Inner" });
  });
  throw new Error("outer fails");
}));
out.afterNestedOuterFails = await namesLike("Deep %");

out.finalBooks = await db.select().from(books).orderBy(asc(books.id));
out.finalAuthors = await db.select().from(authors).orderBy(asc(authors.id));
out.trace = trace;
process.stdout.write(JSON.stringify(out) + "\n");
