// The ORM scripts' shared helpers over PlanetScale's driver: their JSON input from stdin, and a fetch that sends
// every request on a new connection (so a server's workers share them out) and traces each: its SQL, the session
// it sent and the one it got, its status, error code and the worker that answered (X-Test-Worker).
export async function readInput() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

export function tracingFetch(trace) {
  return async (input, init) => {
    const request = new Request(input, init);
    request.headers.set("connection", "close");
    const sent = JSON.parse(init.body);
    const response = await fetch(request);
    const answer = await response.clone().json().catch(() => ({}));
    trace.push({ sql: (sent.query ?? "").slice(0, 80), sent: sent.session?.signature ?? "",
      got: answer.session?.signature ?? "", inTransaction: answer.session?.vitessSession?.inTransaction ?? false,
      status: response.status, error: answer.error?.code ?? null, worker: response.headers.get("x-test-worker") });
    return response;
  };
}
