// node http/https module client: POST /upload N bytes, then GET /download?size=M.
// usage: node node_http.js URL UPLOAD DOWNLOAD [CAFILE]
'use strict';
const fs = require('fs');

const [url, upload, download, cafile] = process.argv.slice(2);
const base = new URL(url);
const mod = base.protocol === 'https:' ? require('https') : require('http');
const ca = cafile ? fs.readFileSync(cafile) : undefined;
// One keep-alive agent: both requests normally share a connection.
const agent = new mod.Agent({ keepAlive: true, maxSockets: 1, ca });

function request(method, path, body) {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'Content-Type': 'application/octet-stream', 'Content-Length': body.length } : {};
    const req = mod.request({
      host: base.hostname, port: base.port, method, path, headers, agent, ca,
      servername: base.hostname === '127.0.0.1' ? undefined : base.hostname,
    }, (res) => {
      let len = 0;
      const chunks = [];
      res.on('data', (c) => { len += c.length; if (len < 4096) chunks.push(c); });
      res.on('end', () => resolve({ status: res.statusCode, len, text: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(30000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

(async () => {
  const n = Number(upload), m = Number(download);
  const up = await request('POST', '/upload', Buffer.alloc(n, 0x6e));
  const received = JSON.parse(up.text).received;
  if (received !== n) throw new Error(`server received ${received}, sent ${n}`);
  const down = await request('GET', `/download?size=${m}`);
  if (down.len !== m) throw new Error(`downloaded ${down.len}, expected ${m}`);
  agent.destroy();
  console.log(JSON.stringify({ uploaded: n, downloaded: down.len }));
})().catch((e) => { console.error(e); process.exit(1); });
