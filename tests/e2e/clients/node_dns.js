// dns.resolve4 (c-ares: raw UDP queries to port 53) against a given resolver.
// usage: node node_dns.js RESOLVER NAME [NAME...]
// prints {"NAME": {"addresses": [...]} | {"error": "ENOTFOUND"}, ...}
'use strict';
const { Resolver } = require('dns').promises;
const [server, ...names] = process.argv.slice(2);
const resolver = new Resolver({ timeout: 2000, tries: 1 });
resolver.setServers([server]);

(async () => {
  const out = {};
  for (const name of names) {
    try {
      out[name] = { addresses: await resolver.resolve4(name) };
    } catch (e) {
      out[name] = { error: e.code };
    }
  }
  console.log(JSON.stringify(out));
})();
