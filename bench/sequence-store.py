#!/usr/bin/env python3
"""Issue 22's must-holds, measured: memory with many idle sequences, their resumption, and the drain time.

Starts its own redis-server (loopback, free port, no persistence) and the server (the contract command line with
--Sequences:Store:Redis). Sequences are opened over OIP REST with binary tensor data, one chunk per request (a start,
then appends with sequence_length), by `--clients` client threads on keep-alive connections.
  idle:  RSS (VmRSS) before; open --sequences (default 10,000) sequences of --chunks (4) chunks; wait until the
         server has spilled every one to Redis (its idle timeout, read from /metrics); RSS after (the issue's target:
         within 50 MB of before); then resume --check (100) sequences picked at random, one more chunk each with
         sequence_length, and compare each output bitwise with `dualchunk stream` on the whole input (uninterrupted).
  drain: open --drain-sequences (1,000) sequences, SIGTERM, time until the process exits; the bytes the drain wrote
         (from its log) give seconds per GB of open state, the basis of docs/deploy.md's grace-period rule.
  all:   idle, then drain (each on a fresh server and Redis). The default.
Usage: bench/sequence-store.py [all|idle|drain] [--model M.dcw] [--sequences 10000] [--drain-sequences 1000]
Without --model it writes config a (E287 H256 NH8 L4 C64, random weights) with the load test's write-model.
Needs: dotnet with the server, the CLI (and without --model the load test) built in Release; redis-server.
"""
import argparse, http.client, json, os, random, re, signal, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "src/DualChunk.Server/bin/Release/net10.0/DualChunk.Server.dll")
CLI = os.path.join(ROOT, "src/DualChunk.Cli/bin/Release/net10.0/dualchunk.dll")
LOADTEST = os.path.join(ROOT, "bench/DualChunk.LoadTest/bin/Release/net10.0/DualChunk.LoadTest.dll")
MB = 1024 * 1024


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def status_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pack(floats):
    return struct.pack(f"<{len(floats)}f", *floats)


