#!/usr/bin/python3
"""A real Modbus slave for edged's tests: pymodbus (Debian's python3-pymodbus
3.0), over TCP on a loopback port or RTU on a serial device (one end of a
socat pty pair). Several units (slave ids) answer on one line.

    slave.py --config FILE (--tcp PORT | --rtu DEVICE [--baud N])

FILE is JSON: {"units": {"1": {"hr": [...], "ir": [...], "co": [...],
"di": [...]}}, "counters": [{"unit": 1, "table": "hr", "address": 9}],
"wire_baud": 115200}. Each table holds the values from address 0 (16-bit
words, or 0/1 for bits); an address past its end answers "illegal data
address". A counter register goes up by 1 each time a request reads it.
With wire_baud, each answer waits the time a read request and the answer
take on an RS-485 line at that rate (11 bits a byte): a pty moves bytes at
once, a real line does not.

Commands, one JSON object a line on stdin; each is answered "ok" on stdout
once applied:
  {"op": "set", "unit": 1, "table": "hr", "address": 0, "values": [...]}
  {"op": "mode", "unit": 1, "mode": M}: normal | silent (no answer) |
      busy (exception 6) | crc (RTU: a bad checksum) | short (fewer
      registers than asked) | delay (answer after "ms" milliseconds)
It prints "ready" once it serves.
"""
import argparse
import asyncio
import json
import logging
import sys
import threading
import time

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
from pymodbus.factory import ServerDecoder
from pymodbus.pdu import ExceptionResponse
from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer
from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer


class CounterBlock(ModbusSequentialDataBlock):
    """A data block whose counter addresses go up by 1 on every read."""

    def __init__(self, values, counters):
        super().__init__(0, values)
        self.counters = counters

    def getValues(self, address, count=1):
        for a in self.counters:
            if address <= a < address + count:
                self.values[a] = (self.values[a] + 1) & 0xFFFF
        return super().getValues(address, count)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--tcp", type=int)
    ap.add_argument("--rtu")
    ap.add_argument("--baud", type=int, default=9600)
    args = ap.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    cfg = json.load(open(args.config))

    slaves = {}
    removed = {}
    modes = {}
    for unit, tables in cfg["units"].items():
        unit = int(unit)
        counters = {t: [c["address"] for c in cfg.get("counters", []) if c["unit"] == unit and c["table"] == t] for t in ("hr", "ir", "co", "di")}
        blocks = {t: CounterBlock(list(tables.get(t, [0])), counters[t]) for t in ("hr", "ir", "co", "di")}
        slaves[unit] = ModbusSlaveContext(zero_mode=True, **blocks)
        modes[unit] = {"mode": "normal"}
    context = ModbusServerContext(slaves=slaves, single=False)
    rtu_framer = ModbusRtuFramer(ServerDecoder())
    wire_baud = cfg.get("wire_baud", 0)

    def manipulate(response):
        m = modes.get(response.unit_id, {"mode": "normal"})
        mode = m["mode"]
        if mode == "busy":
            exc = ExceptionResponse(response.function_code & 0x7F, 6)
            exc.transaction_id, exc.unit_id = response.transaction_id, response.unit_id
            return exc, False
        if mode == "crc" and args.rtu:
            pkt = bytearray(rtu_framer.buildPacket(response))
            pkt[-1] ^= 0xFF
            return bytes(pkt), True
        if mode == "short" and hasattr(response, "registers") and len(response.registers) > 1:
            response.registers = response.registers[:-1]
        if mode == "delay":
            time.sleep(m.get("ms", 0) / 1000)
        if wire_baud:
            # request (8 bytes) + answer (address, function, data, CRC)
            time.sleep((8 + 4 + len(response.encode())) * 11 / wire_baud)
        return response, False

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if args.tcp:
        server = ModbusTcpServer(context, ModbusSocketFramer, None, ("127.0.0.1", args.tcp),
                                 allow_reuse_address=True, ignore_missing_slaves=True, response_manipulator=manipulate)
    else:
        server = ModbusSerialServer(context, ModbusRtuFramer, port=args.rtu, baudrate=args.baud,
                                    ignore_missing_slaves=True, response_manipulator=manipulate)

    def apply(cmd):
        unit = cmd.get("unit")
        if cmd["op"] == "set":
            ctx = slaves.get(unit) or removed.get(unit)
            fx = {"hr": 3, "ir": 4, "co": 1, "di": 2}[cmd["table"]]
            ctx.setValues(fx, cmd["address"], cmd["values"])
        elif cmd["op"] == "mode":
            modes[unit] = cmd
            if cmd["mode"] == "silent" and unit in slaves:
                removed[unit] = slaves.pop(unit)
            elif cmd["mode"] != "silent" and unit in removed:
                slaves[unit] = removed.pop(unit)
        print("ok", flush=True)

    def commands():
        for line in sys.stdin:
            line = line.strip()
            if line:
                loop.call_soon_threadsafe(apply, json.loads(line))
        loop.call_soon_threadsafe(loop.stop)

    async def start():
        if args.tcp:
            asyncio.ensure_future(server.serve_forever())
            await server.serving
        else:
            await server.start()
            if server.transport is None:
                raise SystemExit("could not open " + args.rtu)
        print("ready", flush=True)

    loop.run_until_complete(start())
    threading.Thread(target=commands, daemon=True).start()
    loop.run_forever()


if __name__ == "__main__":
    main()
