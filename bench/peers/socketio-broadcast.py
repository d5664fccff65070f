"""Peer: a live-results server on Socket.IO (python-socketio on aiohttp: Debian has no Node.js
Socket.IO server package, python3-socketio is the Socket.IO server it ships). Votes come in over
HTTP, counts live in memory, and every 50 ms a changed poll's counts are emitted to its room.
Same routes as ws-broadcast.js (POST /v1/polls, POST /v1/votes:batch); viewers connect with
Engine.IO v4 over WebSocket (/socket.io/?EIO=4&transport=websocket), send "40", then
42["subscribe",{"polls":[...]}], and get 42["results",{...,"version":N}].

    /usr/bin/python3 bench/peers/socketio-broadcast.py PORT
"""
import asyncio
import itertools
import json
import sys

import socketio
from aiohttp import web

port = int(sys.argv[1]) if len(sys.argv) > 1 else 8092
sio = socketio.AsyncServer(async_mode="aiohttp", cors_allowed_origins=[])
app = web.Application()
sio.attach(app)
polls = {}  # id -> {"total", "version", "dirty"}
ids = itertools.count(1)


def compact(value):
    return json.dumps(value, separators=(",", ":"))


def poll(poll_id):
    return polls.setdefault(poll_id, {"total": 0, "version": 0, "dirty": False})


async def create(request):
    poll_id = "p%d" % next(ids)
    poll(poll_id)
    return web.json_response({"id": poll_id}, status=201, dumps=compact)


async def batch(request):
    ballots = (await request.json())["ballots"]
    p = poll(ballots[0]["poll"])
    p["total"] += len(ballots)
    p["version"] += 1
    p["dirty"] = True
    return web.json_response({"results": [{"status": 201, "version": p["version"]}]}, dumps=compact)


@sio.on("subscribe")
async def subscribe(sid, message):
    for poll_id in message["polls"]:
        sio.enter_room(sid, poll_id)
    await sio.emit("subscribed", {"polls": message["polls"]}, to=sid)
    # The current counts at once, as Pollwire does.
    for poll_id in message["polls"]:
        p = poll(poll_id)
        await sio.emit("results", {"poll": poll_id, "total": p["total"], "version": p["version"]}, to=sid)


async def publish(app):
    async def loop():
        while True:
            await asyncio.sleep(0.05)
            for poll_id, p in polls.items():
                if p["dirty"]:
                    p["dirty"] = False
                    await sio.emit("results", {"poll": poll_id, "total": p["total"], "version": p["version"]},
                                   room=poll_id)
    app["publisher"] = asyncio.get_running_loop().create_task(loop())


app.router.add_post("/v1/polls", create)
app.router.add_post("/v1/votes:batch", batch)
app.on_startup.append(publish)
print("socketio-broadcast listening on http://127.0.0.1:%d" % port, flush=True)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
