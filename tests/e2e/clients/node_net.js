// node net client for the raw server protocol: 8-byte header (L, R), L bytes up, R bytes down.
// usage: node node_net.js HOST PORT SEND RECV
'use strict';
const net = require('net');
const [host, port, send, recv] = process.argv.slice(2);
const L = Number(send), R = Number(recv);

const sock = net.connect({ host, port: Number(port) }, () => {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(L, 0);
  header.writeUInt32BE(R, 4);
  sock.write(header);
  sock.end(Buffer.alloc(L, 0x6e));
});
let got = 0;
sock.setTimeout(30000, () => sock.destroy(new Error('timeout')));
sock.on('data', (c) => { got += c.length; });
sock.on('end', () => {
  if (got !== R) { console.error(`received ${got}, expected ${R}`); process.exit(1); }
  console.log(JSON.stringify({ sent: L, received: got }));
});
sock.on('error', (e) => { console.error(e); process.exit(1); });
