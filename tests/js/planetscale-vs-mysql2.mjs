// Runs the same queries through @planetscale/database (against our endpoint) and through mysql2 over TCP straight
// to MariaDB, and prints what each returned, serialised so that any difference shows: the fields, every value as
// the driver cast it (with its JavaScript type), and for writes the counts and the insert id.
//
// stdin: {"url", "mysql": {host, port, user, password, database}, "queries": [{"id", "sql", "plain"?, "write"?}]}
// stdout: one JSON object, per query id {"driver": outcome, "mysql2": outcome, "plain"?: outcome}, where an outcome
//   is {"fields", "rows"} (or {"rowsAffected", "insertId", ...} for a write, or {"error"}).
// mysql2 is configured to cast as the driver does (big integers and decimals as strings, dates as the server's
// text, JSON text as text, GEOMETRY as its bytes); "plain" is the same query through mysql2 with its own defaults
// for those two last (it parses MariaDB's JSON and GEOMETRY), for the test to show what the configuration changes.
// A write query's SQL holds "{table}" (a SELECT among them reads that table): the driver's copy runs on TABLE_driver, mysql2's on TABLE_mysql2.
import { connect } from "@planetscale/database";
import mysql from "mysql2/promise";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { url, mysql: login, queries } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const fetchOnNewConnections = async (input, init) => {
  const request = new Request(input, init);
  request.headers.set("connection", "close");
  return fetch(request);
};
const driver = connect({ url, fetch: fetchOnNewConnections });

// The driver's casts (src/cast.ts): INT64/UINT64/DECIMAL/dates/TIME as the server's text, smaller integers and YEAR
// as numbers, floats as numbers, binary (charset 63) as bytes, the rest as UTF-8 text.
const matching = {
  supportBigNumbers: true, bigNumberStrings: true, dateStrings: true, decimalNumbers: false, jsonStrings: true,
  typeCast: (field, next) => (field.type === "GEOMETRY" ? field.buffer() : next()),
};
const common = { host: login.host, port: login.port, user: login.user, password: login.password,
  database: login.database, charset: "UTF8MB4_GENERAL_CI" };
const tcp = await mysql.createConnection({ ...common, ...matching });
const plain = await mysql.createConnection({ ...common, supportBigNumbers: true, bigNumberStrings: true,
  dateStrings: true });

function serialise(value) {
  if (value === null) return null;
  if (value === undefined) return { undefined: true };
  if (typeof value === "string") return value;
  if (typeof value === "number") return { number: Object.is(value, -0) ? "-0" : String(value) };
  if (typeof value === "bigint") return { bigint: String(value) };
  if (typeof value === "boolean") return { boolean: value };
  if (value instanceof Uint8Array) return { bytes: Array.from(value), class: value.constructor.name };
  if (value instanceof Date) return { date: Number.isNaN(value.getTime()) ? String(value) : value.toISOString() };
  return { json: value, class: value.constructor?.name ?? null }; // parsed JSON (or mysql2's geometry)
}

const failure = (error) => ({ error: { name: error?.name, message: String(error?.message ?? error),
  code: error?.body?.code ?? error?.code ?? null, errno: error?.errno ?? null } });

function driverFields(fields) {
  // The field objects as the driver hands them over (it sets a missing type to "NULL"), every key kept.
  return fields.map((field) => ({ ...field }));
}

function mysql2Fields(fields) {
  return fields.map((f) => ({
    name: f.name, columnType: f.columnType, characterSet: f.characterSet, flags: f.flags,
    columnLength: f.columnLength, decimals: f.decimals, table: f.table, orgTable: f.orgTable, schema: f.schema,
    orgName: f.orgName, extendedTypeName: f.extendedTypeName ?? null, extendedFormat: f.extendedFormat ?? null,
  }));
}

async function throughDriver({ sql, write }) {
  try {
    const result = await driver.execute(write ? sql.replaceAll("{table}", write + "_driver") : sql, null,
      { as: "array" });
    if (write) {
      return { rowsAffected: result.rowsAffected, insertId: result.insertId, fields: result.fields.length,
        rows: result.rows.map((row) => row.map(serialise)) };
    }
    return { fields: driverFields(result.fields), rows: result.rows.map((row) => row.map(serialise)) };
  } catch (error) {
    return failure(error);
  }
}

async function throughMysql2(connection, { sql, write }) {
  try {
    const [rows, fields] = await connection.query({ sql: write ? sql.replaceAll("{table}", write + "_mysql2") : sql,
      rowsAsArray: true });
    if (write && !fields) {
      return { affectedRows: rows.affectedRows, insertId: rows.insertId, changedRows: rows.changedRows };
    }
    if (write) return { rows: rows.map((row) => row.map(serialise)) };
    return { fields: mysql2Fields(fields), rows: rows.map((row) => row.map(serialise)) };
  } catch (error) {
    return failure(error);
  }
}

const out = {};
// Reads: side by side, four at a time through the driver (each on its own HTTP connection); mysql2's connection
// answers one query at a time anyway. Writes: one at a time, in order.
const reads = queries.filter((query) => !query.write);
await Promise.all(Array.from({ length: 4 }, async () => {
  for (let query = reads.shift(); query !== undefined; query = reads.shift()) {
    const pair = { driver: await throughDriver(query), mysql2: await throughMysql2(tcp, query) };
    if (query.plain) pair.plain = await throughMysql2(plain, query);
    out[query.id] = pair;
  }
}));
for (const query of queries.filter((q) => q.write)) {
  out[query.id] = { driver: await throughDriver(query), mysql2: await throughMysql2(tcp, query) };
}
await tcp.end();
await plain.end();
process.stdout.write(JSON.stringify(out) + "\n");
