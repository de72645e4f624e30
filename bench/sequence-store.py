#!/usr/bin/env python3
"""Issue 22 measurements: drain time with N open sequences, and RSS after N idle sequences spill.

Starts its own redis-server (loopback, free port, no persistence) and the server (the contract command line with
--Sequences:Store:Redis), opens N sequences of `chunks` chunks each over OIP REST (binary tensor data), then either
  drain: SIGTERM and time until the process exits (the server logs what the drain wrote), or
  idle:  waits past the idle timeout, reads the server's RSS (VmRSS) before/after, and resumes `check` sequences
         (one more chunk each, sequence_length set) comparing bitwise with `dualchunk stream` on the whole input.
Usage: bench/sequence-store.py drain|idle --model M --sequences N [--chunks 4] [--check 100]
Needs: dotnet (the server and CLI built in Release), redis-server. Loopback only.
"""
import argparse, json, os, random, signal, socket, struct, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER = os.path.join(ROOT, "src/DualChunk.Server/bin/Release/net10.0/DualChunk.Server.dll")
CLI = os.path.join(ROOT, "src/DualChunk.Cli/bin/Release/net10.0/dualchunk.dll")


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def infer(port, seq_id, floats, batch, n, e, start=False, end=False, length=None, mode="last"):
    params = {"sequence_id": seq_id, "output_mode": mode, "binary_data_output": True}
    if start: params["sequence_start"] = True
    if end: params["sequence_end"] = True
    if length is not None: params["sequence_length"] = length
    header = json.dumps({"parameters": params, "inputs": [{"name": "input", "datatype": "FP32", "shape": [batch, n, e],
                         "parameters": {"binary_data_size": 4 * len(floats)}}]}).encode()
    body = header + struct.pack(f"<{len(floats)}f", *floats)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/dualchunk/infer", data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read(); hl = int(r.headers["Inference-Header-Content-Length"])
            return 200, raw[hl:]
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_ready(port, proc, bound=300):
    t = time.time()
    while time.time() - t < bound:
        if proc.poll() is not None: sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200: return
        except Exception: pass
        time.sleep(0.2)
    sys.exit("server not ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["drain", "idle"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--sequences", type=int, default=1000)
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--check", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--idle-seconds", type=float, default=5)
    a = ap.parse_args()
    meta = subprocess.run(["dotnet", CLI, "inspect", a.model], capture_output=True, text=True).stdout
    e = int(meta.split("E=")[1].split()[0].rstrip(",")) if "E=" in meta else 287
    c = int(meta.split("C=")[1].split()[0].rstrip(",")) if "C=" in meta else 64
    tmp = tempfile.mkdtemp(prefix="seqstore-")
    rport, port, gport = free_port(), free_port(), free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp,
                              "--logfile", os.path.join(tmp, "redis.log")])
    n_max = (a.chunks + 1) * c
    args = ["dotnet", SERVER, "--urls", f"http://127.0.0.1:{port}", "--grpc-urls", f"http://127.0.0.1:{gport}", "--model", a.model,
            "--max-batch", "1", "--max-seq-len", str(n_max), "--Sequences:Store:Redis", f"127.0.0.1:{rport}",
            "--Server:Sequences:MaxSequences", str(a.sequences + 10), "--Server:Sequences:MaxStateBytes", str(1 << 34),
            "--Server:Sequences:IdleTimeoutSeconds", str(a.idle_seconds if a.what == "idle" else 3600),
            "--shutdownTimeoutSeconds", "300"]
    log = open(os.path.join(tmp, "server.log"), "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(port, proc)
        time.sleep(1)
        rss_before = rss_kb(proc.pid)
        rng = random.Random(1)
        inputs = {}
        lock = threading.Lock(); errors = []
        def opener(ids):
            for i in ids:
                x = [rng.uniform(-1, 1) for _ in range(a.chunks * c * e)] if i < a.check else None
                data = x if x is not None else [((i * 7919 + j) % 997) / 997.0 - 0.5 for j in range(a.chunks * c * e)]
                code, body = infer(port, f"s{i}", data, 1, a.chunks * c, e, start=True)
                if code != 200:
                    with lock: errors.append((i, code, body[:200]))
                if x is not None:
                    with lock: inputs[i] = x
        t0 = time.time()
        threads = [threading.Thread(target=opener, args=(range(k, a.sequences, a.clients),)) for k in range(a.clients)]
        for t in threads: t.start()
        for t in threads: t.join()
        opened = time.time() - t0
        rss_open = rss_kb(proc.pid)
        print(f"opened {a.sequences} sequences x {a.chunks} chunks (C={c}, E={e}) in {opened:.1f} s; errors {len(errors)} {errors[:3]}")
        print(f"RSS before {rss_before/1024:.1f} MB, with them open {rss_open/1024:.1f} MB")
        if a.what == "drain":
            t1 = time.time(); proc.send_signal(signal.SIGTERM); proc.wait(600); took = time.time() - t1
            log.flush()
            drained = [l.strip() for l in open(os.path.join(tmp, "server.log")) if "Drain:" in l]
            print(f"SIGTERM to exit: {took:.2f} s (exit code {proc.returncode}); server: {drained[:1]}")
            return
        time.sleep(a.idle_seconds * 2 + 6)
        rss_after = rss_kb(proc.pid)
        print(f"after the idle timeout ({a.idle_seconds} s): RSS {rss_after/1024:.1f} MB (before: {rss_before/1024:.1f}; delta {(rss_after-rss_before)/1024:+.1f} MB)")
        # Resume `check` sequences with one more chunk each and compare with dualchunk stream on the whole input.
        ok = 0
        for i in sorted(inputs)[: a.check]:
            extra = [rng.uniform(-1, 1) for _ in range(c * e)]
            code, body = infer(port, f"s{i}", extra, 1, c, e, length=a.chunks * c, end=True)
            if code != 200: print("resume failed", i, code, body[:300]); continue
            got = body
            path = os.path.join(tmp, f"in{i}.npy"); outp = path + ".out.npy"
            whole = inputs[i] + extra
            hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, %d, %d), }" % (a.chunks * c + c, e)
            hdr += " " * (63 - (10 + len(hdr)) % 64) + "\n"
            with open(path, "wb") as f:
                f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + struct.pack(f"<{len(whole)}f", *whole))
            subprocess.run(["dotnet", CLI, "stream", "--model", a.model, "--input", path, "--output", outp], capture_output=True)
            ref = open(outp, "rb").read()
            hl = struct.unpack("<H", ref[8:10])[0]; ref = ref[10 + hl:]
            if ref[-len(got):] == got: ok += 1
            else: print("MISMATCH", i)
        print(f"resumed {ok}/{min(a.check, len(inputs))} spot-checked sequences bitwise equal to dualchunk stream")
        print("server:", [l.strip() for l in open(os.path.join(tmp, "server.log")) if "Drain" in l or "fail" in l][:3])
    finally:
        if proc.poll() is None: proc.kill()
        redis.kill()


if __name__ == "__main__":
    main()
