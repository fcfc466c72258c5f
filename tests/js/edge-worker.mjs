// A Cloudflare Worker that reaches PostgreSQL only through our /sql, with PolyScale's client and Neon's driver.
// tests/js/edge-run.mjs bundles it with esbuild and runs it in workerd through miniflare. Bindings: SQL_URL (the
// host app's origin), DB_TARGET, DB_USER, DB_PASSWORD, DB_NAME, TABLE (a table name of the test's own) and
// PG_ADDRESS (host:port of PostgreSQL, which the Worker must not be able to reach over TCP).
// Each path answers JSON: {ok: ...} or {error: {name, message, code}}.
import { connect } from "cloudflare:sockets";
import { neon, neonConfig } from "@neondatabase/serverless";
import { Client } from "@polyscale/serverless-js";

const failure = (e) => ({ error: { name: e?.name, message: e?.message ?? String(e), code: e?.code } });

function neonClient(env) {
  neonConfig.fetchEndpoint = () => `${env.SQL_URL}/sql`;
  const login = `${encodeURIComponent(env.DB_USER)}:${encodeURIComponent(env.DB_PASSWORD)}`;
  return neon(`postgresql://${login}@${env.DB_TARGET}/${encodeURIComponent(env.DB_NAME)}`);
}

function polyscaleClient(env) {
  return new Client(env.SQL_URL, { cacheId: env.DB_TARGET, username: env.DB_USER, password: env.DB_PASSWORD,
    database: env.DB_NAME, provider: "postgres" });
}

const steps = {
  // What this runtime is (workerd says so in navigator.userAgent, and offers no Node globals), and which host app
  // answers at SQL_URL.
  async runtime(env) {
    const host = await fetch(`${env.SQL_URL}/api/status`);
    return { userAgent: globalThis.navigator?.userAgent, process: typeof globalThis.process,
      require: typeof globalThis.require, host: { status: host.status, body: await host.json() } };
  },

  // Raw TCP to the database, the way a pg-style driver would open it.
  async tcp(env) {
    const socket = connect(env.PG_ADDRESS);
    await socket.opened;
    await socket.close();
    return "opened";
  },

  async neonSetup(env) {
    const sql = neonClient(env);
    const t = env.TABLE;
    const sum = await sql`SELECT ${41}::int + 1 AS n, ${"edge"}::text AS s`;
    await sql.query(`CREATE TABLE ${t} (id serial PRIMARY KEY, name text NOT NULL, price numeric(8, 2) NOT NULL,
      added timestamptz NOT NULL, tags text[] NOT NULL, meta jsonb NOT NULL)`);
    const [inserted, counted] = await sql.transaction([
      sql.query(`INSERT INTO ${t} (name, price, added, tags, meta) VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)
        RETURNING id, name, price, added, tags, meta`,
        ["Łódź", "1.50", new Date("2024-01-02T03:04:05.678Z"), ["a,b", "c"], { k: [1, null] },
          "plain", "1234.00", "2024-02-29 12:00:00+00", [], {}]),
      sql.query(`SELECT count(*) AS n FROM ${t}`),
    ], { isolationLevel: "Serializable" });
    let missing;
    try {
      await sql`SELECT * FROM no_such_table_in_the_edge_test`;
    } catch (e) {
      missing = failure(e).error;
    }
    return { sum, inserted, counted, missing };
  },

  async polyscale(env) {
    const db = polyscaleClient(env);
    const t = env.TABLE;
    return {
      sum: await db.query("SELECT ?::int + 1 AS n, ? AS s", [41, "edge"]),
      inserted: await db.query(`INSERT INTO ${t} (name, price, added, tags, meta) VALUES (?, ?, ?, '{x}', '{}')
        RETURNING id, name`, ["via polyscale", "9.99", "2024-03-01T00:00:00Z"]),
      selected: await db.query(`SELECT id, name, price::text AS price, tags FROM ${t} WHERE price > ? ORDER BY id`,
        ["1.00"]),
      named: await db.query(`SELECT name FROM ${t} WHERE id = :id`, { id: 1 }),
    };
  },

  // Neon's driver reads back what PolyScale's client wrote.
  async neonRead(env) {
    const sql = neonClient(env);
    return await sql.query(`SELECT id, name, price, tags FROM ${env.TABLE} ORDER BY id`);
  },
};

export default {
  async fetch(request, env) {
    const step = steps[new URL(request.url).pathname.slice(1)];
    if (step === undefined) return Response.json({ error: { message: "no such step" } }, { status: 404 });
    try {
      return Response.json({ ok: await step(env) });
    } catch (e) {
      return Response.json(failure(e));
    }
  },
};
