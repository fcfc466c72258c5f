// Prisma ORM 7 through @prisma/adapter-planetscale (PrismaPlanetScale, on @planetscale/database), against our
// PlanetScale endpoint on MariaDB. Not runnable as it is: tests/test_orms_planetscale.py generates a client
// (`prisma generate`, which needs no engine binary: Prisma 7 compiles queries in WASM) and bundles this file with
// esbuild, aliasing "orm-prisma-planetscale-client" to the generated client.ts. Reads {url, prefix, model} as JSON
// on stdin: the tables are PREFIX_authors and PREFIX_books, mapped by the models Author<model> and Book<model>.
// With {isolationRepeats: N} instead, it only runs N transactions with an isolation level, one after the other
// (no tables needed), and prints what each returned or threw as {isolation: [...]}.
// Prints one JSON object with what each step returned (Dates as ISO strings, Decimals as strings) and a trace of
// every request (its statement, the session it sent and got back, the worker that answered), for the test to check.
// Every request goes on a new connection (Connection: close), so that a server's workers share them out.
import { PrismaPlanetScale } from "@prisma/adapter-planetscale";
import { Prisma, PrismaClient } from "orm-prisma-planetscale-client";
import { readInput, tracingFetch } from "./planetscale-trace.mjs";

const { url, prefix, model, isolationRepeats } = await readInput();

const trace = [];
const fetchOnNewConnections = tracingFetch(trace);

const prisma = new PrismaClient({ adapter: new PrismaPlanetScale({ url, fetch: fetchOnNewConnections }) });
const authors = prisma[`author${model}`];
const books = prisma[`book${model}`];
const out = {};
const error = (e) => ({ name: e.name, code: e.code ?? null, message: e.message.trim().split("\n").at(-1),
  meta: e.meta ?? null });
const attempt = async (step) => {
  try {
    return { ok: await step() };
  } catch (e) {
    return { error: error(e) };
  }
};
if (isolationRepeats) {
  const isolation = [];
  const finish = () => {
    process.stdout.write(JSON.stringify({ isolation, trace }) + "\n");
    process.exit(0);
  };
  // When its BEGIN fails, the adapter's startTransaction() never settles, and rethrows where nobody awaits.
  process.on("unhandledRejection", (e) => {
    isolation.push({ error: error(e), unhandled: true });
    finish();
  });
  for (let i = 0; i < isolationRepeats; i++) {
    isolation.push(await attempt(() => prisma.$transaction((tx) => tx.$queryRaw`SELECT 1 AS one`,
      { isolationLevel: Prisma.TransactionIsolationLevel.Serializable })));
  }
  await prisma.$disconnect();
  finish();
}

const namesLike = async (start) => (await authors.findMany({ where: { name: { startsWith: start } },
  orderBy: { id: "asc" } })).map((a) => a.name);

