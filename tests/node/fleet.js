// A Node BullMQ app for the proxy's mixed-fleet tests, driven over stdin and stdout.
//
//   node fleet.js <major: 5|6> <redis host> <redis port> <prefix>
//
// Each stdin line is a JSON command {"id": n, "op": "...", ...}; each answer is a stdout line
// {"id": n, "ok": value} or {"id": n, "error": "message"}. Workers report each job they run
// as {"event": "processed", "queue", "id", "name", "data", "attemptsMade", "result"} and each
// failure as {"event": "failed", ...}. tests/node_fleet.py is the Python side.
"use strict";

const readline = require("node:readline");

const [major, host, port, prefix] = process.argv.slice(2);
const { Queue, Worker, Job } = require(major === "5" ? "bullmq5" : "bullmq6");
const connection = { host, port: Number(port), maxRetriesPerRequest: null };

const queues = new Map();
const workers = new Map();

function queue(name) {
  if (!queues.has(name)) {
    queues.set(name, new Queue(name, { connection, prefix }));
  }
  return queues.get(name);
}

function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

function report(event, queueName, job, extra) {
  send({ event, queue: queueName, id: job.id, name: job.name, data: job.data,
         attemptsMade: job.attemptsMade, ...extra });
}

// What a worker does with a job, from the job's data: {"fail": true} throws,
// {"hang": true} never settles (for stalled-job tests), {"sleep": ms} takes that long;
// otherwise it returns {"by": "node5", "startedAt", "finishedAt"} (ms, this process's clock).
async function processJob(job) {
  const startedAt = Date.now();
  if (job.data && job.data.hang) {
    return new Promise(() => {});
  }
  if (job.data && job.data.fail && job.attemptsMade < (job.data.failTimes || Infinity)) {
    throw new Error("node worker failed on purpose");
  }
  if (job.data && job.data.sleep) {
    await new Promise((resolve) => setTimeout(resolve, job.data.sleep));
  }
  return { by: `node${major}`, startedAt, finishedAt: Date.now() };
}

const ops = {
  async version({ queue: name }) {
    await queue(name).waitUntilReady();
    // The constructor writes meta.version without waiting for it: read until it is there.
    for (let tries = 0; tries < 100; tries++) {
      const version = await queue(name).getVersion();
      if (version) {
        return version;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return null;
  },
  async add({ queue: name, name: jobName, data, opts }) {
    return (await queue(name).add(jobName, data, opts || {})).id;
  },
  async addBulk({ queue: name, jobs }) {
    return (await queue(name).addBulk(jobs)).map((job) => job.id);
  },
  async pause({ queue: name }) {
    await queue(name).pause();
    return true;
  },
  async resume({ queue: name }) {
    await queue(name).resume();
    return true;
  },
  async isPaused({ queue: name }) {
    return queue(name).isPaused();
  },
  async counts({ queue: name, types }) {
    return queue(name).getJobCounts(...(types || []));
  },
  async state({ queue: name, jobId }) {
    return queue(name).getJobState(jobId);
  },
  async jobs({ queue: name, types }) {
    return (await queue(name).getJobs(types || [])).map((job) => job.id);
  },
  async retry({ queue: name, jobId }) {
    const job = await Job.fromId(queue(name), jobId);
    await job.retry();
    return true;
  },
  async promote({ queue: name, jobId }) {
    const job = await Job.fromId(queue(name), jobId);
    await job.promote();
    return true;
  },
  async promoteJobs({ queue: name }) {
    await queue(name).promoteJobs();
    return true;
  },
  async retryJobs({ queue: name, state }) {
    await queue(name).retryJobs({ state });
    return true;
  },
  async limits({ queue: name }) {
    const q = queue(name);
    return { concurrency: await q.getGlobalConcurrency(),
             rateLimit: await q.getGlobalRateLimit() };
  },
  async scheduler({ queue: name, schedulerId }) {
    return (await queue(name).getJobScheduler(schedulerId)) ?? null;
  },
  async workers({ queue: name }) {
    return (await queue(name).getWorkers()).map((client) => client.name);
  },
  async worker({ queue: name, concurrency, lockDuration, stalledInterval }) {
    const worker = new Worker(name, processJob, {
      connection, prefix, concurrency: concurrency || 1,
      lockDuration: lockDuration || 30000, stalledInterval: stalledInterval || 30000,
    });
    worker.on("active", (job) => report("active", name, job));
    worker.on("completed", (job, result) => report("processed", name, job, { result }));
    worker.on("failed", (job, err) => report("failed", name, job, { reason: err.message }));
    worker.on("error", (err) => send({ event: "error", queue: name, message: err.message }));
    await worker.waitUntilReady();
    workers.set(name, worker);
    return true;
  },
  async closeWorker({ queue: name }) {
    const worker = workers.get(name);
    workers.delete(name);
    if (worker) {
      await worker.close(true);
    }
    return true;
  },
  async close() {
    await Promise.all([...workers.values()].map((worker) => worker.close(true)));
    await Promise.all([...queues.values()].map((q) => q.close()));
    return true;
  },
};

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  try {
    const op = ops[command.op];
    if (!op) {
      throw new Error(`unknown op ${command.op}`);
    }
    send({ id: command.id, ok: (await op(command)) ?? null });
  } catch (err) {
    send({ id: command.id, error: String(err && err.stack ? err.stack : err) });
  }
  if (command.op === "close") {
    process.exit(0);
  }
});
lines.on("close", () => process.exit(0));
