"""The bare paramiko loop: the floor for any paramiko-based engine.

What an operator writes instead of a runbook engine: one ``SSHClient`` per host, kept open
across steps, one thread per host, ``exec_command`` per step, stdout and stderr read to
EOF, the exit status collected. Steps are sequential with a barrier between them, as in
runbook (a step finishes on every host before the next starts). Host keys are checked
against ``known_hosts`` (strict, like runbook's default). No journal, no retries, no
timeouts, no events: only the work every engine must do.

    python benchmarks/paramiko_loop.py HOSTS.json KNOWN_HOSTS 'echo step-1' 'echo step-2'

``HOSTS.json`` is a list of ``{"name", "address", "port", "user", "key"}``. Output: one
line per host per step (``name: stdout``). Exit 1 if any host failed to connect or any
command exited non-zero.
"""

from __future__ import annotations

import json
import sys
import threading

import paramiko


def main(argv: list[str]) -> int:
    hosts_file, known_hosts, *steps = argv
    with open(hosts_file, encoding="utf-8") as f:
        hosts = json.load(f)
    keys = {h["key"]: paramiko.Ed25519Key.from_private_key_file(h["key"]) for h in hosts}
    barrier = threading.Barrier(len(hosts))
    lock = threading.Lock()
    failures: list[str] = []

    def worker(h: dict) -> None:
        client = paramiko.SSHClient()
        client.load_host_keys(known_hosts)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                h["address"],
                h["port"],
                username=h["user"],
                pkey=keys[h["key"]],
                allow_agent=False,
                look_for_keys=False,
                timeout=30,
            )
        except Exception as exc:  # a benchmark: report and let the barrier break
            with lock:
                failures.append(f"{h['name']}: connect: {exc!r}")
            barrier.abort()
            return
        try:
            for step in steps:
                _, stdout, stderr = client.exec_command(step)
                out = stdout.read()
                err = stderr.read()
                rc = stdout.channel.recv_exit_status()
                with lock:
                    sys.stdout.write(f"{h['name']}: {out.decode(errors='replace')}")
                    if err:
                        sys.stdout.write(f"{h['name']} stderr: {err.decode(errors='replace')}")
                    if rc != 0:
                        failures.append(f"{h['name']}: {step!r} exited {rc}")
                barrier.wait()
        except threading.BrokenBarrierError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
