"""A printer's MIB for snmpd's pass_persist: serves the OIDs of a data file ("OID TYPE VALUE"
per line) and reads the file again whenever it changes, so a test can change the printer."""
import os
import sys

path = sys.argv[1]
data, order, stamp = {}, [], None


def key(oid):
    return tuple(int(x) for x in oid.strip().strip(".").split("."))


def load():
    global data, order, stamp
    st = os.stat(path).st_mtime_ns
    if st == stamp:
        return
    new = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            oid, typ, val = line.split(" ", 2)
            new[key(oid)] = (oid, typ, val)
    data, order, stamp = new, sorted(new), st


def out(*lines):
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


while True:
    cmd = sys.stdin.readline()
    if not cmd:
        break
    cmd = cmd.strip()
    if cmd == "PING":
        out("PONG")
    elif cmd in ("get", "getnext"):
        load()
        o = key(sys.stdin.readline())
        r = data.get(o) if cmd == "get" else next((data[k] for k in order if k > o), None)
        out(*(r if r else ("NONE",)))
    elif cmd == "set":
        sys.stdin.readline()
        sys.stdin.readline()
        out("not-writable")
    else:
        out("NONE")
