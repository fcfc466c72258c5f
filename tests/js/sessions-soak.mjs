// Many clients of the real @libsql/client, each running short write transactions one after the other against our
// Hrana endpoint: transaction("write") sends BEGIN IMMEDIATE with the INSERT in one pipeline (the stream stays open),
// commit() sends COMMIT with close in the next. Every request goes on a new connection (Connection: close), so the
// two requests of a transaction usually land on different workers.
// A first request answered 503 with Retry-After (the server had no pooled connection to spare, and said so at once)
// is sent again, as a client that honours Retry-After would, after that many seconds times 0.5 to 1.5: at most
// `attempts` times for one transaction. Nothing else is retried.
// Input on stdin: {url, token, table, clients, transactions, attempts}. Prints one JSON object: the (client, seq)
// pairs by outcome, counts by kind of every failed request (retried ones too), the retries, the seconds the run
// took and the answers per worker.
//   committed    COMMIT answered ok
//   notStarted   the first request failed (its answer said so, or none came): no baton, so nothing to commit
//   commitFailed COMMIT was answered, with an error (an HTTP error, or an error result)
//   commitLost   COMMIT's answer never arrived (the connection failed): the client cannot know
import { createClient } from "@libsql/client";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { url, token, table, clients, transactions, attempts } = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const outcome = { committed: [], notStarted: [], commitFailed: [], commitLost: [], kinds: {}, workers: {},
  retried: 0, handedOver: 0, requests: 0 };
const count = (kind) => { outcome.kinds[kind] = (outcome.kinds[kind] ?? 0) + 1; };
const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

async function runClient(client) {
  // What the latest request of each phase got: {status, worker, retryAfter} or {network}. A transaction whose first
  // request failed closes its stream in the background, so a phase is told by the request's body, not by its order.
  let last = {};
  let seen = [];
  const fetchOnNewConnections = async (input, init) => {
    const request = new Request(input, init);
    request.headers.set("connection", "close");
    const text = request.method === "POST" ? await request.clone().text() : "";
    const phase = text.includes("COMMIT") ? "commit" : text.includes("BEGIN") ? "begin" : "other";
    outcome.requests += 1;
    try {
      const response = await fetch(request);
      const worker = response.headers.get("x-test-worker");
      outcome.workers[worker] = (outcome.workers[worker] ?? 0) + 1;
      last[phase] = { status: response.status, worker, retryAfter: Number(response.headers.get("retry-after")) };
      if (phase !== "other") seen.push(worker);
      return response;
    } catch (error) {
      last[phase] = { network: error.cause?.code ?? error.name };
      throw error;
    }
  };
  const db = createClient({ url, authToken: token, fetch: fetchOnNewConnections });
  for (let seq = 0; seq < transactions; seq++) {
    const pair = [client, seq];
    let tx;
    let started = false;
    for (let attempt = 1; attempt <= attempts && !started; attempt++) {
      last = {};
      seen = [];
      try {
        tx = await db.transaction("write");
        await tx.execute({ sql: `INSERT INTO ${table} (client, seq) VALUES (?, ?)`, args: [client, seq] });
        started = true;
      } catch (error) {
        const begin = last.begin;
        count(`begin: ${begin?.network ? `no answer (${begin.network})` : `${begin?.status} ${error.code}`}`);
        tx?.close();
        if (!(begin?.status === 503 && begin.retryAfter > 0) || attempt === attempts) break;
        outcome.retried += 1;
        await sleep(begin.retryAfter * (0.5 + Math.random()));
      }
    }
    if (!started) {
      outcome.notStarted.push(pair);
      continue;
    }
    try {
      await tx.commit();
      outcome.committed.push(pair);
      if (new Set(seen).size >= 2) outcome.handedOver += 1;
    } catch (error) {
      const commit = last.commit;
      if (commit === undefined || commit.network) {
        outcome.commitLost.push(pair);
        count(`commit: no answer (${commit?.network ?? "never sent"})`);
      } else {
        outcome.commitFailed.push([client, seq, `${commit.status} ${error.code}: ${error.message}`]);
        count(`commit: ${commit.status} ${error.code}`);
      }
    }
  }
  db.close();
}

const started = performance.now();
await Promise.all(Array.from({ length: clients }, (_, client) => runClient(client)));
outcome.seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify(outcome));
