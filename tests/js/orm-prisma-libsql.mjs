// Prisma ORM 7 through @prisma/adapter-libsql's PrismaLibSql (the real @libsql/client, Hrana over HTTP), against our
// endpoint. Not runnable as it is: tests/test_orms_libsql.py generates a client (`prisma generate`, which needs no
// engine binary: Prisma 7 compiles queries in WASM) and bundles this file with esbuild, aliasing
// "orm-prisma-libsql-client" to the generated client.ts. Reads {url, token} as JSON on stdin: the tables are
// prisma_authors and prisma_books, mapped by the models Author and Book. Prints one JSON object with what each step
// returned or threw. Every request goes on a new connection (Connection: close), so a server's workers share out the
// requests of one interactive transaction; `transactions` records which worker answered each of them.
import { PrismaLibSql } from "@prisma/adapter-libsql";
import { PrismaClient } from "orm-prisma-libsql-client";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { url, token } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

let workers = [];
const fetchOnNewConnections = async (input, init) => {
  const request = new Request(input, init);
  request.headers.set("connection", "close");
  const response = await fetch(request);
  workers.push(response.headers.get("x-test-worker"));
  return response;
};
// The adapter hands its config to (its own) @libsql/client's createClient, custom fetch included.
const prisma = new PrismaClient({ adapter: new PrismaLibSql({ url, authToken: token, fetch: fetchOnNewConnections }) });

const out = {};
const transactions = {};
const failure = (e) => ({ name: e.name, code: e.code ?? null, message: e.message.trim().split("\n").at(-1),
  meta: e.meta ?? null });
const attempt = async (run) => {
  try { return { ok: await run() }; } catch (e) { return { error: failure(e) }; }
};
// A transaction, with the workers that answered each of its requests (from BEGIN to COMMIT or ROLLBACK).
const tracked = async (name, run) => {
  workers = [];
  try { return await attempt(run); } finally { transactions[name] = workers.slice(); }
};
const authorNames = async () => (await prisma.author.findMany({ orderBy: { id: "asc" }, select: { name: true } }))
  .map((a) => a.name);
const titles = async () => (await prisma.book.findMany({ orderBy: { id: "asc" }, select: { title: true } }))
  .map((b) => b.title);

// The schema, through the endpoint: `prisma db push` and migrations need the schema engine, a native binary that
// is downloaded from binaries.prisma.sh, not installed from npm.
await prisma.$executeRawUnsafe(`CREATE TABLE prisma_authors (id integer PRIMARY KEY AUTOINCREMENT,
  name text NOT NULL UNIQUE)`);
await prisma.$executeRawUnsafe(`CREATE TABLE prisma_books (
  id integer PRIMARY KEY AUTOINCREMENT, author_id integer NOT NULL REFERENCES prisma_authors (id),
  title text NOT NULL, pages integer NOT NULL, price real NOT NULL, cover blob, subtitle text,
  CONSTRAINT prisma_books_author_title UNIQUE (author_id, title))`);

out.authors = await prisma.author.createManyAndReturn({
  data: [{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }],
  select: { id: true, name: true },
});
const [leGuin, lem, butler] = out.authors.map((a) => a.id);
out.books = [];
for (const data of [
  { authorId: leGuin, title: "The Dispossessed", pages: 387, price: 12.5, cover: new Uint8Array([0, 1, 2, 255]),
    subtitle: "An Ambiguous Utopia" },
  { authorId: leGuin, title: "A Wizard of Earthsea", pages: 183, price: 9.99, cover: null, subtitle: null },
  { authorId: lem, title: "Solaris", pages: 204, price: 0.1, cover: new Uint8Array(0) },
  { authorId: butler, title: "Kindred", pages: 264, price: 1e-7, cover: new TextEncoder().encode("it's ☃") },
]) {
  out.books.push(await prisma.book.create({ data }));
}

out.filtered = await prisma.book.findMany({
  where: { author: { name: { in: ["Ursula K. Le Guin", "Stanisław Lem"] } }, pages: { gt: 190 } },
  select: { title: true, price: true, author: { select: { name: true } } },
  orderBy: { price: "desc" },
});
out.nullable = await prisma.book.findMany({ where: { subtitle: null }, select: { title: true }, orderBy: { id: "asc" } });
out.included = await prisma.author.findUnique({
  where: { id: leGuin }, include: { books: { select: { title: true, pages: true }, orderBy: { id: "asc" } } },
});
out.byCompoundKey = await prisma.book.findUnique({ where: { authorId_title: { authorId: lem, title: "Solaris" } },
  select: { id: true, pages: true } });
