// node 20 global fetch (undici) client. For HTTPS, trust the test CA with NODE_EXTRA_CA_CERTS.
// usage: node node_fetch.js URL UPLOAD DOWNLOAD
'use strict';
const [url, upload, download] = process.argv.slice(2);

(async () => {
  const n = Number(upload), m = Number(download);
  const up = await fetch(`${url}/upload`, {
    method: 'POST',
    body: Buffer.alloc(n, 0x66),
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  const received = (await up.json()).received;
  if (received !== n) throw new Error(`server received ${received}, sent ${n}`);
  const down = await fetch(`${url}/download?size=${m}`);
  const buf = await down.arrayBuffer();
  if (buf.byteLength !== m) throw new Error(`downloaded ${buf.byteLength}, expected ${m}`);
  console.log(JSON.stringify({ uploaded: n, downloaded: buf.byteLength }));
  // undici keeps the connection in its pool; exit explicitly so the process ends now.
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
