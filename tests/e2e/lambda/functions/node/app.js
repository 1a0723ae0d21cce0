// Test function for the local Lambda (Node.js, aws-lambda-ric); same contract as ../python/app.py.
// At init, if TICK_FILE is set, a timer writes an increasing counter to it every 10 ms; if
// CHILD_TICK_FILE is set, a detached child process (own session) does the same.
"use strict";

const fs = require("fs");
const { spawn } = require("child_process");

const TICK_CODE = `
  const fs = require("fs");
  const path = process.argv[1];
  let n = 0;
  setInterval(() => {
    n += 1;
    fs.writeFileSync(path + ".tmp", String(n));
    fs.renameSync(path + ".tmp", path);
  }, 10);
`;

const TICK_FILE = process.env.TICK_FILE;
if (TICK_FILE) {
  let n = 0;
  setInterval(() => {
    n += 1;
    fs.writeFileSync(`${TICK_FILE}.tmp`, String(n));
    fs.renameSync(`${TICK_FILE}.tmp`, TICK_FILE);
  }, 10);
}
if (process.env.CHILD_TICK_FILE) {
  spawn(process.execPath, ["-e", TICK_CODE, process.env.CHILD_TICK_FILE], { detached: true, stdio: "ignore" }).unref();
}

function ticks() {
  try {
    return parseInt(fs.readFileSync(TICK_FILE, "utf8"), 10);
  } catch (e) {
    return null;
  }
}

console.log("node function initialised");

exports.handler = async (event, context) => {
  const action = event.action || "echo";
  if (event.print !== undefined) console.log(event.print);
  if (action === "sleep") await new Promise((r) => setTimeout(r, event.ms));
  else if (action === "crash") process.exit(event.code === undefined ? 3 : event.code);
  else if (action === "raise") throw new Error(event.message || "boom");
  else if (action === "big") return { data: "x".repeat(event.size) };
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(AWS_|LAMBDA_|_|TZ|LD_)/.test(k)) env[k] = v;
  }
  return {
    runtime: "node",
    echo: event,
    requestId: context.awsRequestId,
    functionArn: context.invokedFunctionArn,
    remainingMs: context.getRemainingTimeInMillis(),
    trace: process.env._X_AMZN_TRACE_ID || null,
    pid: process.pid,
    ticks: TICK_FILE ? ticks() : null,
    env,
  };
};
