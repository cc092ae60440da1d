#!/usr/bin/env python3
"""A TCP relay that delays every chunk by DELAY ms +- JITTER ms in both
directions and keeps their order: tc netem's delay, in user space, for
kernels built without sch_netem (like this project's test machines).

    delay_relay.py LISTEN_PORT TARGET_HOST:TARGET_PORT DELAY_MS JITTER_MS

Listens on 127.0.0.1:LISTEN_PORT; runs until killed."""
import asyncio
import random
import sys
import time


async def pipe(reader, writer, delay_s, jitter_s):
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                # Half-close, as TCP does: the other direction goes on.
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    last_due = 0.0
    while True:
        try:
            data = await reader.read(1 << 16)
        except ConnectionError:
            data = b""
        # Never before the chunk ahead of it: delayed, jittered, in order.
        due = max(time.monotonic() + delay_s + random.uniform(-jitter_s, jitter_s), last_due)
        last_due = due
        await queue.put((due, data))
        if not data:
            break
    await delivering


async def main():
    port, target, delay_ms, jitter_ms = sys.argv[1:5]
    host, target_port = target.rsplit(":", 1)
    delay_s, jitter_s = float(delay_ms) / 1000, float(jitter_ms) / 1000

    async def serve(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(host, int(target_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay_s, jitter_s),
            pipe(server_reader, client_writer, delay_s, jitter_s),
            return_exceptions=True,
        )
        client_writer.close()
        server_writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", int(port))
    async with server:
        await server.serve_forever()


asyncio.run(main())
