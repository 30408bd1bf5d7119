#!/usr/bin/env python3
"""Peer for `rampart-bench verify`: signature verifications per second with pyca/cryptography
(the library python-tuf's securesystemslib verifies with), same message size and round scheme.
Prints one JSON line: {"library": ..., "results": {scheme: {"median":..,"min":..,"max":..}}}."""
import argparse
import json
import statistics
import sys
import time

try:
    import cryptography
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
except ImportError:
    sys.exit("pyca/cryptography is not installed: pip install -r scripts/requirements-bench.txt")


def rate(verify, seconds):
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < seconds:
        for _ in range(16):
            verify()
        n += 16
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--seconds", type=float, default=0.3)
    args = ap.parse_args()
    msg = b"\x5a" * 1024
    ed = ed25519.Ed25519PrivateKey.generate()
    ed_sig, ed_pub = ed.sign(msg), ed.public_key()
    p = ec.generate_private_key(ec.SECP256R1())
    p_sig, p_pub = p.sign(msg, ec.ECDSA(hashes.SHA256())), p.public_key()
    cases = {
        "ed25519": lambda: ed_pub.verify(ed_sig, msg),
        "ecdsa-sha2-nistp256": lambda: p_pub.verify(p_sig, msg, ec.ECDSA(hashes.SHA256())),
    }
    results = {}
    for name, fn in cases.items():
        samples = [rate(fn, args.seconds) for _ in range(args.rounds)]
        results[name] = {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}
    print(json.dumps({"library": f"pyca/cryptography {cryptography.__version__}", "results": results}))


if __name__ == "__main__":
    main()