// The schema, through the endpoint: `prisma db push` and migrations need the schema engine, a native binary that
// is downloaded from Prisma's servers, not installed from npm.
await prisma.$executeRawUnsafe(`CREATE TABLE ${prefix}_authors (id int AUTO_INCREMENT PRIMARY KEY,
  name varchar(100) NOT NULL UNIQUE) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);
await prisma.$executeRawUnsafe(`CREATE TABLE ${prefix}_books (id int AUTO_INCREMENT PRIMARY KEY,
  author_id int NOT NULL, title varchar(200) NOT NULL, price decimal(10, 2) NOT NULL,
  published_at datetime(3) NOT NULL, note varchar(200) NULL,
  FOREIGN KEY (author_id) REFERENCES ${prefix}_authors (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4`);

out.authorsCreated = await authors.createMany({
  data: [{ name: "Ursula K. Le Guin" }, { name: "Stanisław Lem" }, { name: "Octavia E. Butler" }],
});
const [leGuin, lem, butler] = (await authors.findMany({ orderBy: { id: "asc" } })).map((a) => a.id);
out.books = [];
for (const data of [
  { authorId: leGuin, title: "The Dispossessed", price: new Prisma.Decimal("12.50"),
    publishedAt: new Date("1974-05-01T12:00:00Z"), note: "it's \"anarchist\" \\ utopia" },
  { authorId: leGuin, title: "A Wizard of Earthsea", price: "9.99", publishedAt: new Date("1968-11-01T00:00:00.123Z") },
  { authorId: lem, title: "Solaris", price: "1234567.89", publishedAt: new Date("1961-06-15T08:30:00Z"),
    note: "Głos Pana — 😀" },
  { authorId: butler, title: "Kindred", price: 0.1, publishedAt: new Date("1979-06-01T23:59:59.999Z"), note: null },
]) {
  out.books.push(await books.create({ data }));
}

out.filtered = await books.findMany({
  where: { author: { name: { contains: "Le" } }, price: { gt: 1 } },
  select: { title: true, price: true, author: { select: { name: true } } },
  orderBy: { price: "desc" }, take: 2,
});
out.included = await authors.findUnique({
  where: { id: leGuin }, include: { books: { select: { title: true, note: true }, orderBy: { id: "asc" } } },
});
out.nullNotes = await books.findMany({ where: { note: null }, select: { title: true }, orderBy: { id: "asc" } });
out.aggregate = await books.aggregate({ _sum: { price: true }, _max: { publishedAt: true }, _count: true });
out.grouped = await books.groupBy({ by: ["authorId"], _sum: { price: true }, orderBy: { authorId: "asc" } });
out.raw = await prisma.$queryRaw`SELECT ${"x"} AS x, ${41} + 1 AS n, CAST(9007199254740993 AS SIGNED) AS big`;

out.updated = await books.update({ where: { id: out.books[0].id }, data: { price: "15.00", note: "edited" },
  select: { price: true, note: true } });
out.updatedMany = await books.updateMany({ where: { note: null }, data: { note: "checked" } });
out.deleted = await books.deleteMany({ where: { title: "Solaris" } });
out.duplicate = await attempt(() => authors.create({ data: { name: "Stanisław Lem" } }));
out.foreignKey = await attempt(() => books.create({ data: { authorId: 999999, title: "Orphan", price: 1,
  publishedAt: new Date(0) } }));

// -- transactions: BEGIN, continued by the session, to COMMIT or ROLLBACK; nested ones are savepoints ----------------
out.nestedWrite = await attempt(() => authors.create({ data: { name: "Nested Write", books: { create: [
  { title: "Nested Book", price: "2.00", publishedAt: new Date("2020-01-01T00:00:00Z") }] } },
  include: { books: { select: { title: true } } } }));
out.batch = await attempt(() => prisma.$transaction([authors.count(), books.count()]));
out.committed = await attempt(() => prisma.$transaction(async (tx) => {
  const author = await tx[`author${model}`].create({ data: { name: "Tx Author" } });
  await tx[`book${model}`].create({ data: { authorId: author.id, title: "Tx Book", price: "3.30",
    publishedAt: new Date("2001-02-03T04:05:06.789Z") } });
  const outside = await namesLike("Tx "); // another connection: it must not see the uncommitted row
  return { inside: await tx[`book${model}`].count(), outside };
}));
out.afterCommit = await namesLike("Tx ");
out.thrown = await attempt(() => prisma.$transaction(async (tx) => {
  await tx[`author${model}`].create({ data: { name: "Doomed Author" } });
  const seen = await tx[`author${model}`].count({ where: { name: "Doomed Author" } });
  throw new Error(`boom after seeing ${seen}`);
}));
out.afterThrow = await namesLike("Doomed");
out.failedInside = await attempt(() => prisma.$transaction(async (tx) => {
  await tx[`author${model}`].create({ data: { name: "Half Author" } });
  await tx[`book${model}`].create({ data: { authorId: 999999, title: "Half Book", price: 1, publishedAt: new Date(0) } });
}));
out.afterFailed = await namesLike("Half");
out.serializable = await attempt(() => prisma.$transaction(async (tx) => {
  await tx[`author${model}`].create({ data: { name: "Serial Author" } });
  return tx[`author${model}`].count({ where: { name: { startsWith: "Serial" } } });
}, { isolationLevel: Prisma.TransactionIsolationLevel.Serializable }));
out.afterSerializable = await namesLike("Serial");
out.nested = await attempt(() => prisma.$transaction(async (tx) => {
  await tx[`author${model}`].create({ data: { name: "Nest Outer" } });
  const inner = await attempt(() => tx.$transaction(async (tx2) => {
    await tx2[`author${model}`].create({ data: { name: "Nest Inner Doomed" } });
    const n = await tx2[`author${model}`].count({ where: { name: { startsWith: "Nest " } } });
    throw new Error(`inner fails after seeing ${n}`);
  }));
  const kept = await attempt(() => tx.$transaction(async (tx2) => {
    await tx2[`author${model}`].create({ data: { name: "Nest Inner Kept" } });
    return "released";
  }));
  await tx[`author${model}`].create({ data: { name: "Nest After" } });
  const seen = (await tx[`author${model}`].findMany({ where: { name: { startsWith: "Nest " } }, orderBy: { id: "asc" } }))
    .map((a) => a.name);
  return { inner, kept, seen };
}));
out.afterNested = await namesLike("Nest ");

out.finalBooks = await books.findMany({ orderBy: { id: "asc" } });
out.finalAuthors = await authors.findMany({ orderBy: { id: "asc" } });
out.trace = trace;
await prisma.$disconnect();
process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? String(v) : v)) + "\n");
