// graphile-worker draining a backlog of EVENTS jobs, each a POST to the benchmark's
// webhook sink (bench/deliveries.sh runs it beside PiCloud on the same PostgreSQL):
//   node run.mjs CONNECTION_STRING SINK_URL EVENTS MODE CONCURRENCY
// MODE "plain": the defaults; "batched": the batching options graphile-worker documents
// for throughput (a local queue of concurrency + 1 jobs, job completions batched with no
// delay). CONCURRENCY jobs run at once. Adds the jobs first, then runs the worker until
// the sink has them all (the caller stops it with SIGTERM).
import { Logger, makeWorkerUtils, run } from "graphile-worker";

const [connectionString, url, events, mode, running] = process.argv.slice(2);
const concurrency = Number(running);
const batching =
  mode === "batched"
    ? { localQueue: { size: concurrency + 1 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 }
    : {};
// Warnings and errors only: a line per job would be measured with the jobs.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`${level}: ${message}`);
});

const utils = await makeWorkerUtils({ connectionString, logger });
await utils.migrate();
const total = Number(events);
for (let start = 0; start < total; start += 1000) {
  const jobs = [];
  for (let n = start; n < Math.min(start + 1000, total); n++) {
    jobs.push({ identifier: "deliver", payload: { n, published_at: Date.now() } });
  }
  await utils.addJobs(jobs);
}
await utils.release();
console.error(`added ${total} jobs`);

const runner = await run({
  noHandleSignals: true,
  preset: {
    worker: {
      connectionString,
      concurrentJobs: concurrency,
      maxPoolSize: concurrency + 2,
      pollInterval: 1000,
      logger,
      ...batching,
    },
  },
  taskList: {
    deliver: async (payload, helpers) => {
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", "webhook-id": `job_${helpers.job.id}` },
        body: JSON.stringify(payload),
      });
      await response.arrayBuffer();
      if (!response.ok) throw new Error(`status ${response.status}`);
    },
  },
});
process.on("SIGTERM", () => runner.stop().then(() => process.exit(0)));
await runner.promise;
