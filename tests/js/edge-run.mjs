// Runs tests/js/edge-worker.mjs in workerd (Cloudflare's runtime) through miniflare. Reads {sqlUrl, target, user,
// password, database, table, pgAddress} as JSON on stdin and prints one JSON object: each step's answer, from
//   - "app": the Worker under test, whose outbound traffic goes through the "egress" Worker (which only forwards
//     fetch()), so HTTP works and raw TCP cannot leave it;
//   - "control": the same script with miniflare's default outbound, where TCP to the database does open, so that
//     app's refusal is the egress route's doing and not a database that is down.
// Start-up and requests are bounded; the Miniflare is disposed of whatever happens.
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { Miniflare } from "miniflare";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const started = Date.now();
const { outputFiles: [bundle] } = await build({
  entryPoints: [fileURLToPath(new URL("edge-worker.mjs", import.meta.url))], bundle: true, write: false,
  format: "esm", platform: "neutral", mainFields: ["module", "main"], conditions: ["worker", "browser"],
  external: ["cloudflare:*"], logLevel: "warning",
});
const bundled = Date.now() - started;

const bindings = { SQL_URL: input.sqlUrl, DB_TARGET: input.target, DB_USER: input.user, DB_PASSWORD: input.password,
  DB_NAME: input.database, TABLE: input.table, PG_ADDRESS: input.pgAddress };
const worker = { modules: true, script: bundle.text, compatibilityDate: "2025-01-01", bindings };
const mf = new Miniflare({
  workers: [
    { name: "app", ...worker, outboundService: "egress" },
    { name: "control", ...worker },
    { name: "egress", modules: true, compatibilityDate: "2025-01-01", script: "export default { fetch: (r) => fetch(r) }" },
  ],
});
const withTimeout = (promise, what) => Promise.race([promise, new Promise((_, reject) => setTimeout(
  () => reject(new Error(`${what} took more than 15 s`)), 15_000).unref())]);
try {
  await withTimeout(mf.ready, "miniflare start-up");
  const app = await mf.getWorker("app");
  const control = await mf.getWorker("control");
  const call = async (fetcher, step) => (await withTimeout(fetcher.fetch(`http://worker/${step}`), step)).json();
  const out = { bundleBytes: bundle.text.length, bundleMs: bundled };
  out.runtime = await call(app, "runtime");
  out.tcp = await call(app, "tcp");
  out.controlTcp = await call(control, "tcp");
  out.neonSetup = await call(app, "neonSetup");
  out.polyscale = await call(app, "polyscale");
  out.neonRead = await call(app, "neonRead");
  out.totalMs = Date.now() - started;
  process.stdout.write(JSON.stringify(out) + "\n");
} finally {
  await mf.dispose();
}
