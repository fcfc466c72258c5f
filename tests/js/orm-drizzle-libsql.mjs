// Drizzle ORM (drizzle-orm/libsql) on the real @libsql/client (Hrana over HTTP), against our endpoint: reads
// {url, token, prefix} as JSON on stdin, runs a small schema end to end in tables named PREFIX_authors and
// PREFIX_books, and prints one JSON object with what each step returned or threw, for tests/test_orms_libsql.py.
// Every request goes on a new connection (Connection: close), so a server's workers share out the requests of one
// interactive transaction; `transactions` records which worker (X-Test-Worker) answered each of them.
import { createClient } from "@libsql/client";
import { and, asc, count, desc, eq, gt, inArray, isNull, like, relations, sql, sum } from "drizzle-orm";
import { drizzle } from "drizzle-orm/libsql";
import { blob, integer, real, sqliteTable, text, unique } from "drizzle-orm/sqlite-core";

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
const client = createClient({ url, authToken: token, fetch: fetchOnNewConnections });

const authors = sqliteTable(`${prefix}_authors`, {
  id: integer("id").primaryKey({ autoIncrement: true }),
  name: text("name").notNull().unique(),
});
const books = sqliteTable(`${prefix}_books`, {
  id: integer("id").primaryKey({ autoIncrement: true }),
  authorId: integer("author_id").notNull().references(() => authors.id),
  title: text("title").notNull(),
  pages: integer("pages").notNull(),
  price: real("price").notNull(),
  cover: blob("cover", { mode: "buffer" }),
  subtitle: text("subtitle"),
}, (t) => [unique(`${prefix}_books_author_title`).on(t.authorId, t.title)]);
const authorsRelations = relations(authors, ({ many }) => ({ books: many(books) }));
const booksRelations = relations(books, ({ one }) => ({ author: one(authors, { fields: [books.authorId], references: [authors.id] }) }));
const db = drizzle({ client, schema: { authors, books, authorsRelations, booksRelations } });

const out = {};
const transactions = {};
// Drizzle wraps a failed query's LibsqlError in a DrizzleQueryError as its cause.
const failure = (e) => {
  const cause = e.cause ?? e;
  return { name: e.name, causeName: cause.name, message: cause.message, code: cause.code ?? null };
};
const attempt = async (run) => {
  try { return { ok: await run() }; } catch (e) { return { error: failure(e) }; }
};
// A transaction, with the workers that answered each of its requests (from BEGIN to COMMIT or ROLLBACK).
const tracked = async (name, run) => {
  workers = [];
  try { return await attempt(run); } finally { transactions[name] = workers.slice(); }
};
const titles = async () => (await db.select({ title: books.title }).from(books).orderBy(asc(books.id))).map((b) => b.title);
const authorNames = async () => (await db.select({ name: authors.name }).from(authors).orderBy(asc(authors.id))).map((a) => a.name);

// The schema, through the endpoint: Drizzle has no DDL of its own without drizzle-kit.
await db.run(sql.raw(`CREATE TABLE ${prefix}_authors (id integer PRIMARY KEY AUTOINCREMENT, name text NOT NULL UNIQUE)`));
await db.run(sql.raw(`CREATE TABLE ${prefix}_books (
  id integer PRIMARY KEY AUTOINCREMENT, author_id integer NOT NULL REFERENCES ${prefix}_authors (id),
  title text NOT NULL, pages integer NOT NULL, price real NOT NULL, cover blob, subtitle text,
  CONSTRAINT ${prefix}_books_author_title UNIQUE (author_id, title))`));

out.authors = await db.insert(authors)
  .values([{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }])
  .returning();
const [leGuin, lem, butler] = out.authors.map((a) => a.id);
out.books = await db.insert(books).values([
  { authorId: leGuin, title: "The Dispossessed", pages: 387, price: 12.5, cover: Buffer.from([0, 1, 2, 255]),
    subtitle: "An Ambiguous Utopia" },
  { authorId: leGuin, title: "A Wizard of Earthsea", pages: 183, price: 9.99, cover: null, subtitle: null },
  { authorId: lem, title: "Solaris", pages: 204, price: 0.1, cover: Buffer.alloc(0) },
  { authorId: butler, title: "Kindred", pages: 264, price: 1e-7, cover: Buffer.from("it's ☃", "utf8") },
]).returning();

out.joined = await db.select({ title: books.title, author: authors.name, price: books.price })
  .from(books).innerJoin(authors, eq(books.authorId, authors.id))
  .where(and(inArray(authors.name, ["Ursula K. Le Guin", "Stanisław Lem"]), gt(books.pages, 190)))
  .orderBy(desc(books.price));
out.inList = await db.select({ id: books.id, title: books.title }).from(books)
  .where(inArray(books.title, ["Kindred", "Solaris", "Not a book"])).orderBy(asc(books.id));
out.nullable = await db.select({ title: books.title }).from(books).where(isNull(books.subtitle)).orderBy(asc(books.id));
out.totals = await db.select({ author: authors.name, books: count(books.id), pages: sum(books.pages) })
  .from(authors).innerJoin(books, eq(books.authorId, authors.id))
  .groupBy(authors.name).orderBy(asc(authors.name));
// The relational query: one statement with a JSON-aggregated subquery (SQLite's json_array).
out.relational = await db.query.authors.findMany({
  where: eq(authors.id, leGuin), with: { books: { columns: { title: true, pages: true }, orderBy: asc(books.id) } },
});
out.prepared = await db.select({ title: books.title }).from(books).where(eq(books.pages, sql.placeholder("pages")))
  .prepare().all({ pages: 204 });