out.aggregate = await prisma.book.aggregate({ _sum: { pages: true }, _max: { price: true }, _count: true });
out.grouped = await prisma.book.groupBy({ by: ["authorId"], _sum: { pages: true }, orderBy: { authorId: "asc" } });
out.raw = await prisma.$queryRaw`SELECT typeof(price) AS kind, hex(cover) AS cover, length(cover) AS n
  FROM prisma_books WHERE title = ${"Kindred"}`;

out.duplicate = await attempt(() => prisma.author.create({ data: { name: "Stanisław Lem" } }));
out.duplicatePair = await attempt(() => prisma.book.create({ data: { authorId: lem, title: "Solaris", pages: 1,
  price: 1 } }));
// A book whose author does not exist, in a transaction that is rolled back whatever the insert did.
out.orphan = await (async () => {
  let result;
  await prisma.$transaction(async (tx) => {
    result = await attempt(() => tx.book.create({ data: { authorId: 999999, title: "Orphan", pages: 1, price: 1 },
      select: { id: true } }));
    throw new Error("probe");
  }).catch(() => null);
  return result;
})();

out.updated = await prisma.book.update({ where: { id: out.books[0].id },
  data: { price: 15, pages: { increment: 1 }, subtitle: "An Ambiguous Utopia (revised)" },
  select: { price: true, pages: true, subtitle: true } });
out.updatedMany = await prisma.book.updateMany({ where: { authorId: leGuin }, data: { pages: { increment: 1 } } });
out.deleted = await prisma.book.delete({ where: { authorId_title: { authorId: lem, title: "Solaris" } },
  select: { title: true } });
out.deletedMany = await prisma.book.deleteMany({ where: { title: "Not a book" } });

// Interactive transactions: every statement is its own request, with the stream's baton.
out.committed = await tracked("commit", () => prisma.$transaction(async (tx) => {
  const author = await tx.author.create({ data: { name: "N. K. Jemisin" } });
  await tx.book.create({ data: { authorId: author.id, title: "The Fifth Season", pages: 468, price: 11.25 } });
  return { inside: await tx.book.count({ where: { authorId: author.id } }) };
}));
out.afterCommit = { authors: await authorNames(), titles: await titles() };

out.rolledBack = await tracked("rollback", () => prisma.$transaction(async (tx) => {
  const author = await tx.author.create({ data: { name: "Rolled Back Author" } });
  await tx.book.create({ data: { authorId: author.id, title: "Never Written", pages: 1, price: 1 } });
  await tx.book.updateMany({ where: { title: "Kindred" }, data: { price: 999 } });
  out.rolledBackInside = await tx.book.count({ where: { title: "Never Written" } });
  throw new Error("changed my mind");
}));
out.afterRollback = { authors: await authorNames(), titles: await titles(),
  kindred: (await prisma.book.findFirst({ where: { title: "Kindred" }, select: { price: true } })).price };

// A statement that fails inside a transaction: the callback throws its error, and the transaction rolls back.
out.failedInside = await tracked("failedInside", () => prisma.$transaction(async (tx) => {
  await tx.author.create({ data: { name: "Before The Failure" } });
  await tx.author.create({ data: { name: "Ursula K. Le Guin" } });
}));
// A nested write is one transaction too: the author and the books, or nothing.
out.nestedWrite = await tracked("nestedWrite", () => prisma.author.create({
  data: { name: "Ted Chiang", books: { create: [{ title: "Exhalation", pages: 352, price: 14.5 },
    { title: "Stories of Your Life", pages: 281, price: 13 }] } },
  include: { books: { select: { title: true }, orderBy: { id: "asc" } } },
}));
out.failedNestedWrite = await tracked("failedNestedWrite", () => prisma.author.create({
  data: { name: "Half Written", books: { create: [{ title: "Twice", pages: 1, price: 1 },
    { title: "Twice", pages: 2, price: 2 }] } },
}));
// The array form: the statements in one transaction, in order.
out.sequential = await tracked("sequential", () => prisma.$transaction([
  prisma.author.create({ data: { name: "Sequential Author" }, select: { name: true } }),
  prisma.author.count(),
]));
out.failedSequential = await tracked("failedSequential", () => prisma.$transaction([
  prisma.author.create({ data: { name: "Doomed Sequential Author" } }),
  prisma.author.create({ data: { name: "Sequential Author" } }),
]));
out.afterTransactions = await authorNames();

out.finalBooks = await prisma.book.findMany({ orderBy: { id: "asc" } });
out.finalAuthors = await prisma.author.findMany({ orderBy: { id: "asc" } });
out.transactions = transactions;
await prisma.$disconnect();
process.stdout.write(JSON.stringify(out, function (key, v) {
  const raw = this[key];
  if (raw instanceof Uint8Array) return { hex: Buffer.from(raw).toString("hex") };
  if (raw instanceof ArrayBuffer) return { hex: Buffer.from(raw).toString("hex") };
  return typeof v === "bigint" ? `${v}n` : v;
}) + "\n");
