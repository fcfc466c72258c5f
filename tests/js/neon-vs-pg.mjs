// Runs the same queries through @neondatabase/serverless (HTTP mode, against our /sql endpoint) and through
// node-postgres over TCP, and prints what each driver returned, serialised so that any difference shows.
//
// stdin: {"endpoint", "neonConnectionString", "pgConnectionString",
//         "queries": [{"sql", "params"?, "echo"?, "alone"?}]}
// stdout: one JSON array, per query {"neon": outcome, "pg": outcome}, where an outcome is
//   {"fields", "command", "rowCount", "rows" (parsed by the driver's own type parsers), "text" (the text each
//   parser was handed), "echo"?} or {"error": {message and PostgreSQL's error fields}}.
// "echo" is a second query run with the first cell the same driver returned as its $1, as a user would send a
// value back. Params are JSON, with tagged objects for what JSON cannot carry: {"$date": string},
// {"$bytes": hex}, {"$bigint": string}, {"$number": "NaN" | "Infinity" | "-Infinity" | "-0"}.
import { neon, neonConfig, errorFields, types as neonTypes } from "@neondatabase/serverless";
import pg from "pg";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { endpoint, neonConnectionString, pgConnectionString, queries } = JSON.parse(Buffer.concat(chunks).toString());

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && keys[0].startsWith("$")) {
    const tagged = value[keys[0]];
    switch (keys[0]) {
      case "$date": return new Date(tagged);
      case "$bytes": return Buffer.from(tagged, "hex");
      case "$bigint": return BigInt(tagged);
      case "$number": return Number(tagged);
      default: throw new Error(`unknown parameter tag ${keys[0]}`);
    }
  }
  return Object.fromEntries(keys.map((key) => [key, decode(value[key])]));
}

function serialise(value) {
  if (value === null) return null;
  if (value === undefined) return { undefined: true };
  if (value instanceof Date) return { date: Number.isNaN(value.getTime()) ? String(value) : value.toISOString() };
  if (value instanceof Uint8Array) return { bytes: Buffer.from(value).toString("hex") };
  if (typeof value === "bigint") return { bigint: String(value) };
  if (typeof value === "number") return { number: Object.is(value, -0) ? "-0" : String(value) };
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (Array.isArray(value)) return value.map(serialise);
  if (typeof value === "object") {
    const out = Object.fromEntries(Object.keys(value).map((key) => [key, serialise(value[key])]));
    const kind = value.constructor?.name;
    if (kind && kind !== "Object") out.$class = kind; // a PostgresInterval must not pass for a plain object
    return out;
  }
  return { [typeof value]: String(value) };
}

// Each driver's own parser, wrapped so that the text it was handed is kept next to what it made of it.
function recording(driverTypes) {
  return {
    getTypeParser(oid, format) {
      const parse = driverTypes.getTypeParser(oid, format);
      return (text) => ({ recorded: true, text, value: parse(text) });
    },
  };
}

function outcome(result) {
  const cells = result.rows.map((row) => row.map((cell) => (cell === null ? { text: null, value: null } : cell)));
  return {
    fields: result.fields.map((f) => ({
      name: f.name, dataTypeID: f.dataTypeID, tableID: f.tableID, columnID: f.columnID,
      dataTypeSize: f.dataTypeSize, dataTypeModifier: f.dataTypeModifier, format: f.format,
    })),
    command: result.command,
    rowCount: result.rowCount,
    rows: cells.map((row) => row.map((cell) => serialise(cell.value))),
    text: cells.map((row) => row.map((cell) => cell.text)),
    firstValue: cells[0]?.[0]?.value,
  };
}

function failure(error) {
  const fields = { name: error?.constructor?.name === "NeonDbError" ? "DatabaseError" : error?.constructor?.name };
  fields.message = String(error?.message ?? error);
  for (const name of errorFields) if (error?.[name] !== undefined && error?.[name] !== null) fields[name] = error[name];
  return { error: fields };
}

neonConfig.fetchEndpoint = endpoint;
const http = neon(neonConnectionString);
const WORKERS = 6;
const clients = Array.from({ length: WORKERS }, () => new pg.Client({ connectionString: pgConnectionString }));
await Promise.all(clients.map((client) => client.connect()));

function drivers(tcp) {
  return {
    neon: (sql, params) =>
      http.query(sql, params, { fullResults: true, arrayMode: true, types: recording(neonTypes) }),
    pg: (sql, params) => tcp.query({ text: sql, values: params, rowMode: "array", types: recording(pg.types) }),
  };
}

async function run(driver, sql, params) {
  try {
    return outcome(await driver(sql, params));
  } catch (error) {
    return failure(error);
  }
}

async function compare({ sql, params = [], echo, alone = false }, tcp) {
  const pair = {};
  const through = async ([name, driver]) => {
    const got = await run(driver, sql, decode(params));
    if (echo !== undefined && !("error" in got)) {
      const back = await run(driver, echo, [got.firstValue]);
      delete back.firstValue;
      got.echo = back;
    }
    delete got.firstValue;
    pair[name] = got;
  };
  const both = Object.entries(drivers(tcp));
  if (alone) {
    for (const entry of both) await through(entry);
  } else {
    await Promise.all(both.map(through));
  }
  return { neon: pair.neon, pg: pair.pg };
}

// Queries that only read run side by side, on several connections; those marked "alone" (writes, DDL) run one
// at a time afterwards, through one driver and then the other, so that neither sees the other's half-done work.
const results = new Array(queries.length);
const shared = [...queries.entries()].filter(([, query]) => !query.alone);
await Promise.all(clients.map(async (tcp) => {
  for (let next = shared.shift(); next !== undefined; next = shared.shift()) {
    results[next[0]] = await compare(next[1], tcp);
  }
}));
for (const [index, query] of queries.entries()) {
  if (query.alone) results[index] = await compare(query, clients[0]);
}
await Promise.all(clients.map((client) => client.end()));
process.stdout.write(JSON.stringify(results) + "\n");
