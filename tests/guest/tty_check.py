#!/usr/bin/env python3
"""Runs kvmlite on a pseudo-terminal and checks that its settings are the
same afterwards, on three exit paths: guest power-off, a load error, and
SIGTERM while the guest runs."""
import os, pty, signal, subprocess, sys, termios, time

kvmlite = sys.argv[1]

def check(args, kill_after=None):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([kvmlite] + args, stdin=slave, stdout=slave, stderr=slave)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGTERM)
    try:
        status = proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        return False, "timeout"
    after = termios.tcgetattr(slave)
    os.close(master)
    os.close(slave)
    return before == after, status

ok = True
for name, args, kill in (("power-off", ["run"], None),
                         ("load-error", ["run", "--kernel", "/dev/null"], None),
                         ("sigterm", ["run", "--cmdline", "test=spin"], 1.0)):
    same, status = check(args, kill)
    print(f"{name}: status {status}, terminal {'restored' if same else 'CHANGED'}")
    ok = ok and same
sys.exit(0 if ok else 1)
