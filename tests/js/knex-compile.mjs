// What knex.raw sends to the driver: reads cases as JSON on stdin, [{sql, bindings, client}], and prints one
// result per case, {sql, bindings} from knex(...).raw(sql, bindings).toSQL().toNative(), or {error} when knex
// refuses it. No connection is made: knex compiles without one. A binding {"$bigint": "123"} becomes a BigInt
// (JSON cannot carry one), and BigInts go back out the same way.
import knex from "knex";

const clients = {};
function client(name) {
  clients[name] ??= knex({ client: name, useNullAsDefault: true });
  return clients[name];
}

const revive = (value) =>
  value !== null && typeof value === "object" && !Array.isArray(value) && "$bigint" in value
    ? BigInt(value.$bigint)
    : Array.isArray(value)
      ? value.map(revive)
      : value !== null && typeof value === "object"
        ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]))
        : value;
const replacer = (_key, value) => (typeof value === "bigint" ? { $bigint: value.toString() } : value);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map(({ sql, bindings, client: name }) => {
  try {
    const raw = bindings === undefined || bindings === null
      ? client(name).raw(sql)
      : client(name).raw(sql, revive(bindings));
    return raw.toSQL().toNative();
  } catch (error) {
    return { error: String(error && error.message) };
  }
});
process.stdout.write(JSON.stringify(out, replacer));
for (const k of Object.values(clients)) await k.destroy();