out.raw = await db.all(sql`SELECT typeof(${books.price}) AS kind, hex(${books.cover}) AS cover, length(${books.cover}) AS n
  FROM ${books} WHERE ${books.title} = ${"Kindred"}`);

out.duplicate = await attempt(() => db.insert(authors).values({ name: "Stanisław Lem" }));
out.duplicatePair = await attempt(() => db.insert(books).values({ authorId: lem, title: "Solaris", pages: 1, price: 1 }));
out.notNull = await attempt(() => db.insert(books).values({ authorId: lem, title: "No pages", pages: null, price: 1 }));
// A book whose author does not exist, in a transaction that is rolled back whatever the insert did.
out.orphan = await (async () => {
  let result;
  await db.transaction(async (tx) => {
    result = await attempt(() => tx.insert(books).values({ authorId: 999999, title: "Orphan", pages: 1, price: 1 }));
    throw new Error("probe");
  }).catch(() => null);
  return result;
})();

out.updated = await db.update(books).set({ price: 15, subtitle: sql`${books.subtitle} || ' (revised)'` })
  .where(eq(books.title, "The Dispossessed")).returning({ id: books.id, price: books.price, subtitle: books.subtitle });
out.updatedRows = (await db.update(books).set({ pages: sql`${books.pages} + 1` }).where(eq(books.authorId, leGuin))).rowsAffected;
out.deleted = await db.delete(books).where(eq(books.title, "Solaris")).returning({ title: books.title });

// db.batch(): one request, run by the client as one transaction (BEGIN DEFERRED ... COMMIT).
out.batch = await db.batch([
  db.insert(authors).values({ name: "Batch Author" }).returning({ id: authors.id, name: authors.name }),
  db.select({ n: count() }).from(authors),
]);
out.failedBatch = await attempt(() => db.batch([
  db.insert(authors).values({ name: "Doomed Batch Author" }),
  db.insert(authors).values({ name: "Batch Author" }),
]));
out.afterFailedBatch = await authorNames();

// Interactive transactions: every statement is its own request, with the stream's baton.
out.committed = await tracked("commit", () => db.transaction(async (tx) => {
  const [author] = await tx.insert(authors).values({ name: "N. K. Jemisin" }).returning({ id: authors.id });
  await tx.insert(books).values({ authorId: author.id, title: "The Fifth Season", pages: 468, price: 11.25 });
  const inside = await tx.select({ n: count() }).from(books).where(eq(books.authorId, author.id));
  return { inside: inside[0].n };
}));
out.afterCommit = { authors: await authorNames(), titles: await titles() };

out.rolledBack = await tracked("rollback", () => db.transaction(async (tx) => {
  const [author] = await tx.insert(authors).values({ name: "Rolled Back Author" }).returning({ id: authors.id });
  await tx.insert(books).values({ authorId: author.id, title: "Never Written", pages: 1, price: 1 });
  await tx.update(books).set({ price: 999 }).where(eq(books.title, "Kindred"));
  const inside = await tx.select({ n: count() }).from(books).where(eq(books.title, "Never Written"));
  out.rolledBackInside = inside[0].n;
  throw new Error("changed my mind");
}));
out.afterRollback = { authors: await authorNames(), titles: await titles(),
  kindred: (await db.select({ price: books.price }).from(books).where(eq(books.title, "Kindred")))[0].price };

// tx.rollback() throws Drizzle's TransactionRollbackError.
out.explicitRollback = await tracked("explicitRollback", () => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Explicitly Rolled Back" });
  tx.rollback();
}));
// A statement that fails inside a transaction: the callback throws its error, and the transaction rolls back.
out.failedInside = await tracked("failedInside", () => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Before The Failure" });
  await tx.insert(authors).values({ name: "Ursula K. Le Guin" });
}));
out.afterFailures = await authorNames();

// Nested transactions are savepoints: a failed inner one rolls back to its savepoint, the outer one commits.
out.nested = await tracked("nested", () => db.transaction(async (tx) => {
  await tx.insert(authors).values({ name: "Outer Author" });
  const kept = await tx.transaction(async (inner) => {
    await inner.insert(authors).values({ name: "Inner Kept" });
    return "released";
  });
  let dropped = null;
  try {
    await tx.transaction(async (inner) => {
      await inner.insert(authors).values({ name: "Inner Dropped" });
      await inner.transaction(async (innermost) => {
        await innermost.insert(authors).values({ name: "Innermost Dropped" });
      });
      throw new Error("inner failure");
    });
  } catch (e) {
    dropped = e.message;
  }
  const inside = await tx.select({ name: authors.name }).from(authors).where(like(authors.name, "In%")).orderBy(asc(authors.id));
  return { kept, dropped, inside: inside.map((a) => a.name) };
}));
out.afterNested = await authorNames();

out.finalBooks = await db.select().from(books).orderBy(asc(books.id));
out.finalAuthors = await db.select().from(authors).orderBy(asc(authors.id));
out.transactions = transactions;
client.close();
process.stdout.write(JSON.stringify(out, function (key, v) {
  const raw = this[key];
  if (raw instanceof Uint8Array) return { hex: Buffer.from(raw).toString("hex") };
  if (raw instanceof ArrayBuffer) return { hex: Buffer.from(raw).toString("hex") };
  return typeof v === "bigint" ? `${v}n` : v;
}) + "\n");
