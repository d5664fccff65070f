// Peer: a live-results server on the `ws` package (Debian's node-ws), the way tutorials do it:
// votes come in over HTTP, counts live in memory, and every 50 ms a changed poll's counts are
// sent to every subscribed socket (JSON.stringify once per tick, ws.send per client).
// It speaks the slice of Pollwire's protocol that pollwire-bench uses, so the same viewers and
// vote sender drive both: POST /v1/polls, POST /v1/votes:batch, GET /v1/live with
// {"type":"subscribe","polls":[...]}; updates end with "version":N}.
//
//   NODE_PATH=/usr/share/nodejs node bench/peers/ws-broadcast.js PORT
"use strict";
const http = require("http");
const { WebSocketServer } = require("ws");
const port = Number(process.argv[2] || 8091);
const polls = new Map(); // id -> { total, version, dirty, sockets: Set }
let nextID = 0;

function poll(id) {
  let p = polls.get(id);
  if (!p) { p = { total: 0, version: 0, dirty: false, sockets: new Set() }; polls.set(id, p); }
  return p;
}

const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => { body += chunk; });
  req.on("end", () => {
    if (req.method === "POST" && req.url === "/v1/polls") {
      const id = `p${++nextID}`;
      poll(id);
      res.writeHead(201, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ id }));
    } else if (req.method === "POST" && req.url === "/v1/votes:batch") {
      const ballots = JSON.parse(body).ballots;
      const p = poll(ballots[0].poll);
      p.total += ballots.length;
      p.version += 1;
      p.dirty = true;
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ results: [{ status: 201, version: p.version }] }));
    } else {
      res.writeHead(404); res.end();
    }
  });
});

const wss = new WebSocketServer({ server, path: "/v1/live" });
wss.on("connection", (socket) => {
  const followed = [];
  socket.on("message", (data) => {
    const message = JSON.parse(data);
    if (message.type !== "subscribe") return;
    for (const id of message.polls) { poll(id).sockets.add(socket); followed.push(id); }
    socket.send(JSON.stringify({ type: "subscribed", polls: message.polls, missing: [] }));
    // The current counts at once, as Pollwire does.
    for (const id of message.polls) {
      const p = poll(id);
      socket.send(JSON.stringify({ poll: id, total: p.total, version: p.version }));
    }
  });
  socket.on("close", () => { for (const id of followed) poll(id).sockets.delete(socket); });
});

setInterval(() => {
  for (const [id, p] of polls) {
    if (!p.dirty) continue;
    p.dirty = false;
    const update = JSON.stringify({ poll: id, total: p.total, version: p.version });
    for (const socket of p.sockets) socket.send(update);
  }
}, 50);

server.listen(port, "127.0.0.1", () => console.log(`ws-broadcast listening on http://127.0.0.1:${port}`));
