// Peer: the vote counter many real-time poll tutorials build. Node.js `http`, votes counted in
// memory (nothing on disk, no dedupe), JSON in and out. Same routes as Pollwire's single vote and
// results, so the same load generator drives both.
//
//   node bench/peers/node-counter.js PORT
"use strict";
const http = require("http");
const port = Number(process.argv[2] || 8090);
const polls = new Map(); // poll id -> { version, counts: { option: n } }

function poll(id) {
  let p = polls.get(id);
  if (!p) { p = { version: 0, counts: {} }; polls.set(id, p); }
  return p;
}

http.createServer((req, res) => {
  const parts = req.url.split("?")[0].split("/"); // ["", "v1", "polls", id, action]
  if (req.method === "POST" && parts[2] === "polls" && parts[4] === "votes") {
    let body = "";
    req.on("data", (chunk) => { body += chunk; });
    req.on("end", () => {
      let vote;
      try { vote = JSON.parse(body); } catch (e) { res.writeHead(400); res.end(); return; }
      const p = poll(parts[3]);
      for (const answer of Object.values(vote.answers || {})) {
        for (const option of [].concat(answer)) p.counts[option] = (p.counts[option] || 0) + 1;
      }
      p.version += 1;
      res.writeHead(201, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ accepted: true, version: p.version }));
    });
  } else if (req.method === "GET" && parts[2] === "polls" && parts[4] === "results") {
    const p = poll(parts[3]);
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ poll: parts[3], counts: p.counts, version: p.version }));
  } else {
    res.writeHead(404); res.end();
  }
}).listen(port, "127.0.0.1", () => console.log(`node-counter listening on http://127.0.0.1:${port}`));
