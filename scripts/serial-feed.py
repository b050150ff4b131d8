#!/usr/bin/env python3
"""Writes JSON readings into a serial device (a pty from socat) at the wire
rate of 115200 baud 8N1 (11,520 bytes/s), like TestSerialCPU, for profiling
a running edged by hand:

  socat pty,raw,echo=0,link=/tmp/ser/dev pty,raw,echo=0,link=/tmp/ser/peer &
  edged run -c CONFIG &        # a [[source]] type = "serial", port = "/tmp/ser/dev", baud = 115200
  scripts/serial-feed.py /tmp/ser/peer 25 &
  perf record -g -p $(pgrep -f 'edged run') -- sleep 15 && perf report --children --sort sym
"""
import os
import sys
import time

peer, secs = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 25
fd = os.open(peer, os.O_WRONLY)
start, sent, n = time.time(), 0, 0
ts = int(start * 1000)
while time.time() - start < secs:
    line = ('{"sensor":"s%d","ts":%d,"value":%.3f}\n' % (n % 8, ts + n * 4, (n % 1000) / 10)).encode()
    # Send each line when the wire would have finished it.
    wait = start + (sent + len(line)) / 11520.0 - time.time()
    if wait > 0:
        time.sleep(wait)
    os.write(fd, line)
    sent += len(line)
    n += 1
