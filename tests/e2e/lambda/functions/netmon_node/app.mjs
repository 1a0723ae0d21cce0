// A Node.js function (aws-lambda-ric) that talks to a local HTTP server, for netmon's Lambda
// tests: same contract as ../netmon_python/app.py. One keep-alive agent is shared across
// invocations (and used at init, with top-level await, when INIT_PORT is set), as SDK clients
// are.
import http from "node:http";
import dns from "node:dns/promises";

let agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const headers = body ? { "Content-Length": body.length } : {};
    const req = http.request({ host: "127.0.0.1", port, method, path, agent, headers }, (res) => {
      let n = 0;
      res.on("data", (d) => (n += d.length));
      res.on("end", () => resolve(n));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body) req.write(body);
    req.end();
  });
}

async function exchange(port, download, upload) {
  let got = 0;
  if (download) got = await request(port, "GET", `/download?size=${download}`);
  if (upload) await request(port, "POST", "/upload", Buffer.alloc(upload, 117));
  return got;
}

if (process.env.INIT_PORT) {
  await dns.lookup("localhost");
  await exchange(Number(process.env.INIT_PORT), Number(process.env.INIT_DOWNLOAD || 1000), 0);
}

export const handler = async (event) => {
  if (event.resolve) await dns.lookup(event.resolve);
  const got = await exchange(event.port, event.download || 0, event.upload || 0);
  if (event.keepalive === false) {
    agent.destroy();
    agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }
  return { downloaded: got };
};