class Client:
    """One keep-alive connection to the server's REST port."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def infer(self, seq_id, data, batch, n, e, start=False, end=False, length=None, mode="last"):
        params = {"sequence_id": seq_id, "output_mode": mode, "binary_data_output": True}
        if start: params["sequence_start"] = True
        if end: params["sequence_end"] = True
        if length is not None: params["sequence_length"] = length
        header = json.dumps({"parameters": params, "inputs": [{"name": "input", "datatype": "FP32", "shape": [batch, n, e],
                             "parameters": {"binary_data_size": len(data)}}]}).encode()
        headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        for attempt in range(2):
            try:
                self.conn.request("POST", "/v2/models/dualchunk/infer", body=header + data, headers=headers)
                r = self.conn.getresponse(); raw = r.read()
                break
            except (http.client.HTTPException, ConnectionError):
                if attempt: raise
                self.conn.close(); self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        if r.status != 200: return r.status, raw
        return 200, raw[int(r.getheader("Inference-Header-Content-Length")):]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def metric(port, name, *labels):
    """Sum of the Prometheus series of `name` whose labels contain every one of `labels`."""
    _, text = get(port, "/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(l in line for l in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Stack:
    """redis-server and the server on loopback ports, with the server's log in the temp folder."""

    def __init__(self, a, tmp, name, sequences, idle_seconds):
        self.tmp = tmp
        rport, self.port, gport = free_port(), free_port(), free_port()
        self.redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                       "--dir", tmp, "--logfile", os.path.join(tmp, f"redis-{name}.log")])
        args = ["dotnet", SERVER, "--urls", f"http://127.0.0.1:{self.port}", "--grpc-urls", f"http://127.0.0.1:{gport}", "--model", a.model,
                "--max-batch", "1", "--max-seq-len", str((a.chunks + 1) * a.c), "--Sequences:Store:Redis", f"127.0.0.1:{rport}",
                "--Server:Sequences:MaxSequences", str(sequences + 10), "--Server:Sequences:MaxStateBytes", str(1 << 36),
                "--Server:Sequences:IdleTimeoutSeconds", str(idle_seconds), "--shutdownTimeoutSeconds", "600"]
        self.log_path = os.path.join(tmp, f"server-{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        t = time.time()
        while time.time() - t < 300:
            if self.proc.poll() is not None: sys.exit(f"the server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                if get(self.port, "/v2/health/ready")[0] == 200: break
            except OSError: pass
            time.sleep(0.2)
        else:
            sys.exit("the server was not ready within 300 s")
        time.sleep(2)  # past start-up's last allocations

    def rss_mb(self): return status_kb(self.proc.pid, "VmRSS") / 1024

    def hwm_mb(self): return status_kb(self.proc.pid, "VmHWM") / 1024

    def log_lines(self, word):
        self.log.flush()
        return [l.strip() for l in open(self.log_path) if word in l]

    def close(self):
        if self.proc.poll() is None: self.proc.kill(); self.proc.wait()
        self.redis.kill(); self.redis.wait()


def open_sequences(a, port, count, checked, rng):
    """Opens `count` sequences s0..s{count-1}, one chunk per request; the `checked` ones get seeded random input, kept."""
    chunk = a.c * a.e
    filler = [pack([((k * 7919 + j) % 997) / 997.0 - 0.5 for j in range(chunk)]) for k in range(8)]  # content is irrelevant
    inputs = {i: [rng.uniform(-1, 1) for _ in range(a.chunks * chunk)] for i in checked}
    errors, lock = [], threading.Lock()

    def worker(ids):
        client = Client(port)
        for i in ids:
            x = inputs.get(i)
            for k in range(a.chunks):
                data = pack(x[k * chunk:(k + 1) * chunk]) if x is not None else filler[(i + k) % 8]
                code, body = client.infer(f"s{i}", data, 1, a.c, a.e, start=k == 0, length=None if k == 0 else k * a.c)
                if code != 200:
                    with lock: errors.append((i, k, code, body[:200]))
                    break

    t0 = time.time()
    threads = [threading.Thread(target=worker, args=(range(k, count, a.clients),)) for k in range(a.clients)]
    for t in threads: t.start()
    for t in threads: t.join()
    took = time.time() - t0
    print(f"opened {count} sequences x {a.chunks} chunks (C={a.c}, E={a.e}; {count * a.chunks} requests, {a.clients} clients) in {took:.1f} s;"
          f" errors {len(errors)} {errors[:3]}", flush=True)
    if errors: sys.exit("opening failed")
    return inputs


def write_npy(path, floats, shape):
    hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(str(s) for s in shape)
    hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + pack(floats))


def npy_data(path):
    raw = open(path, "rb").read()
    return raw[10 + struct.unpack("<H", raw[8:10])[0]:]


def idle(a, tmp):
    rng = random.Random(1)
    checked = sorted(rng.sample(range(a.sequences), min(a.check, a.sequences)))
    stack = Stack(a, tmp, "idle", a.sequences, a.idle_seconds)
    try:
        before = stack.rss_mb()
        inputs = open_sequences(a, stack.port, a.sequences, checked, rng)
        opened_rss, peak = stack.rss_mb(), stack.hwm_mb()
        # Every sequence is spilled once idle past the timeout: wait for the server's own count.
        t = time.time()
        while metric(stack.port, "dualchunk_sequence_store_spills_total", 'reason="idle"', 'result="ok"') < a.sequences:
            if time.time() - t > a.idle_seconds * 4 + 120: sys.exit("not every sequence was spilled: " + str(stack.log_lines("Idle sequence")[:3]))
            time.sleep(1)
        spilled_after = time.time() - t
        time.sleep(15)  # the sweep that freed the last ones has finished, and the collection after spills (at most every 10 s) ran
        after = stack.rss_mb()
        verdict = "within" if after - before <= 50 else "OVER"
        print(f"RSS before {before:.1f} MB; right after opening {opened_rss:.1f} MB (peak {peak:.1f}); every sequence spilled"
              f" {spilled_after:.0f} s after the last request (idle timeout {a.idle_seconds} s);"
              f" after: {after:.1f} MB, {after - before:+.1f} MB: {verdict} the 50 MB target", flush=True)

        # Resume the checked ones: one more chunk each (sequence_length = chunks·C), against an uninterrupted stream.
        client = Client(stack.port)
        jobs = []
        for i in checked:
            extra = [rng.uniform(-1, 1) for _ in range(a.c * a.e)]
            code, got = client.infer(f"s{i}", pack(extra), 1, a.c, a.e, length=a.chunks * a.c, end=True)
            if code != 200: sys.exit(f"resume of s{i} failed: {code} {got[:300]}")
            path = os.path.join(tmp, f"in{i}.npy")
            write_npy(path, inputs[i] + extra, (1, (a.chunks + 1) * a.c, a.e))
            jobs.append((i, path, got))
        restored = metric(stack.port, "dualchunk_sequence_store_restores_total", 'result="ok"')

        def check(job):
            i, path, got = job
            p = subprocess.run(["dotnet", CLI, "stream", "--model", a.model, "--input", path, "--output", path + ".out.npy"], capture_output=True, text=True)
            if p.returncode != 0: return i, "dualchunk stream failed: " + p.stderr[-300:]
            ref = npy_data(path + ".out.npy")  # [1, chunks + 1, H]: the last row is the resumed chunk's output
            return i, None if ref[-len(got):] == got else "MISMATCH"

        with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            bad = [(i, why) for i, why in pool.map(check, jobs) if why]
        print(f"resumed {len(jobs) - len(bad)}/{len(jobs)} random spilled sequences bitwise equal to dualchunk stream on the whole"
              f" input ({restored:.0f} restores from the store){'; ' + str(bad[:5]) if bad else ''}", flush=True)
        return after - before <= 50 and not bad
    finally:
        stack.close()


def drain(a, tmp):
    stack = Stack(a, tmp, "drain", a.drain_sequences, 3600)
    try:
        before = stack.rss_mb()
        open_sequences(a, stack.port, a.drain_sequences, [], random.Random(2))
        print(f"RSS before {before:.1f} MB, with them open {stack.rss_mb():.1f} MB", flush=True)
        t = time.time(); stack.proc.send_signal(signal.SIGTERM); stack.proc.wait(900); took = time.time() - t
        line = (stack.log_lines("Drain:") or ["(no drain line)"])[0]
        m = re.search(r"Drain: (\d+) open sequences \((\d+) bytes\) written to the store in ([0-9.Ee-]+) s; (\d+) failed", line)
        if not m:
            print(f"SIGTERM to exit {took:.2f} s (exit code {stack.proc.returncode}); drain log: {line}")
            return False
        written, size, secs, failed = int(m[1]), int(m[2]), float(m[3]), int(m[4])
        gb = size / 1e9
        print(f"SIGTERM to exit {took:.2f} s (exit code {stack.proc.returncode}); the drain wrote {written} sequences,"
              f" {size / MB:.1f} MB, in {secs:.2f} s ({size / MB / max(secs, 1e-9):.0f} MB/s), {failed} failed", flush=True)
        print(f"grace-period rule (docs/deploy.md): {secs / gb:.1f} s per GB of open state (the drain)"
              f" + {took - secs:.2f} s of host shutdown besides it (+ Server:ShutdownDelaySeconds + the longest request)", flush=True)
        return failed == 0 and written == a.drain_sequences and stack.proc.returncode == 0
    finally:
        stack.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["all", "idle", "drain"], default="all")
    ap.add_argument("--model", help="a .dcw (default: config a, written with the load test's write-model)")
    ap.add_argument("--sequences", type=int, default=10000, help="idle: sequences opened and left idle")
    ap.add_argument("--drain-sequences", type=int, default=1000, help="drain: sequences open at SIGTERM")
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--check", type=int, default=100, help="idle: sequences resumed and compared bitwise")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--idle-seconds", type=float, default=5)
    a = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop the server and redis-server
    tmp = tempfile.mkdtemp(prefix="seqstore-")
    if a.model is None:
        a.model = os.path.join(tmp, "a.dcw")
        subprocess.run(["dotnet", LOADTEST, "write-model", a.model, "287,256,8,4", "64"], check=True, stdout=subprocess.DEVNULL)
    meta = subprocess.run(["dotnet", CLI, "inspect", a.model], capture_output=True, text=True).stdout
    a.e = int(re.search(r"\bE=(\d+)", meta)[1]); a.c = int(re.search(r"\bC=(\d+)", meta)[1])
    print(f"model {a.model}: E={a.e} C={a.c}; load average {os.getloadavg()[0]:.1f}; temp {tmp}", flush=True)
    t = time.time(); ok = True
    if a.what in ("all", "idle"): ok &= idle(a, tmp)
    if a.what in ("all", "drain"): ok &= drain(a, tmp)
    print(f"total {time.time() - t:.0f} s; load average {os.getloadavg()[0]:.1f}; {'all targets met' if ok else 'a target was MISSED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
