// Client CPU per job of a Node.js pipeline using @grpc/grpc-js: one unary SubmitSync per job vs
// SubmitSyncStream. The Node twin of bench/python_client_cpu.py; bench/run.sh clients runs both.
//
// Submits --jobs healthy jobs (fake-lms script 200) twice against a running server:
//
//   unary:  one SubmitSync per job, --in-flight (64) calls unanswered at a time;
//   stream: one SubmitSyncStream, one message per job, --window (256) jobs unanswered at a time
//           (the next job is written when an answer comes back; write() back-pressure is
//           honoured through 'drain').
//
// and measures this process's CPU time (process.cpuUsage(): user + system of every thread,
// grpc-js and libuv included) and wall time of each. The jobs' messages are built before either
// clock starts, so both modes are charged for the transport and the client alone. Prints one
// JSON line:
//
//   {"jobs": N, "node": "v18.x", "grpc_js": "1.14.x",
//    "unary": {"seconds", "jobs_per_second", "client_cpu_us_per_job", "rejected"},
//    "stream": {...}, "ratio_stream_to_unary": cpu per job of stream / of unary}
//
// Exit status 1 when any job was refused. Run it against a local server only (bench/run.sh's):
//
//   (cd bench/node && npm ci) && node bench/node/client_cpu.mjs --target 127.0.0.1:PORT
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAX_JOBS = 1_000_000;

function options() {
  const { values } = parseArgs({
    options: {
      target: { type: 'string' },
      jobs: { type: 'string', default: '20000' },
      'in-flight': { type: 'string', default: '64' },
      window: { type: 'string', default: '256' },
      endpoint: { type: 'string', default: 'lms' },
      path: { type: 'string', default: '/api/v1/courses/1/grades' },
      tenant: { type: 'string' },
      'key-prefix': { type: 'string', default: `nodecpu-${process.pid}-${Date.now()}-` },
      proto: { type: 'string', default: path.join(here, '..', '..', 'proto') },
    },
  });
  const fail = (why) => {
    console.error(`client_cpu.mjs: ${why}`);
    process.exit(2);
  };
  if (!values.target) fail('--target host:port is required');
  const int = (name) => {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < 1) fail(`--${name}: a whole number of at least 1`);
    return v;
  };
  const jobs = int('jobs');
  if (jobs > MAX_JOBS) fail(`--jobs: 1 to ${MAX_JOBS}`);
  return { ...values, jobs, inFlight: int('in-flight'), window: int('window') };
}

// The jobs of one mode, as loadgen's healthy mix (bench/loadgen.cc FillRequest).
function requests(opts, mode) {
  const out = new Array(opts.jobs);
  for (let i = 0; i < opts.jobs; ++i) {
    out[i] = {
      idempotency_key: `${opts['key-prefix']}${mode}-${i}`,
      endpoint: opts.endpoint,
      method: 'POST',
      path: opts.path,
      query: 'script=200',
      body: Buffer.from(`{"student":${i},"score":95}`),
      headers: [{ name: 'Content-Type', value: 'application/json' }],
    };
  }
  return out;
}

// One SubmitSync per job, at most `inFlight` unanswered; resolves to the count of refused ones.
function unary(client, metadata, jobs, inFlight) {
  return new Promise((resolve) => {
    let next = 0;
    let done = 0;
    let rejected = 0;
    const deadline = () => new Date(Date.now() + 60_000);
    const send = () => {
      const job = jobs[next++];
      client.SubmitSync({ request: job }, metadata, { deadline: deadline() }, (err) => {
        if (err) ++rejected;
        if (++done === jobs.length) return resolve(rejected);
        if (next < jobs.length) send();
      });
    };
    for (let i = 0; i < Math.min(inFlight, jobs.length); ++i) send();
  });
}

// One SubmitSyncStream: each answer lets the next job go; resolves to the count of refused ones.
function stream(client, metadata, jobs, window) {
  return new Promise((resolve, reject) => {
    const call = client.SubmitSyncStream(metadata, { deadline: new Date(Date.now() + 600_000) });
    let next = 0;
    let answered = 0;
    let rejected = 0;
    let blocked = false;
    const fill = () => {
      while (!blocked && next < jobs.length && next - answered < window) {
        const seq = next;
        blocked = !call.write({ sequence: seq, request: jobs[next++] });
      }
      if (next === jobs.length) call.end();
    };
    call.on('drain', () => {
      blocked = false;
      fill();
    });
    call.on('data', (answer) => {
      if ((answer.code ?? 0) !== 0) ++rejected;  // proto3: an OK code is not sent
      ++answered;
      fill();
    });
    call.on('error', reject);
    call.on('end', () =>
      answered === jobs.length
        ? resolve(rejected)
        : reject(new Error(`stream ended after ${answered} of ${jobs.length} answers`)),
    );
    fill();
  });
}

async function measure(run) {
  const cpu = process.cpuUsage();
  const wall = process.hrtime.bigint();
  const rejected = await run();
  const used = process.cpuUsage(cpu);
  return {
    rejected,
    seconds: Number(process.hrtime.bigint() - wall) / 1e9,
    cpu_us: used.user + used.system,
  };
}

async function main() {
  const opts = options();
  const definition = protoLoader.loadSync('rebound/v1/rebound.proto', {
    includeDirs: [opts.proto],
    keepCase: true,
    longs: Number,
    defaults: false,
  });
  const { Rebound } = grpc.loadPackageDefinition(definition).rebound.v1;
  const metadata = new grpc.Metadata();
  if (opts.tenant) metadata.set('x-rebound-tenant', opts.tenant);
  const jobs = { unary: requests(opts, 'unary'), stream: requests(opts, 'stream') };

  const client = new Rebound(opts.target, grpc.credentials.createInsecure());
  // Connected before the clocks start.
  await new Promise((resolve, reject) =>
    client.waitForReady(new Date(Date.now() + 10_000), (err) => (err ? reject(err) : resolve())),
  );
  const results = {
    unary: await measure(() => unary(client, metadata, jobs.unary, opts.inFlight)),
    stream: await measure(() => stream(client, metadata, jobs.stream, opts.window)),
  };
  client.close();

  const require = createRequire(import.meta.url);
  const out = {
    jobs: opts.jobs,
    node: process.version,
    grpc_js: require('@grpc/grpc-js/package.json').version,
  };
  for (const [mode, r] of Object.entries(results)) {
    out[mode] = {
      seconds: Number(r.seconds.toFixed(3)),
      jobs_per_second: Math.round(opts.jobs / r.seconds),
      client_cpu_us_per_job: Number((r.cpu_us / opts.jobs).toFixed(1)),
      rejected: r.rejected,
    };
  }
  out.ratio_stream_to_unary = Number(
    (out.stream.client_cpu_us_per_job / out.unary.client_cpu_us_per_job).toFixed(3),
  );
  console.log(JSON.stringify(out));
  return Object.values(results).some((r) => r.rejected) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`client_cpu.mjs: ${err.message}`);
    process.exit(1);
  },
);
